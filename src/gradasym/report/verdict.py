"""The remedy verdict: which result set makes more learning-rate configurations viable, and how well they learn.

``gradasym report BASELINE --compare REMEDY ...`` with several seeds per
configuration (the thesis' standard: 10 seeds, 2,000 episodes) answers the study's
open question from these numbers (``docs/report.md``, "Remedy verdict"):

* per result set and configuration (:func:`config_verdict`): the seeds, the
  all-stopped fraction (Wilson), the stopping-episode median (order-statistic
  interval, never-stopped seeds right-censored), the improvement (relative, the
  viability quantity) as a mean with its Student-t interval, viable in every seed
  (the thesis' criterion) and viable by the robust criterion (the t interval's lower
  end above the margin), and the final-reward level with its t interval and its
  Welch difference to the best baseline configuration;
* per result set over configurations (:func:`remedy_verdict`): both viable counts,
  and the IQM of the improvement and of the final reward over all (configuration,
  seed) runs with a stratified bootstrap interval.

The baseline is the first group of the main result set; the others are the
remedies. Only finished runs enter the improvement and the reward (as in the viable
count); the stopping statistics are :func:`~gradasym.report.analysis.config_table`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .analysis import GroupData, _ci_cols, bounded_text, fmt_lr, fmt_num, viable_table
from .stats import (
    BOOTSTRAP_CI_METHOD, IQM_DEFINITION, MEDIAN_CI_METHOD, SEED_FRACTION_CI_METHOD, WELCH_CI_METHOD, mean_ci,
    stratified_bootstrap_ci, welch_diff_ci,
)
from .tables import Table

__all__ = ["Verdict", "compute_verdict", "config_verdict", "remedy_verdict", "run_improvement", "best_configuration",
           "table_verdict_configs", "table_verdict_remedies", "verdict_definition", "verdict_summary",
           "ROBUST_CRITERION"]

PAIR = ["actor_lr", "critic_lr"]

#: The robust criterion as stated on the page and in docs/report.md.
ROBUST_CRITERION = ("viable (robust): the lower end of the two-sided 95% Student-t interval of the mean improvement "
                    "over seeds lies above the margin, i.e. a one-sided 97.5% lower confidence bound of the mean "
                    "relative improvement exceeds the margin (needs 2 finished seeds)")


def run_improvement(runs: pd.DataFrame) -> pd.Series:
    """Relative improvement of each run: ``(reward_last10 - reward_first10) / |reward_first10|``.

    The quantity the viability criterion compares with the margin (a run improves when
    it exceeds ``margin``); NaN where either mean is missing or the first-10 % mean is 0.
    """
    first, last = runs["reward_first10"].astype(float), runs["reward_last10"].astype(float)
    scale = first.abs().where(first != 0)
    return (last - first) / scale


def _finished(gd: GroupData) -> pd.DataFrame:
    runs = gd.runs[gd.runs["finished"]]
    return runs.assign(improvement=run_improvement(runs))


def config_verdict(gd: GroupData, margin: float, level: float = 0.95) -> pd.DataFrame:
    """One row per configuration of ``gd``: stopping, improvement, both viability verdicts, final reward.

    Columns: ``actor_lr``, ``critic_lr``, ``n_runs``, ``n_finished``; ``stop_n``,
    ``n_stopped``, ``stopfrac_mean``/``_lo``/``_hi`` (Wilson); ``stopmed_*`` (the
    median's bounds and interval of :func:`~gradasym.report.analysis.config_table`);
    ``imp_mean``/``_lo``/``_hi``/``_n`` (relative improvement of the finished runs,
    Student-t); ``viable_every`` (the thesis' criterion, None: no finished run);
    ``viable_robust`` (``imp_lo > margin``, None below 2 seeds); ``final_mean``/``_lo``/
    ``_hi``/``_n`` (last-10 % mean reward of the finished runs, Student-t).
    """
    fin = _finished(gd)
    every = viable_table(gd.runs, margin).set_index(PAIR)
    rows = []
    for _, a in gd.agg.sort_values(PAIR).iterrows():
        key = (a["actor_lr"], a["critic_lr"])
        runs = fin[(fin["actor_lr"] == key[0]) & (fin["critic_lr"] == key[1])]
        imp = mean_ci(runs["improvement"], level)
        v = every.loc[key] if key in every.index else None
        rows.append({
            "actor_lr": key[0], "critic_lr": key[1], "n_runs": int(a["n_runs"]), "n_finished": len(runs),
            "stop_n": int(a["stop_n"]), "n_stopped": int(a["n_stopped"]), "stopfrac_mean": a["stopfrac_mean"],
            "stopfrac_lo": a["stopfrac_lo"], "stopfrac_hi": a["stopfrac_hi"],
            **{k: a[k] for k in ("stopmed_lo", "stopmed_hi", "stopmed_ci_lo", "stopmed_ci_lo_hi", "stopmed_ci_hi",
                                 "stopmed_ci_hi_hi", "stopmed_coverage")},
            **_ci_cols("imp", imp),
            "viable_every": None if v is None or v["viable"] is None else bool(v["viable"]),
            "viable_robust": bool(imp.lo > margin) if imp.n >= 2 else None,
            **_ci_cols("final", mean_ci(runs["reward_last10"], level)),
        })
    return pd.DataFrame(rows)


def best_configuration(base: pd.DataFrame) -> tuple[float, float] | None:
    """The baseline configuration with the highest mean final reward (None when none has a finished run).

    Ties go to the first in (actor LR, critic LR) order, so the choice is deterministic.
    """
    have = base[base["final_n"] > 0].sort_values(PAIR)
    if not len(have):
        return None
    row = have.loc[have["final_mean"].idxmax()]
    return float(row["actor_lr"]), float(row["critic_lr"])


def _final_rewards(gd: GroupData, key: tuple[float, float]) -> pd.Series:
    fin = gd.runs[gd.runs["finished"]]
    return fin.loc[(fin["actor_lr"] == key[0]) & (fin["critic_lr"] == key[1]), "reward_last10"]


@dataclass
class Verdict:
    """Everything the verdict tables, figure and summary show (computed once by :func:`compute_verdict`)."""

    baseline: GroupData
    groups: list[GroupData]      # baseline first, then the remedies
    configs: pd.DataFrame        # config_verdict rows of every group (``set`` = group title) + ``diff_*``
    remedies: pd.DataFrame       # remedy_verdict rows, one per group
    grid: list[tuple[float, float]]  # every configuration any group has
    best: tuple[float, float] | None  # best baseline configuration (highest mean final reward)
    margin: float
    level: float = 0.95


def remedy_verdict(gd: GroupData, cfg: pd.DataFrame, grid: list[tuple[float, float]], level: float = 0.95) -> dict:
    """One group's row over its configurations: counts, missing configurations, IQMs with bootstrap intervals."""
    fin = _finished(gd)
    have = set(zip(cfg["actor_lr"], cfg["critic_lr"])) if len(cfg) else set()
    with_runs = {k for k in have if ((fin["actor_lr"] == k[0]) & (fin["critic_lr"] == k[1])).any()}
    missing = [k for k in grid if k not in with_runs]
    strata = [g for _, g in fin.groupby(PAIR, sort=True)]
    imp = stratified_bootstrap_ci([g["improvement"] for g in strata], level=level)
    final = stratified_bootstrap_ci([g["reward_last10"] for g in strata], level=level)
    n = cfg["n_finished"] if len(cfg) else pd.Series([0])
    return {
        "set": gd.title, "configurations": len(with_runs), "grid": len(grid),
        "missing": "; ".join(f"{fmt_lr(a)}/{fmt_lr(c)}" for a, c in missing),
        "seeds_min": int(n[n > 0].min()) if (n > 0).any() else 0, "seeds_max": int(n.max()),
        "runs": len(fin),
        "viable_every": int((cfg["viable_every"] == True).sum()) if len(cfg) else 0,  # noqa: E712
        "evaluated_every": int(cfg["viable_every"].notna().sum()) if len(cfg) else 0,
        "viable_robust": int((cfg["viable_robust"] == True).sum()) if len(cfg) else 0,  # noqa: E712
        "evaluated_robust": int(cfg["viable_robust"].notna().sum()) if len(cfg) else 0,
        "imp_iqm": imp.estimate, "imp_lo": imp.lo, "imp_hi": imp.hi, "imp_n": imp.n,
        "final_iqm": final.estimate, "final_lo": final.lo, "final_hi": final.hi, "final_n": final.n,
        "strata": imp.strata, "reps": imp.reps, "bootstrap_seed": imp.seed,
    }


def compute_verdict(groups: list[GroupData], margin: float, level: float = 0.95) -> Verdict:
    """The verdict of ``groups[1:]`` (remedies) against ``groups[0]`` (the baseline)."""
    if len(groups) < 2:
        raise ValueError("the verdict needs a baseline and at least one other result set")
    per = [config_verdict(g, margin, level) for g in groups]
    best = best_configuration(per[0])
    best_rewards = _final_rewards(groups[0], best) if best is not None else pd.Series(dtype=float)
    frames = []
    for g, cfg in zip(groups, per):
        diffs = [welch_diff_ci(_final_rewards(g, (r["actor_lr"], r["critic_lr"])), best_rewards, level)
                 for _, r in cfg.iterrows()]
        frames.append(cfg.assign(set=g.title, diff_mean=[d.mean for d in diffs], diff_lo=[d.lo for d in diffs],
                                 diff_hi=[d.hi for d in diffs], diff_n=[d.n for d in diffs]))
    configs = pd.concat(frames, ignore_index=True)
    grid = sorted({(float(a), float(c)) for a, c in zip(configs["actor_lr"], configs["critic_lr"])})
    remedies = pd.DataFrame([remedy_verdict(g, cfg, grid, level) for g, cfg in zip(groups, per)])
    return Verdict(groups[0], list(groups), configs, remedies, grid, best, margin, level)


# ------------------------------------------------------------------ text
def _interval(mean: float, lo: float, hi: float, n: int, fmt=fmt_num) -> str:
    """``m [lo, hi]``; ``m (1 seed: no interval)``; ``—`` without values."""
    if not n or not np.isfinite(mean):
        return "—"
    if n < 2:
        return f"{fmt(mean)} (1 seed: no interval)"
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%" if np.isfinite(x) else "—"


def _yes_no(v, unknown: str) -> str:
    return {True: "yes", False: "no"}.get(v, unknown) if v is not None else unknown


def _reward_word(r: pd.Series) -> str:
    """Where a configuration's final reward stands against the best baseline configuration's."""
    if not r["diff_n"] or not np.isfinite(r["diff_mean"]):
        return "—"
    if r["diff_n"] < 2:
        return "1 seed: not judged"
    if r["diff_hi"] < 0:
        return "worse"
    if r["diff_lo"] > 0:
        return "better"
    return "not distinguishable"


def _best_text(v: Verdict) -> str:
    if v.best is None:
        return "none (no finished baseline run)"
    row = v.configs[(v.configs["set"] == v.baseline.title) & (v.configs["actor_lr"] == v.best[0])
                    & (v.configs["critic_lr"] == v.best[1])].iloc[0]
    return (f"actor LR {fmt_lr(v.best[0])} / critic LR {fmt_lr(v.best[1])} of {v.baseline.title} (mean final reward "
            f"{fmt_num(row['final_mean'])}, {int(row['final_n'])} seeds)")


def verdict_definition(margin: float) -> str:
    """The definitions the verdict section opens with."""
    return (f"Baseline: the first result set (gradasym report BASELINE --compare REMEDY ...). Improvement of a run: "
            f"(last-10% mean reward − first-10% mean) / |first-10% mean|, the quantity the viability criterion "
            f"compares with the margin ({margin:.0%}); finished runs only. Viable (every seed): the thesis' criterion, "
            f"every finished seed's improvement exceeds the margin. {ROBUST_CRITERION[0].upper()}{ROBUST_CRITERION[1:]}"
            ". It is robust to single seeds: one bad seed lowers the mean and widens the interval but does not veto "
            "a configuration by itself, and one lucky seed cannot make it viable. Final reward: the last-10% mean "
            "reward, the level actually reached; a remedy that keeps actors moving but reaches a worse reward is "
            f"marked 'worse'. Over configurations: {IQM_DEFINITION}, with a {BOOTSTRAP_CI_METHOD}.")


def table_verdict_configs(v: Verdict) -> Table:
    """Per result set and configuration: stopping, improvement, both viability verdicts, the reward reached."""
    rows, data = [], []
    for _, r in v.configs.iterrows():
        n_text = f"{int(r['n_finished'])}"
        if r["n_finished"] != r["n_runs"]:
            n_text += f" (of {int(r['n_runs'])} runs)"
        med = bounded_text(r["stopmed_lo"], r["stopmed_hi"])
        if np.isfinite(r["stopmed_ci_lo"]):
            med += (f" [{bounded_text(r['stopmed_ci_lo'], r['stopmed_ci_lo_hi'])}, "
                    f"{bounded_text(r['stopmed_ci_hi'], r['stopmed_ci_hi_hi'])}]")
        elif r["stop_n"]:
            med += " (no interval: < 6 seeds)"
        rows.append({
            "Result set": r["set"], "Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]),
            "Seeds (finished)": n_text,
            "All stopped [95% Wilson]": (f"{int(r['n_stopped'])}/{int(r['stop_n'])} [{r['stopfrac_lo']:.2f}, "
                                         f"{r['stopfrac_hi']:.2f}]" if r["stop_n"] else "—"),
            "Stop ep. median [95% CI]": med if r["stop_n"] else "—",
            "Improvement, mean [95% t]": _interval(r["imp_mean"], r["imp_lo"], r["imp_hi"], r["imp_n"], _pct),
            "Viable (every seed)": _yes_no(r["viable_every"], "unknown (no finished run)"),
            "Viable (robust)": _yes_no(r["viable_robust"], "unknown (< 2 seeds)"),
            "Final reward, mean [95% t]": _interval(r["final_mean"], r["final_lo"], r["final_hi"], r["final_n"]),
            "Δ vs best baseline [95% Welch]": _interval(r["diff_mean"], r["diff_lo"], r["diff_hi"], r["diff_n"]),
            "Reward vs best baseline": _reward_word(r),
        })
        data.append(r.to_dict() | {"reward_vs_best": _reward_word(r)})
    cols = ["set", "actor_lr", "critic_lr", "n_runs", "n_finished", "stop_n", "n_stopped", "stopfrac_mean",
            "stopfrac_lo", "stopfrac_hi", "stopmed_lo", "stopmed_hi", "stopmed_ci_lo", "stopmed_ci_lo_hi",
            "stopmed_ci_hi", "stopmed_ci_hi_hi", "stopmed_coverage", "imp_mean", "imp_lo", "imp_hi", "imp_n",
            "viable_every", "viable_robust", "final_mean", "final_lo", "final_hi", "final_n", "diff_mean", "diff_lo",
            "diff_hi", "diff_n", "reward_vs_best"]
    caption = (f"Per result set and configuration (baseline: {v.baseline.title}). Seeds: finished runs (they enter the "
               "improvement and the reward). All stopped: k of n seeds whose actors all stopped, "
               f"{SEED_FRACTION_CI_METHOD}. Stop ep. median: over seeds, a seed that never stopped counted as ≥ the "
               f"episodes it ran (right-censored, never dropped); interval: the {MEDIAN_CI_METHOD}. Improvement: "
               "(last-10% − first-10% mean reward) / |first-10% mean| per seed, mean with the 95% Student-t interval "
               f"over seeds. Viable (every seed): every seed's improvement > {v.margin:.0%} (the thesis' criterion). "
               f"{ROBUST_CRITERION[0].upper()}{ROBUST_CRITERION[1:]}. Final reward: last-10% mean reward, mean with "
               f"the 95% Student-t interval over seeds. Δ vs best baseline: final reward minus that of the best "
               f"baseline configuration, {_best_text(v)}, with the {WELCH_CI_METHOD}; 'worse' / 'better' when the "
               "whole interval is below / above 0.")
    return Table("table_verdict_configs", "", "Remedy verdict per configuration: viability and the reward reached",
                 caption, pd.DataFrame(rows), pd.DataFrame(data, columns=cols))


def _role(name: str, k: int) -> str:
    """``name (baseline)`` for the first set, unless its name already says so."""
    return name if k or name == "baseline" else f"{name} (baseline)"


def _seeds_text(r: pd.Series) -> str:
    lo, hi = int(r["seeds_min"]), int(r["seeds_max"])
    return f"n = {hi}" if lo == hi else f"n = {lo}–{hi} per configuration"


def table_verdict_remedies(v: Verdict) -> Table:
    """Per result set over its configurations: viable counts under both criteria, IQMs with bootstrap intervals."""
    base = v.remedies.iloc[0]
    rows = []
    for k, (_, r) in enumerate(v.remedies.iterrows()):
        conf = f"{r['configurations']} of {r['grid']}" + (f" (missing: {r['missing']})" if r["missing"] else "")
        delta = "" if k == 0 else (f" ({r['viable_every'] - base['viable_every']:+d} vs baseline)")
        delta_r = "" if k == 0 else (f" ({r['viable_robust'] - base['viable_robust']:+d} vs baseline)")
        rows.append({
            "Result set": _role(r["set"], k), "Configurations": conf,
            "Seeds (finished)": _seeds_text(r), "Runs": int(r["runs"]),
            "Viable (every seed)": f"{r['viable_every']} of {r['evaluated_every']}{delta}",
            "Viable (robust)": f"{r['viable_robust']} of {r['evaluated_robust']}{delta_r}",
            "Improvement IQM [95% bootstrap]": _interval(r["imp_iqm"], r["imp_lo"], r["imp_hi"], r["imp_n"], _pct),
            "Final reward IQM [95% bootstrap]": _interval(r["final_iqm"], r["final_lo"], r["final_hi"], r["final_n"]),
        })
    caption = (f"Per result set over its configurations (baseline: {v.baseline.title}; margin {v.margin:.0%}). "
               "Configurations: those with a finished run, of every configuration any set has (the missing ones "
               "listed). Viable: configurations viable in every seed (the thesis' criterion) and by the robust "
               "criterion (lower end of the 95% t interval of the mean improvement above the margin), of those that "
               "could be judged; the difference to the baseline's count in brackets. IQM: over all (configuration, "
               f"seed) finished runs of the set; {IQM_DEFINITION}; interval: {BOOTSTRAP_CI_METHOD}. A set with "
               "missing configurations or fewer seeds is shown with what it has (its IQM is over those "
               "configurations only), never dropped.")
    return Table("table_verdict_remedies", "", "Remedy verdict over configurations", caption, pd.DataFrame(rows),
                 v.remedies.copy())


def verdict_summary(v: Verdict) -> list[str]:
    """One sentence per result set: its viable counts and IQMs against the baseline's."""
    lines = []
    for k, (_, r) in enumerate(v.remedies.iterrows()):
        text = (f"{_role(r['set'], k)}: viable in every seed {r['viable_every']} of "
                f"{r['evaluated_every']}, robust {r['viable_robust']} of {r['evaluated_robust']} configurations; "
                f"improvement IQM {_interval(r['imp_iqm'], r['imp_lo'], r['imp_hi'], r['imp_n'], _pct)}, "
                f"final reward IQM {_interval(r['final_iqm'], r['final_lo'], r['final_hi'], r['final_n'])}")
        if r["missing"]:
            text += f"; missing configurations: {r['missing']}"
        if r["seeds_min"] != r["seeds_max"]:
            text += f"; {_seeds_text(r)} finished seeds"
        lines.append(text + ".")
    worse = sum(r["set"] != v.baseline.title and _reward_word(r) == "worse" for _, r in v.configs.iterrows())
    if v.best is not None:
        lines.append(f"Best baseline configuration: {_best_text(v)}; configurations of the other sets whose final "
                     f"reward is below it (whole 95% Welch interval below 0): {worse}.")
    return lines
