"""Seconds per episode of every preset (``gradasym presets``) vs the baseline (sequential mode).

Each preset is trained with the real ``Trainer`` (tracking on) for ``--warmup`` +
``--episodes`` episodes at the paper's sizes; the statistics cover the episodes after
the warm-up. Presets whose options the agent does not implement yet (the agent raises
``NotImplementedError``) are reported as "not yet implemented".

    python benchmarks/bench_presets.py --threads 1 --json presets.json
    python benchmarks/bench_presets.py --presets baseline gradclip --episodes 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gradasym.config import available_presets
from gradasym.process import configure_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import finish, machine_info, run_training, wait_for_quiet  # noqa: E402


def preset_names() -> list[str]:
    names = available_presets()
    return ["baseline"] + [n for n in names if n != "baseline"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=None, help="default: every preset (`gradasym presets`)")
    p.add_argument("--mode", choices=["sequential", "simultaneous"], default="sequential")
    p.add_argument("--episodes", type=int, default=60, help="measured episodes per preset")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--actor-lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--wait-load", type=float, default=0.0,
                   help="before each preset, wait (up to --max-wait s) for the 1-min load average to drop below this")
    p.add_argument("--max-wait", type=float, default=300.0)
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args(argv)

    configure_process(args.threads)  # as gradasym run
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, threads {args.threads}")
    rows: list[dict[str, Any]] = []
    base = None
    for name in args.presets or preset_names():
        if args.wait_load:
            wait_for_quiet(args.wait_load, args.max_wait)
        t0 = time.perf_counter()
        try:
            res = run_training(args.mode, args.warmup + args.episodes, args.warmup, args.actor_lr, name,
                               args.seed, breakdown=True, verbose=False)
        except NotImplementedError as exc:
            rows.append({"preset": name, "status": "not yet implemented", "error": str(exc).splitlines()[0]})
            print(f"  {name:<20} not yet implemented ({str(exc).splitlines()[0][:90]})")
            continue
        except Exception as exc:  # report and go on with the other presets
            rows.append({"preset": name, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
            print(f"  {name:<20} ERROR {type(exc).__name__}: {exc}")
            continue
        s = res["seconds_per_episode"]
        c = res["components_mean_s"]
        row = {
            "preset": name, "status": "ok", "mean_s": s["mean"], "median_s": s["median"], "n": s["n"],
            "actor_updates_s": c.get("actor_updates"), "critic_update_s": c.get("critic_update"),
            "replay_insert_s": c.get("replay_insert"), "tracking_s": c.get("tracking"),
            "rows_evaluated_per_pass": res.get("rows", {}).get("evaluated_rows_per_pass"),
            "load_avg_start": res["load_avg_start"][0], "load_avg_end": res["load_avg_end"][0],
            "wall_s": time.perf_counter() - t0,
        }
        if name == "baseline":
            base = row["mean_s"]
        row["vs_baseline"] = row["mean_s"] / base if base else None
        rows.append(row)
        rel = f"{row['vs_baseline']:.2f}x" if row["vs_baseline"] else "-"
        ev = row["rows_evaluated_per_pass"]
        print(f"  {name:<20} mean {s['mean'] * 1e3:7.1f} ms  median {s['median'] * 1e3:7.1f} ms  {rel:>6}  "
              f"(actor {c.get('actor_updates', 0) * 1e3:.1f}, critic {c.get('critic_update', 0) * 1e3:.1f}, "
              f"remember {c.get('replay_insert', 0) * 1e3:.1f} ms; rows/pass {ev if ev is None else round(ev)}; "
              f"load {row['load_avg_start']:.2f}->{row['load_avg_end']:.2f})", flush=True)
    return finish({"machine": info, "args": vars(args), "presets": rows}, args.json_out)


if __name__ == "__main__":
    main()
