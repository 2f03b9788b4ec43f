"""Seconds per episode with 1 vs 2 torch threads, on a quiet core pair and next to one busy process.

Why: torch's default on this 2-core machine is 2 intra-op (OpenMP) threads. When another
process keeps one core busy, the two OpenMP threads of a training step wait for each
other at every parallel region and an episode becomes many times slower; one thread
does not care. This script measures it so that ``run.threads`` (default 1) and the
sweep's per-worker setting (``gradasym.sweep.core.resolve_threads``) rest on numbers.

Each measurement is a fresh child process (``--child``) running the real training loop
(``gradasym.algos.ccm_madrl.runner.Trainer.run_episode``) for ``--warmup`` + ``--episodes`` episodes and
reporting the mean seconds of the measured ones. "busy" starts one competing process
(a pure-Python spin loop, one core's worth of work) for the duration of the child.
The four cases run interleaved, ``--repeats`` times, in one session, and the script
prints the ratios to the 1-thread quiet case together with the load average before and
after every measurement.

Example::

    python benchmarks/bench_threads.py --n-agents 10 --episodes 20 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _spin(stop_at: float) -> None:
    """One core's worth of busy work until ``stop_at`` (time.monotonic)."""
    x = 0
    while time.monotonic() < stop_at:
        x += 1


def child(threads: int, n_agents: int, warmup: int, episodes: int) -> dict[str, Any]:
    """Train ``warmup + episodes`` episodes with ``threads`` torch threads; mean s/episode of the last ones."""
    import torch

    from gradasym.config import load_config
    from gradasym.process import configure_process
    from gradasym.algos.ccm_madrl.runner import Trainer

    cfg = load_config(overrides={"env.n_agents": n_agents, "env.k_channel": min(10, n_agents),
                                 "run.episodes": warmup + episodes, "run.threads": threads})
    configure_process(cfg.run.threads)
    trainer = Trainer(cfg)
    for _ in range(warmup):
        trainer.run_episode()
    times = [trainer.run_episode()["seconds"] for _ in range(episodes)]
    return {"threads": torch.get_num_threads(), "mean_s": statistics.fmean(times),
            "median_s": statistics.median(times)}


def measure(threads: int, busy: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One child run, with or without a competing busy process."""
    from bench_training import cpu_snapshot, cpu_usage

    load_before = os.getloadavg()
    spinner = None
    if busy:
        spinner = mp.get_context("spawn").Process(target=_spin, args=(time.monotonic() + 3600,), daemon=True)
        spinner.start()
        time.sleep(1.0)  # let it occupy its core
    start = cpu_snapshot()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--threads", str(threads), "--n-agents", str(args.n_agents),
             "--warmup", str(args.warmup), "--episodes", str(args.episodes)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])},
        )
    finally:
        usage = cpu_usage(start)
        if spinner is not None:
            spinner.terminate()
            spinner.join()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(busy=busy, requested_threads=threads, load_before=load_before, load_after=os.getloadavg(),
               machine_busy_cores=usage.get("busy_cores"))
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-agents", type=int, default=10, help="agents per run (default 10)")
    p.add_argument("--warmup", type=int, default=5, help="episodes before measuring (default 5)")
    p.add_argument("--episodes", type=int, default=20, help="measured episodes per case (default 20)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the four cases (default 2)")
    p.add_argument("--json", default=None, help="write the results here (default: print only)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.threads, args.n_agents, args.warmup, args.episodes)))
        return {}

    from bench_training import finish, machine_info

    cases = [(1, False), (2, False), (1, True), (2, True)]
    rows = []
    for rep in range(args.repeats):
        for threads, busy in cases:
            r = measure(threads, busy, args)
            r["repeat"] = rep
            rows.append(r)
            print(f"threads={threads} busy={busy!s:5} {r['mean_s'] * 1e3:9.1f} ms/episode "
                  f"(median {r['median_s'] * 1e3:.1f}) cores busy {r['machine_busy_cores']} load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}",
                  flush=True)
    base = statistics.fmean(r["mean_s"] for r in rows if r["requested_threads"] == 1 and not r["busy"])
    ratios = {}
    for threads, busy in cases:
        m = statistics.fmean(r["mean_s"] for r in rows if r["requested_threads"] == threads and r["busy"] == busy)
        ratios[f"t{threads}_{'busy' if busy else 'quiet'}"] = {"mean_s": m, "ratio_to_t1_quiet": m / base}
        print(f"threads={threads} busy={busy!s:5} mean {m * 1e3:9.1f} ms/episode = {m / base:6.2f} x 1-thread quiet")
    return finish({"machine": machine_info(), "args": vars(args), "rows": rows, "ratios": ratios}, args.json)


if __name__ == "__main__":
    main()
