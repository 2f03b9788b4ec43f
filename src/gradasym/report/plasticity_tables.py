"""The tables of the report's "Plasticity" section and the remedies comparison (issue 20, item 4).

* :func:`table_lead_times`: which instrument announces the actors' freeze earliest and most
  reliably (:func:`~gradasym.report.lead_time.lead_time_summary`);
* :func:`table_instrument_correlations`: each instrument's value at a fixed early episode
  against the stopping episode over runs (:func:`~gradasym.report.lead_time.instrument_correlations`);
* :func:`table_critic_plasticity`: does the critic lose plasticity while it keeps learning
  (:func:`~gradasym.report.plasticity.plasticity_by_config`);
* :func:`table_remedies`: which remedies un-freeze the actors, one row per run of every result set
  compared (:func:`~gradasym.report.plasticity.unfreezing`).

Each returns a :class:`~gradasym.report.tables.Table` (display strings + the numbers for the CSV)
whose caption holds the definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import GroupData, correlation_text, fmt_lr, fmt_num
from .lead_time import INSTRUMENTS, instrument_correlations, lead_time_summary, lead_times
from .plasticity import PLASTICITY_QUANTITIES, median_cell, plasticity_by_config, plasticity_first_last, unfreezing
from .stats import CORRELATION_CI_METHOD, MEDIAN_CI_METHOD, SEED_FRACTION_CI_METHOD
from .tables import Table, _name

__all__ = ["table_lead_times", "table_instrument_correlations", "table_critic_plasticity", "table_remedies",
           "correlation_episode", "lead_time_runs", "lead_time_summary_line", "ONSET_DEFINITION",
           "CORRELATION_EPISODE_FRACTION"]

#: The early episode of the correlations, as a fraction of the episodes requested (100 of the paper's 2000).
CORRELATION_EPISODE_FRACTION = 0.05

#: How an instrument's onset and lead time are defined (stated in captions and docs/plasticity.md).
ONSET_DEFINITION = ("onset = the first logged episode, at or before the run's stopping episode S, at which the "
                    "instrument has covered half of its change from its first logged value to its value at the "
                    "last log at or before S, in the direction that goes with a freeze (saturation ratio, max |z| "
                    "and the τ-dormant fraction rise; the effective rank and ρ fall; |z| and ρ on log10); lead "
                    "time = S − onset (episodes). No threshold per instrument. An instrument that did not move "
                    "in its direction by S does not announce the freeze in that run")


def lead_time_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose stopping value means something: stopped, or ran to its end (not failed,
    not still running); the stopping correlations of the report use the same runs."""
    stopped = runs["stopped"].astype(bool)
    return runs[runs["stop_value"].notna() & (stopped | ~runs["status"].isin(["failed", "running"]))]


def correlation_episode(gd: GroupData) -> float:
    """The fixed early episode of :func:`table_instrument_correlations`: 5 % of the episodes requested
    (100 at the paper's 2000), at least 1."""
    length = gd.max_episodes if np.isfinite(gd.max_episodes) else 2000.0
    return float(max(1, round(CORRELATION_EPISODE_FRACTION * length)))


_DIRECTION = {+1: "rises", -1: "falls"}


def table_lead_times(gd: GroupData, level: float = 0.95) -> Table:
    """Per instrument: stopped runs, the fraction that announced the freeze (Wilson interval), the median
    lead time in episodes with its order-statistic interval and the range."""
    leads = lead_times(gd.track, lead_time_runs(gd.runs))
    summary = lead_time_summary(leads, level=level)
    meta = {col: (direction, log) for col, _, direction, log in INSTRUMENTS}
    rows = []
    for _, s in summary.iterrows():
        have = leads.loc[(leads["instrument"] == s["instrument"]) & np.isfinite(leads["lead"]), "lead"]
        direction, log = meta[s["instrument"]]
        ci = (f"[{s['lead_lo']:.0f}, {s['lead_hi']:.0f}]" if np.isfinite(s["lead_lo"])
              else ("—" if not s["n_announced"] else "— (needs ≥ 6 runs that announced)"))
        rows.append({
            "Instrument": s["label"], "Towards a freeze": _DIRECTION[direction] + (" (log10)" if log else ""),
            "Stopped runs": int(s["n_runs"]),
            "Announced [95% Wilson]": (f"{int(s['n_announced'])}/{int(s['n_runs'])} = {s['announced']:.2f} "
                                       f"[{s['announced_lo']:.2f}, {s['announced_hi']:.2f}]"),
            "Median lead (episodes)": f"{s['lead_median']:.0f}" if np.isfinite(s["lead_median"]) else "—",
            "Median 95% CI": ci,
            "Range (episodes)": f"{have.min():.0f} … {have.max():.0f}" if len(have) else "—",
        })
    n_stopped = int(lead_time_runs(gd.runs)["stopped"].astype(bool).sum())
    caption = (f"{gd.title}, {gd.seeds_text}; the {n_stopped} runs whose actors all stopped (stopping episode S). "
               f"Per instrument and run: {ONSET_DEFINITION}. Announced: k of the n stopped runs with the "
               f"instrument that it announced, {SEED_FRACTION_CI_METHOD}. Median lead: over the runs that announced "
               f"(X_(ceil(n/2))), with the {MEDIAN_CI_METHOD}. Earliest = largest median lead; most reliable = "
               "largest announced fraction. Instruments are logged every run.log_interval episodes, so lead times "
               "are multiples of it. Fig. 18 shows every run.")
    data = summary.assign(set=gd.title, group=gd.group)
    return Table(_name("table_plasticity_lead_times", gd), "", "Which instrument announces the freeze: lead times",
                 caption, pd.DataFrame(rows), data)


def lead_time_summary_line(summary: pd.DataFrame) -> str:
    """One sentence for the report's summary from :func:`table_lead_times`' numbers: the instrument(s)
    with the largest median lead time (earliest) and with the largest announced fraction (most reliable)."""
    if summary is None or not len(summary) or not summary["n_runs"].max():
        return "Plasticity: no run whose actors all stopped has the instruments, so no lead time."

    def names(rows: pd.DataFrame) -> str:
        return " and ".join(rows["label"])

    announced = summary[summary["n_announced"] > 0]
    if not len(announced):
        return (f"Plasticity: no instrument announced the freeze in any of the {int(summary['n_runs'].max())} "
                "stopped runs.")
    early = announced[announced["lead_median"] == announced["lead_median"].max()]
    best = summary[summary["announced"] == summary["announced"].max()]
    e, b = early.iloc[0], best.iloc[0]
    return (f"Plasticity: earliest announcement of the freeze by {names(early)} (median lead "
            f"{e['lead_median']:.0f} episodes over the {int(e['n_announced'])} stopped runs it announced); most "
            f"reliable: {names(best)} ({int(b['n_announced'])} of {int(b['n_runs'])} stopped runs). Lead times and "
            "intervals: the Plasticity section.")


def table_instrument_correlations(gd: GroupData, at_episode: float | None = None, level: float = 0.95) -> Table:
    """Per instrument: Pearson and Spearman correlation over runs of its value at an early episode with
    the stopping episode; all runs (never-stopped at the episodes they ran) and the stopped runs only."""
    at = correlation_episode(gd) if at_episode is None else float(at_episode)
    corr = instrument_correlations(gd.track, lead_time_runs(gd.runs), at, level=level)
    meta = {col: log for col, _, _, log in INSTRUMENTS}
    rows = []
    for _, c in corr.iterrows():
        runs = ("all runs (never-stopped at the episodes they ran)" if c["runs"] == "all"
                else "runs whose actors all stopped")
        rows.append({
            "Instrument": c["label"], "Runs": runs,
            "Pearson on": "log10 value" if meta[c["instrument"]] else "value",
            "Pearson r [95% CI]": correlation_text(c["pearson_r"], c["pearson_lo"], c["pearson_hi"],
                                                   int(c["pearson_n"])),
            "Spearman r_s [95% CI]": correlation_text(c["spearman_r"], c["spearman_lo"], c["spearman_hi"],
                                                      int(c["spearman_n"])),
            "Stopped before episode (left out)": int(c["n_stopped_before"]),
        })
    caption = (f"{gd.title}, {gd.seeds_text}: correlation over runs between each instrument's value at the first "
               f"log at or after episode {at:.0f} ({CORRELATION_EPISODE_FRACTION:.0%} of the episodes requested) and "
               "the stopping episode. 'All runs': runs whose actors never all stopped enter at the episodes they "
               "ran (a lower bound, the paper's convention); 'stopped': only runs whose actors all stopped. Runs that "
               "stopped before that episode have no early value and are left out (counted). Pearson's r on log10 "
               "for max |z| and ρ; Spearman's rank correlation is unchanged by the log. Intervals: "
               f"{CORRELATION_CI_METHOD}. 'undefined': fewer than 3 runs or an instrument constant over the runs.")
    return Table(_name("table_plasticity_correlations", gd), "",
                 "Which instrument announces the freeze: early value vs stopping episode", caption,
                 pd.DataFrame(rows), corr.assign(set=gd.title, group=gd.group))


def _k_of_n(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "—"


def table_critic_plasticity(gd: GroupData, level: float = 0.95) -> Table:
    """Per configuration: the critic's and the actors' τ-dormant fraction (τ = 0.025) and effective rank at
    the first and the last tracking row (median over seeds), and whether the critic still learned at the end."""
    per_run = plasticity_first_last(gd.track, gd.runs, gd.eps)
    agg = plasticity_by_config(per_run, level)
    rows = []
    for _, r in (agg.sort_values(["actor_lr", "critic_lr"]) if len(agg) else agg).iterrows():
        row = {"Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]), "Seeds": int(r["n_runs"])}
        for col, label in PLASTICITY_QUANTITIES:
            for when in ("first", "last"):
                v = f"{col}_{when}"
                fmt = (lambda x: f"{x:.3f}") if "dormant" in col else (lambda x: f"{x:.3g}")
                row[f"{label}, {when} log"] = median_cell(r[f"{v}_median"], r[f"{v}_lo"], r[f"{v}_hi"],
                                                         r[f"{v}_band"], fmt)
        row["Critic weights moved at the end"] = _k_of_n(r["critic_moved_end_k"], r["critic_moved_end_n"])
        row["Critic gradient > 0 at the end"] = _k_of_n(r["critic_grad_end_k"], r["critic_grad_end_n"])
        row["Critic ever froze"] = _k_of_n(r["critic_ever_froze_k"], r["critic_ever_froze_n"])
        rows.append(row)
    caption = (f"{gd.title}, {gd.seeds_text}. τ-dormant: fraction of hidden units whose mean |activation| on the "
               "update's batch is at most τ = 0.025 times their layer's mean (Sokar et al. 2023), over all hidden "
               "layers (actors: each actor's fraction, then the mean over the actors); eff. rank: effective rank, "
               "exp of the entropy of the normalised singular values of the last hidden layer's features on the "
               "batch (Kumar et al. 2021; actors: mean over the actors). First / last log: each run's first and last "
               "tracking row (the last is where the run ended: early termination, or the episodes requested). "
               "Cells: the median over the seeds (X_(ceil(n/2))) and, with 6 seeds or more, the "
               f"{MEDIAN_CI_METHOD}; with 2-5 seeds the range over the seeds (not a confidence interval); one seed: "
               "its value. Critic weights moved at the end: seeds whose last episode's update changed the critic "
               "(episodes.parquet critic_frozen false); critic gradient > 0: seeds whose last tracking row has "
               "critic_grad_norm > 0; critic ever froze: seeds with a critic stop episode (summary.json "
               "critic_stopped; set once, never cleared). A critic that loses plasticity while it keeps learning "
               "has a rising dormant fraction or a falling rank with its weights still moving.")
    data = agg.assign(set=gd.title, group=gd.group) if len(agg) else agg
    return Table(_name("table_plasticity_critic", gd), "", "Does the critic lose plasticity while it keeps learning",
                 caption, pd.DataFrame(rows), data)


def _episode_text(v: float) -> str:
    return f"{v:.0f}" if np.isfinite(v) else "never"


def table_remedies(groups: list[GroupData]) -> Table:
    """One row per run of every result set (the remedies' sweeps and the baseline): when every actor was
    first frozen, how many were frozen at the end, whether they un-froze after all had frozen, the final
    saturation ratio and the last-10 % mean reward."""
    parts = [unfreezing(gd.eps, gd.runs).assign(_title=gd.title, _order=i) for i, gd in enumerate(groups)]
    per_run = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    rows = []
    no_column = 0
    if len(per_run):
        per_run = per_run.sort_values(["actor_lr", "critic_lr", "_order", "seed"], kind="stable")
    for _, r in per_run.iterrows():
        known = np.isfinite(r["frozen_end"])
        no_column += not known
        n = r["n_agents"]
        if not known:
            first = end = unfroze = "—"
        else:
            first = _episode_text(r["all_frozen_first"])
            end = f"{r['frozen_end']:.0f}/{n}"
            if not np.isfinite(r["all_frozen_first"]):
                unfroze = "— (never all frozen)"
            elif np.isfinite(r["unfrozen_at"]):
                again = " (all frozen again by the end)" if r["all_frozen_end"] >= 1 else ""
                unfroze = f"yes, at {r['unfrozen_at']:.0f}{again}"
            else:
                unfroze = "no"
        rows.append({
            "Result set": r["_title"], "Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]),
            "Seed": r["seed"], "Episodes run": fmt_num(r["episodes_run"]),
            "All actors frozen first at": first, "Actors frozen at the end": end,
            "Un-froze after all froze": unfroze,
            "Final saturation": (f"{r['final_saturation_ratio']:.3f}" if np.isfinite(r["final_saturation_ratio"])
                                 else "—"),
            "Last-10% mean reward": fmt_num(r["reward_last10"]),
        })
    caption = ("Every run of every result set compared, per configuration (one seed at full length, "
               "run.early_stop = false, is the design of configs/grids/paper-high-actor-lr.toml). From "
               "episodes.parquet's actors_frozen (actors whose parameters the episode's update left unchanged): "
               "all actors frozen first at = the first episode at which every actor was frozen ('never': not within "
               "the run); actors frozen at the end = at its last episode; un-froze = fewer than all actors frozen at "
               "some episode after that first one ('yes, at E': the first such episode). A remedy that un-freezes "
               "shows here, not in the stopping episode, which is set once and never cleared. Final saturation: "
               "the last logged saturation ratio; last-10% mean reward: mean episode reward of the last 10% of the "
               "episodes run."
               + (f" —: {no_column} runs without an actors_frozen column in episodes.parquet (recorded before "
                  "gradasym wrote it) or without a known number of agents." if no_column else ""))
    data = per_run.drop(columns=["_order"]).rename(columns={"_title": "result_set"}) if len(per_run) else per_run
    return Table("table_remedies_unfreezing", "", "Which remedies un-freeze the actors", caption,
                 pd.DataFrame(rows), data)
