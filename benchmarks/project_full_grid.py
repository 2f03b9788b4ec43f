"""Project the time of the full faithful paper grid (2,000 episodes, early stop, one seed).

Reads a finished reduced-scale ``gradasym reproduce`` folder (or any sweep of the
paper grid) and projects each run to the 2,000-episode protocol: runs that stopped
early keep their measured length (early termination ends them the same way), the
others run 2,000 episodes at their measured seconds per episode. Prints the serial
total and the makespan on ``--workers`` processes (longest-first scheduling).

    python benchmarks/project_full_grid.py results/reproduce --workers 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def project(summary: pd.DataFrame, episodes: int = 2000, workers: int = 2) -> dict:
    runs = summary[summary["status"] == "finished"].copy()
    runs["projected_episodes"] = runs["episodes_run"].where(runs["early_stopped"].astype(bool), episodes)
    runs["projected_seconds"] = runs["projected_episodes"] * runs["seconds_per_episode"]
    loads = [0.0] * workers
    for s in sorted(runs["projected_seconds"], reverse=True):
        loads[loads.index(min(loads))] += s
    return {
        "runs": len(runs), "episodes": int(runs["projected_episodes"].sum()),
        "serial_minutes": runs["projected_seconds"].sum() / 60, "workers": workers,
        "makespan_minutes": max(loads) / 60,
        "mean_seconds_per_episode": float(runs["seconds_per_episode"].mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--episodes", type=int, default=2000)
    args = p.parse_args()
    summary = pd.read_parquet(args.sweep_dir / "summary.parquet")
    print(json.dumps(project(summary, args.episodes, args.workers), indent=2))


if __name__ == "__main__":
    main()
