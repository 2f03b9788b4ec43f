"""A sweep's faithful throughput, end to end: this code against older checkouts.

Runs ``gradasym sweep`` (the 4x4 learning-rate grid, one seed, faithful defaults, N = 50)
for ``--episodes`` episodes per run into a fresh temporary folder, once per arm, alternating
the order over ``--repeats``, and reports run-episodes per second of wall clock for the whole
command (process start, run folders, checkpoints and all) and the ratios between the arms.
The arms:

* ``current``: this code (run by run, one run per worker process);
* ``base`` (``--base-src``): an older checkout's ``src/``, run by run (the reference measured
  in the same session);
* ``batched`` (``--batched-src``): a checkout that still has the retired batched trainer
  (``git archive 054d87e src | tar -x -C /tmp/batched``, then ``--batched-src /tmp/batched/src``),
  run with ``--batch-runs auto`` (one batch per worker), the way it was measured before
  its retirement (docs/sweeps.md, "Batched runs (retired)").

The early episodes before the replay holds one batch do no update, so use enough episodes
(default 40) for the update to dominate, as in real sweeps. Records the load average before
and after.

    python benchmarks/bench_sweep.py --episodes 40 --workers 2 --batched-src /tmp/batched/src \\
        --json benchmarks/runs/sweep/out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def one(arm: str, episodes: int, workers: int, src: str | None = None) -> dict:
    """One sweep of ``arm`` ("current", "base" or "batched"; the last two run the code under ``src``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if arm != "current":
        env["PYTHONPATH"] = src or ""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        cmd = [sys.executable, "-m", "gradasym.cli", "sweep", "--out", str(out), "--episodes", str(episodes),
               "--workers", str(workers), "--no-live"] + (["--batch-runs", "auto"] if arm == "batched" else [])
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - t0
        table = pd.read_parquet(out / "summary.parquet")
        run_episodes = int(table["episodes_run"].sum())
        assert (table["status"] == "finished").all(), table["status"].tolist()
    return {"arm": arm, "wall_s": round(wall, 2), "run_episodes": run_episodes,
            "run_episodes_per_s": round(run_episodes / wall, 3), "load_before": load0,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40, help="episodes per run (default 40)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of measurements, order alternating (default 1)")
    ap.add_argument("--base-src", default=None,
                    help="also time this older checkout's src/ folder, run by run (arm 'base'; default: none)")
    ap.add_argument("--batched-src", default=None,
                    help="also time this checkout's src/ with --batch-runs auto: one that still has the batched "
                         "trainer, e.g. commit 054d87e (arm 'batched'; default: none)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default: none)")
    args = ap.parse_args()
    srcs = {"current": None, "base": args.base_src, "batched": args.batched_src}
    arms = [a for a in ("base", "batched", "current") if a == "current" or srcs[a]]
    rows = []
    for i in range(args.repeats):
        for arm in (arms if i % 2 == 0 else arms[::-1]):
            rows.append(one(arm, args.episodes, args.workers, srcs[arm]))
            print(json.dumps(rows[-1]), flush=True)
    rate = {a: sum(r["run_episodes_per_s"] for r in rows if r["arm"] == a) / args.repeats for a in arms}
    ratios = {f"{a}/{ref}": rate[a] / rate[ref] for a in arms for ref in arms if a != ref}
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x run-episodes per second ({args.workers} workers, {args.episodes} episodes per run)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "rate": rate, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
