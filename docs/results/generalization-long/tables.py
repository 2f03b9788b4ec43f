"""Tables and figures of docs/generalization.md's training-scale section, generated from the sweeps' files.

    python docs/results/generalization-long/tables.py [RESULTS_ROOT]   # default results/generalization-long

For every sweep folder NAME under RESULTS_ROOT (pendulum-td3, pendulum-ddpg, pendulum-sac, hopper-td3,
hopper-sac: made by the commands in docs/generalization.md), copies its ``summary.csv`` to
``docs/results/generalization-long/NAME/``, writes ``per_run.csv`` there (each run's freeze, gradient
death, saturation and evaluation returns), prints one Markdown table per sweep (one row per actor
LR, over the seeds) and draws two figures next to this script: ``eval_return.png`` (the deterministic
evaluation return over environment steps, mean over seeds with the range, per algorithm and task, the
RL Baselines3 Zoo's published score as a dotted line) and ``saturation.png`` (the actor's tanh
saturation ratio over environment steps). Runs that are not finished are listed and left out of the
tables, never silently.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gradasym.report.generic import bounds_text, return_bounds  # noqa: E402
from gradasym.report.stats import mean_ci  # noqa: E402

HERE = Path(__file__).resolve().parent
#: The RL Baselines3 Zoo's published scores (benchmark.md of DLR-RM/rl-baselines3-zoo: one run,
#: deterministic policy, mean and std over its evaluation episodes; Zoo hyperparameters, not SB3's
#: defaults used here) and the training budget they had, for context only.
ZOO = {
    ("td3", "Pendulum-v1"): (-151.855, 90.227, "20k"), ("ddpg", "Pendulum-v1"): (-152.099, 94.282, "20k"),
    ("sac", "Pendulum-v1"): (-156.995, 88.714, "20k"), ("td3", "Hopper"): (3606.390, 4.027, "1M (Hopper-v3)"),
    ("sac", "Hopper"): (2325.547, 1129.676, "1M (Hopper-v3)"),
}
LAST_EVALS = 5  # the final level: mean of the last five evaluations of a run


def zoo_score(algo: str, env: str) -> tuple[float, float, str] | None:
    return ZOO.get((algo, env)) or ZOO.get((algo, env.split("-")[0]))


def per_run(sweep: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run of ``sweep``; and the run ids left out (not finished)."""
    summary = pd.read_csv(sweep / "summary.csv")
    rows, left_out = [], []
    for _, s in summary.iterrows():
        run = sweep / str(s["run_dir"])
        if s["status"] != "finished" or not (run / "eval.parquet").is_file():
            left_out.append(f"{s['run_id']} ({s['status']})")
            continue
        ev = pd.read_parquet(run / "eval.parquet").sort_values("step")
        tr = pd.read_parquet(run / "tracking.parquet")
        rows.append({
            "run_id": s["run_id"], "algo": s["algo"], "env": s["env"], "actor_lr": s["actor_lr"],
            "critic_lr": s["critic_lr"], "seed": int(s["seed"]), "steps": int(s["steps_run"]),
            "stopping_step": s["stopping_step"], "grad_death_step": s["grad_death_step"],
            "critic_stopped": bool(s["critic_stopped"]), "diverged": bool(s["diverged"]),
            "final_saturation_ratio": s["final_saturation_ratio"], "max_saturation_ratio": tr["saturation_ratio"].max(),
            "max_abs_preactivation": s["max_abs_preactivation"],
            "eval_first": ev["eval_return"].iloc[0], "eval_best": ev["eval_return"].max(),
            "eval_final": ev["eval_return"].tail(LAST_EVALS).mean(), "seconds_total": s["seconds_total"],
        })
    return pd.DataFrame(rows), left_out


def _ci_text(values: pd.Series, bounds: tuple[float, float], digits: int = 0) -> str:
    """Mean with its Student-t 95 % interval over seeds, clipped to the task's possible returns."""
    ci = mean_ci(values.dropna())
    if ci.n == 0:
        return "—"
    if ci.n == 1:
        return f"{ci.mean:.{digits}f} (1 seed)"
    lo, hi = max(ci.lo, bounds[0]), min(ci.hi, bounds[1])
    clipped = "*" if (lo, hi) != (ci.lo, ci.hi) else ""
    return f"{ci.mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]{clipped}"


def _steps_text(v: pd.Series, n: int) -> str:
    v = v.dropna()
    if v.empty:
        return f"0/{n}"
    return f"{len(v)}/{n}: " + (f"{v.iloc[0]:.0f}" if len(v) == 1 else f"{v.median():.0f} ({v.min():.0f}-{v.max():.0f})")


def markdown(runs: pd.DataFrame) -> str:
    algo, env = runs["algo"].iloc[0], runs["env"].iloc[0]
    zoo = zoo_score(algo, env)
    bounds = return_bounds(runs)
    lines = [f"**{algo.upper()}, {env}**, critic LR {', '.join(f'{c:g}' for c in sorted(runs['critic_lr'].unique()))}, "
             f"{runs['steps'].max():,} environment steps" + (f"; Zoo score {zoo[0]:.0f} ± {zoo[1]:.0f} after {zoo[2]}"
                                                             if zoo else ""),
             "",
             "| actor LR | seeds | actor frozen (gradient step) | gradient death (gradient step) | final saturation | max abs z | "
             f"eval return, first | eval return, final (last {LAST_EVALS}) | best eval | critic stopped / diverged | s per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lr, g in runs.groupby("actor_lr"):
        n = len(g)
        lines.append(
            f"| {lr:g} | {n} | {_steps_text(g['stopping_step'], n)} | {_steps_text(g['grad_death_step'], n)} | "
            f"{g['final_saturation_ratio'].mean():.2f} ({g['final_saturation_ratio'].min():.2f}-"
            f"{g['final_saturation_ratio'].max():.2f}) | {g['max_abs_preactivation'].median():.3g} | "
            f"{_ci_text(g['eval_first'], bounds)} | {_ci_text(g['eval_final'], bounds)} | {g['eval_best'].max():.0f} | "
            f"{int(g['critic_stopped'].sum())} / {int(g['diverged'].sum())} | {g['seconds_total'].median():.0f} |")
    lines.append(f"\nEval returns: mean of the seeds with the Student-t 95 % interval over seeds (* = clipped to the "
                 f"task's possible returns, {bounds_text(bounds) or 'unbounded'}); steps: median (range) over the seeds that "
                 "froze / whose actor gradient died.")
    return "\n".join(lines)


def _curves(sweeps: dict[str, Path], column: str, source: str, ylabel: str, path: Path, zoo: bool) -> None:
    names = list(sweeps)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        summary = pd.read_csv(sweeps[name] / "summary.csv")
        summary = summary[summary["status"] == "finished"]
        if summary.empty:
            ax.set_title(f"{name}: no finished runs", fontsize=9)
            continue
        for i, (lr, g) in enumerate(summary.groupby("actor_lr")):
            tables = [pd.read_parquet(sweeps[name] / d / source) for d in g["run_dir"]]
            grid = np.unique(np.concatenate([t["step"].to_numpy() for t in tables]))
            ys = np.array([np.interp(grid, t["step"], t[column], left=np.nan, right=np.nan) for t in tables])
            color = f"C{i}"
            ax.plot(grid, np.nanmean(ys, axis=0), color=color, lw=1.2, label=f"actor LR {lr:g} (n={len(tables)})")
            if len(tables) > 1:
                ax.fill_between(grid, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=color, alpha=0.15, lw=0)
        algo, env = summary["algo"].iloc[0], summary["env"].iloc[0]
        score = zoo_score(algo, env)
        if zoo and score:
            ax.axhline(score[0], color="k", ls=":", lw=1, label=f"Zoo score ({score[2]})")
        ax.set_title(f"{algo.upper()}, {env}\nmean over seeds, band: range over seeds", fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path("results/generalization-long")
    sweeps = {p.name: p for p in sorted(root.iterdir()) if (p / "summary.csv").is_file()} if root.is_dir() else {}
    if not sweeps:
        print(f"tables.py: no sweep folders with a summary.csv under {root}", file=sys.stderr)
        return 2
    for name, sweep in sweeps.items():
        runs, left_out = per_run(sweep)
        dest = HERE / name
        dest.mkdir(exist_ok=True)
        shutil.copy2(sweep / "summary.csv", dest / "summary.csv")
        runs.to_csv(dest / "per_run.csv", index=False)
        print(f"\n### {name}\n")
        print(markdown(runs) if not runs.empty else "no finished runs")
        if left_out:
            print(f"\nNot finished, left out: {', '.join(left_out)}")
    _curves(sweeps, "eval_return", "eval.parquet", "evaluation return", HERE / "eval_return.png", zoo=True)
    _curves(sweeps, "saturation_ratio", "tracking.parquet", "actor saturation ratio", HERE / "saturation.png",
            zoo=False)
    print(f"\nfigures: {HERE / 'eval_return.png'}, {HERE / 'saturation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
