"""Throughput of the batched trainer (``gradasym.algos.ccm_madrl.batched``) vs the single-run trainer.

Faithful mode at the paper's sizes (N = 50, batch 64, 10 steps per episode, tracking on).
One *point* = (trainer, R, actor-update mode, threads): R runs with seeds 0..R-1, warmed up
past the first updates, then ``--episodes`` timed episodes of every run. The single-run
trainer trains the R runs one after the other (its throughput does not depend on R, so it
is measured with ``min(R, --single-runs)`` runs); the batched trainer trains them as one
computation (:func:`gradasym.algos.ccm_madrl.batched._batched_episode`, the loop of ``train_batch``).
Reported: run-episodes per second (wall clock and per CPU second of the process), the
ratios to the single-run trainer measured just before it (interleaved, same process
settings), the process's peak RSS per run, the load average, and for the batched trainer
a breakdown of an episode into acting (actors, master, environments, replay insertion),
monitor, sampling/bookkeeping and the parts of the update. The script also measures older
code (``PYTHONPATH=<other checkout>/src``), whose acting is timed per run.

Each point runs in its own subprocess (clean peak RSS, no warm caches shared between
points). Examples::

    python benchmarks/bench_batched.py --runs 1 4 16 64 --mode both --threads 1 2 --json out.json
    python benchmarks/bench_batched.py --point batched 4 sequential 1   # one point, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return os.getloadavg()[0]


def point(trainer: str, runs: int, mode: str, threads: int, episodes: int, warmup: int, single_runs: int) -> dict:
    """Measure one point in this process."""
    import torch

    import gradasym.algos.ccm_madrl.batched as batched
    from gradasym.config import load_config
    from gradasym.process import configure_process
    from gradasym.runfolder import RunFolder
    from gradasym.algos.ccm_madrl.runner import Trainer

    configure_process(threads)
    n_runs = runs if trainer == "batched" else min(runs, single_runs)
    cfgs = [load_config(overrides={"run.seed": s, "agent.actor_update": mode, "run.threads": threads,
                                   "run.episodes": 10**6, "run.checkpoint_interval": 10**6})
            for s in range(n_runs)]
    trainers = {r: Trainer(c) for r, c in enumerate(cfgs)}
    tmp = Path(tempfile.mkdtemp(prefix="bench_batched_"))
    folders = {r: RunFolder(tmp / str(r)) for r in range(n_runs)}
    summaries: list = [None] * n_runs

    timers: dict[str, float] = defaultdict(float)

    def timing(owner, name: str, key: str) -> None:
        fn = getattr(owner, name)

        def timed(*a, _fn=fn, **k):
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - t
        setattr(owner, name, timed)

    if trainer == "batched":  # breakdown of a batched episode
        for name in ("_actors_sequential", "_actors_simultaneous", "_soft_update_runs"):
            timing(batched, name, name)
        timing(batched, "batched_update", "batched_update")
        timing(Trainer, "act_episode", "acting")  # per run (today's code) or the request (vectorised)
        timing(Trainer, "finish_episode", "monitor")
        try:  # the vectorised acting of the batch (absent from older code)
            from gradasym.algos.ccm_madrl.batched_acting import ActingGroup
            timing(ActingGroup, "flush", "acting")
        except ImportError:
            pass

    def episode():
        if trainer == "batched":
            batched._batched_episode(trainers, folders, summaries, None)
        else:
            for t in trainers.values():
                t.run_episode()

    for _ in range(warmup):
        episode()
    timers.clear()
    load0 = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(episodes):
        episode()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "trainer": trainer, "runs": n_runs, "mode": mode, "threads": threads, "episodes": episodes,
        "wall_s": wall, "cpu_s": cpu, "run_episodes_per_s": n_runs * episodes / wall,
        "run_episodes_per_cpu_s": n_runs * episodes / cpu,
        "peak_rss_mb": rss_mb, "rss_mb_per_run": rss_mb / n_runs,
        "load_before": load0, "load_after": _load(), "torch": torch.__version__,
    }
    if trainer == "batched":
        upd = timers.pop("batched_update", 0.0)
        actors = timers.get("_actors_sequential", 0.0) + timers.get("_actors_simultaneous", 0.0)
        acting, monitor = timers.get("acting", 0.0), timers.get("monitor", 0.0)
        out["breakdown_s_per_episode"] = {
            "acting (actors, master, environments, replay insertion)": acting / episodes,
            "monitor (Trainer.finish_episode)": monitor / episodes,
            "sampling, priorities, bookkeeping": (wall - upd - acting - monitor) / episodes,
            "update: critic (stack, targets, loss, Adam, write-back)": (upd - actors - timers.get("_soft_update_runs", 0.0)) / episodes,
            "update: actors": actors / episodes,
            "update: target updates": timers.get("_soft_update_runs", 0.0) / episodes,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--mode", choices=["sequential", "simultaneous", "both"], default="both")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--episodes", type=int, default=3, help="timed episodes per run (default 3)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed episodes per run first (default 3)")
    ap.add_argument("--single-runs", type=int, default=2, help="runs measured for the single-run trainer")
    ap.add_argument("--point", nargs=4, metavar=("TRAINER", "R", "MODE", "THREADS"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.point:
        trainer, runs, mode, threads = args.point
        print(json.dumps(point(trainer, int(runs), mode, int(threads), args.episodes, args.warmup, args.single_runs)))
        return
    modes = ["sequential", "simultaneous"] if args.mode == "both" else [args.mode]
    results = []
    for threads in args.threads:
        for mode in modes:
            for runs in args.runs:
                pair = {}
                for trainer in ("single", "batched"):  # interleaved: the reference right before
                    cmd = [sys.executable, __file__, "--point", trainer, str(runs), mode, str(threads),
                           "--episodes", str(args.episodes), "--warmup", str(args.warmup),
                           "--single-runs", str(args.single_runs)]
                    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                    pair[trainer] = res
                    results.append(res)
                ratio = pair["batched"]["run_episodes_per_s"] / pair["single"]["run_episodes_per_s"]
                cpu_ratio = pair["batched"]["run_episodes_per_cpu_s"] / pair["single"]["run_episodes_per_cpu_s"]
                pair["batched"]["ratio_to_single"] = ratio
                pair["batched"]["cpu_ratio_to_single"] = cpu_ratio
                print(f"threads {threads} {mode:12s} R={runs:3d}: single {pair['single']['run_episodes_per_s']:6.2f} "
                      f"batched {pair['batched']['run_episodes_per_s']:6.2f} run-ep/s  ratio {ratio:5.2f} (CPU time {cpu_ratio:5.2f})  "
                      f"RSS/run {pair['batched']['rss_mb_per_run']:6.0f} MB  load {pair['batched']['load_before']:.1f}",
                      flush=True)
                if args.json:  # after every pair: a killed benchmark keeps what it measured
                    sys.path.insert(0, str(ROOT / "src"))
                    from gradasym.io import write_json

                    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
