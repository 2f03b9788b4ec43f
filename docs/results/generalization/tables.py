"""Tables of docs/generalization.md, generated from the sweeps' files (not typed by hand).

    python docs/results/generalization/tables.py [RESULTS_ROOT]   # default results/gen

For every sweep folder NAME under RESULTS_ROOT (td3-pendulum, ddpg-pendulum, ...):
copies its ``summary.csv`` to ``docs/results/generalization/NAME/``, writes
``tracking_final.csv`` there (the last ``tracking.parquet`` row of each run: the
quantities ``summary.csv`` does not carry, e.g. the dead-output fraction, and SAC's
sampled pre-tanh columns) and prints one Markdown table per sweep, one row per
(actor LR, critic LR) configuration.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
#: tracking.parquet columns kept from each run's last row (missing ones are left out).
LAST_ROW = ("gradient_step", "saturation_ratio", "dead_output_frac", "squash_grad_mean", "preact_max_abs",
            "sampled_max_abs", "sampled_saturation_ratio", "sampled_dead_output_frac", "sampled_squash_grad_mean",
            "log_std_mean", "log_std_max", "actor_grad_norm", "critic_grad_norm", "rho")


def last_rows(sweep: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its ``run_id`` and the last tracking row's ``LAST_ROW`` columns."""
    rows = []
    for run_id, run_dir in zip(summary["run_id"], summary["run_dir"]):
        path = sweep / run_dir / "tracking.parquet"
        if not path.exists():
            continue
        t = pd.read_parquet(path)
        if t.empty:
            continue
        last = t.iloc[-1]
        row = {"run_id": run_id, **{c: last[c] for c in LAST_ROW if c in t.columns}}
        run_summary = json.loads((sweep / run_dir / "summary.json").read_text())
        # actor optimiser steps per gradient step (TD3's policy_delay 2: 0.5)
        row["actor_updates_per_gradient_step"] = run_summary["actor_updates"] / max(1, run_summary["gradient_steps"])
        if "dead_output_frac" in t.columns:
            row["max_dead_output_frac"] = t["dead_output_frac"].max()
        if "sampled_max_abs" in t.columns:
            row["max_sampled_max_abs"] = t["sampled_max_abs"].max()
        rows.append(row)
    return pd.DataFrame(rows)


def _median_range(v: pd.Series, fmt: str = "{:.0f}") -> str:
    v = v.dropna()
    if v.empty:
        return "never"
    if len(v) == 1:
        return fmt.format(v.iloc[0])
    return f"{fmt.format(v.median())} ({fmt.format(v.min())}-{fmt.format(v.max())})"


def config_table(summary: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Per (actor LR, critic LR): seeds, stopped k/n, stop / death step median (range), critic, diverged, |z|, ..."""
    df = summary.merge(final, on="run_id", how="left", suffixes=("", "_last")) if not final.empty else summary
    out = []
    for (alr, clr), g in df.groupby(["actor_lr", "critic_lr"], sort=True):
        fin = g[g["status"] == "finished"]
        if fin.empty:  # not finished (pending, interrupted): say so instead of "never"
            out.append({"actor LR": alr, "critic LR": clr, "seeds finished": f"0/{len(g)}"})
            continue
        row = {
            "actor LR": alr, "critic LR": clr, "seeds finished": f"{len(fin)}/{len(g)}",
            "gradient steps": _median_range(fin["gradient_steps"]),
            "actor frozen": f"{int(fin['stopping_step'].notna().sum())}/{len(fin)}",
            "frozen at end": f"{int(fin['all_frozen_at_end'].astype(bool).sum())}/{len(fin)}",
            "stopping step": _median_range(fin["stopping_step"]),
            "grad-death step": _median_range(fin["grad_death_step"]),
            "death to freeze (actor updates)": _median_range(
                (fin["stopping_step"] - fin["grad_death_step"]) * fin.get("actor_updates_per_gradient_step", np.nan)),
            "critic stopped": f"{int(fin['critic_stopped'].astype(bool).sum())}/{len(fin)}",
            "diverged": f"{int(fin['diverged'].astype(bool).sum())}/{len(fin)}",
            "max abs z": _median_range(fin["max_abs_preactivation"], "{:.3g}"),
            "final saturation": f"{fin['final_saturation_ratio'].mean():.2f}",
        }
        if "dead_output_frac" in fin:
            row["final dead-output frac"] = f"{fin['dead_output_frac'].mean():.2f}"
        if "sampled_max_abs" in fin and fin["sampled_max_abs"].notna().any():
            row["sampled max abs z (last row)"] = _median_range(fin["sampled_max_abs"], "{:.3g}")
            row["sampled dead frac"] = f"{fin['sampled_dead_output_frac'].mean():.2f}"
        row["return first 10% -> last 10%"] = (f"{fin['return_first10'].mean():.0f} -> "
                                              f"{fin['final_return'].mean():.0f}")
        out.append(row)
    return pd.DataFrame(out).fillna("not finished")


def markdown(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table (pandas' ``to_markdown`` needs ``tabulate``, not installed)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in r) + " |"
              for r in df.itertuples(index=False)]
    return "\n".join(lines)


def main(root: str = "results/gen") -> None:
    for sweep in sorted(p for p in Path(root).iterdir() if (p / "summary.csv").exists() and not p.name.startswith("_")):
        summary = pd.read_csv(sweep / "summary.csv")
        final = last_rows(sweep, summary)
        dest = HERE / sweep.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep / "summary.csv", dest / "summary.csv")
        final.to_csv(dest / "tracking_final.csv", index=False)
        print(f"\n### {sweep.name} ({len(summary)} runs, "
              f"{int(summary['status'].eq('finished').sum())} finished)\n")
        print(markdown(config_table(summary, final)))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main(*sys.argv[1:])
