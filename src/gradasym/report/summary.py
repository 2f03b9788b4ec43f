"""The short text summary at the top of the report, and the list of what is missing.

Plain-text sentences (the HTML page escapes them; ``summary.md`` prints them as a
list): which configurations stopped and when, how that compares with the
paper's Table 3 (labelled as the paper's), the critic, rho, viability; and, for
partial results, which runs are running, failed, pending or lack files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import paper
from .analysis import (
    GroupData, ViableCount, bounded_text, comparable_with_paper, correlation_text, fmt_lr, fmt_num, single_seed,
    stop_cell_text,
)
from .load import STATUS_NO_SUMMARY, ResultSet

__all__ = ["group_summary", "compare_summary", "missing_items", "seed_summary"]


def _cfg(row: pd.Series) -> str:
    return f"{fmt_lr(row['actor_lr'])}/{fmt_lr(row['critic_lr'])}"


def _listing(rows: pd.DataFrame, with_value: bool = True) -> str:
    parts = [f"{_cfg(r)} ({stop_cell_text(r)})" if with_value else _cfg(r) for _, r in rows.iterrows()]
    return ", ".join(parts) if parts else "none"


def _status_line(gd: GroupData, pending: int) -> str:
    st = gd.runs["status"].value_counts()
    parts = [f"{st.get('finished', 0)} finished", f"{st.get('running', 0)} running", f"{st.get('failed', 0)} failed"]
    if st.get(STATUS_NO_SUMMARY, 0):
        parts.append(f"{st[STATUS_NO_SUMMARY]} without summary.json")
    line = f"{gd.title}: {len(gd.runs)} runs in {len(gd.agg)} configurations ({gd.seeds_text}): " + ", ".join(parts)
    if pending:
        line += f"; {pending} more listed in sweep.json but not started"
    return line + "."


def _stopping_lines(gd: GroupData) -> list[str]:
    agg = gd.agg.sort_values(["actor_lr", "critic_lr"])
    known = agg[agg["stop_n"] > 0]
    all_stop = known[known["n_stopped"] == known["stop_n"]]
    some = known[(known["n_stopped"] > 0) & (known["n_stopped"] < known["stop_n"])]
    never = known[(known["n_stopped"] == 0) & ~known["partial"]]
    not_yet = known[(known["n_stopped"] == 0) & known["partial"]]
    lines = [f"Actors stopped in every seed for {len(all_stop)} of {len(agg)} configurations "
             f"(actor LR/critic LR: stopping episode): {_listing(all_stop)}."]
    if len(some):
        lines.append(f"Stopped in some seeds only: {_listing(some)} (≥: seeds that never stopped count as the "
                     "episodes they ran).")
    ep = f"{gd.max_episodes:.0f}" if np.isfinite(gd.max_episodes) else "the"
    lines.append(f"Never stopped within the {ep} episodes run: {_listing(never, False)}.")
    if len(not_yet):
        lines.append(f"Not stopped yet (runs still going): {_listing(not_yet, False)}.")
    return lines


def _paper_lines(gd: GroupData) -> list[str]:
    agg = gd.agg[(gd.agg["stop_n"] > 0) & ~gd.agg["partial"]]
    rows = []
    for _, r in agg.iterrows():
        p = paper.lookup(paper.TABLE3_STOP_EPISODES, r["actor_lr"], r["critic_lr"])
        if p is not None and r["category"]:
            rows.append((r, p, paper.paper_category(p)))
    if not rows:
        return ["No configuration of the paper's grid has a result yet, so nothing can be compared with the "
                "paper's Table 3."]
    is_shorter = [x[0]["category"] == "No stopping" and x[0]["category"] != x[2]
                  and not comparable_with_paper(x[1], gd.max_episodes) for x in rows]
    shorter = [x for x, s in zip(rows, is_shorter) if s]
    rows = [x for x, s in zip(rows, is_shorter) if not s]
    same = [x for x in rows if x[0]["category"] == x[2]]
    diff = [f"{_cfg(r)} measured {r['category']} ({stop_cell_text(r)}), paper {c} ({p})" for r, p, c in rows
            if r["category"] != c]
    line = (f"Against the paper's Table 3 (single seed, 2000 episodes): {len(same)} of {len(rows)} comparable "
            "configurations fall in the same category (Early <300 / Late >500 / No stopping).")
    if shorter:
        line += (f" Not comparable ({len(shorter)}): the paper saw "
                 + "; ".join(f"{_cfg(r)} stop at {p:.0f}" for r, p, _ in shorter)
                 + f", later than these {gd.max_episodes:.0f}-episode runs.")
    if diff:
        line += " Different: " + "; ".join(diff) + "."
    high = gd.agg[(gd.agg["actor_lr"] >= 0.01) & (gd.agg["n_stopped"] > 0)]
    out = [line]
    if len(high):
        out.append(f"Actor LR ≥ 0.01: measured stopping episodes {high['stop_mean'].min():.0f}–"
                   f"{high['stop_mean'].max():.0f} (configuration means); the paper reports 161–247.")
    return out


def _range(values: pd.Series) -> str:
    """``3`` or ``3–9`` (whole numbers)."""
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"


def _critic_rho_lines(gd: GroupData) -> list[str]:
    crit = int(gd.runs["critic_stopped"].fillna(False).astype(bool).sum())
    lines = [f"The critic stopped in {crit} of {len(gd.runs)} runs (paper: the critic never stops)."]
    rho_all = gd.runs["final_rho"]
    rho_all = rho_all[np.isfinite(rho_all)]
    rho = rho_all[rho_all > 0]
    zero = int((rho_all == 0).sum())
    lo, hi = paper.PAPER_RHO_RANGE
    zero_text = (f"; in {zero} of {len(rho_all)} runs it is exactly 0 (the actor gradient vanished in float32)"
                 if zero else "")
    if len(rho):
        lines.append(f"Final gradient ratio ρ = ‖∇actor‖/‖∇critic‖ ranges {fmt_num(rho.min())} … "
                     f"{fmt_num(rho.max())} across the runs where it is positive{zero_text} "
                     f"(paper: {lo:g} … {hi:g}).")
    elif zero:
        lines.append(f"Final gradient ratio ρ = ‖∇actor‖/‖∇critic‖ is exactly 0 in all {zero} runs with a value "
                     f"(the actor gradient vanished in float32; paper: {lo:g} … {hi:g}).")
    dead = gd.runs[gd.runs["grad_death_episode"].notna()]
    if len(dead):
        text = (f"Every actor's gradient died (norm below run.grad_death_threshold or exactly 0 from that episode to the end of the run) in "
                f"{len(dead)} of {len(gd.runs)} runs, at episode {_range(dead['grad_death_episode'])}")
        both = dead[dead["stopped"]]
        if len(both):
            gap = both["stopping_episode"] - both["grad_death_episode"]
            text += (f"; in the {len(both)} of them whose actors stopped, the stop came "
                     f"{_range(gap)} episodes after the gradient died")
        lines.append(text + ".")
    return lines


def group_summary(gd: GroupData, pending: int, count: ViableCount | None) -> list[str]:
    """Summary sentences for one group of the main result set."""
    lines = [_status_line(gd, pending)]
    if len(gd.agg):
        lines += _stopping_lines(gd) + _paper_lines(gd) + _critic_rho_lines(gd)
    if count is not None:
        lines.append(f"Viable configurations: {count.viable} of {count.evaluated} evaluated "
                     f"({count.total} in total; margin {count.margin:.0%} of |first-10% mean reward|). "
                     f"Paper (thesis, 10 seeds): {paper.PAPER_VIABLE_COUNT} of {paper.PAPER_VIABLE_TOTAL}.")
    return lines


def compare_summary(base: GroupData, other: GroupData, count: ViableCount | None) -> str:
    """One sentence comparing another result set with the main one."""
    ib, io = base.agg.set_index(["actor_lr", "critic_lr"]), other.agg.set_index(["actor_lr", "critic_lr"])
    common = [k for k in io.index if k in ib.index and ib.loc[k]["n_stopped"] > 0 and io.loc[k]["n_stopped"] > 0]
    text = f"Compared set {other.title} ({len(other.runs)} runs, {other.seeds_text})"
    if common:
        d = np.array([io.loc[k]["stop_mean"] - ib.loc[k]["stop_mean"] for k in common])
        text += (f": over the {len(common)} configurations that stopped in both, the mean stopping episode "
                 f"differs by {d.mean():+.0f} episodes on average (range {d.min():+.0f} … {d.max():+.0f}) "
                 f"relative to {base.title}")
    else:
        text += ": no configuration stopped in both sets"
    if count is not None:
        text += f"; viable configurations: {count.viable} of {count.evaluated}"
    return text + "."


def _known_lr(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def missing_items(rs: ResultSet) -> list[str]:
    """What a result set lacks: pending/running/failed runs, missing or unreadable files.

    ``tracking_agents.parquet`` is not listed: nothing in the report needs it.
    """
    items = [f"{rs.label}: {p}" for p in rs.problems]
    if rs.pending:
        shown = ", ".join(rs.pending[:20]) + (" …" if len(rs.pending) > 20 else "")
        items.append(f"{rs.label}: {len(rs.pending)} runs listed in sweep.json have no folder yet: {shown}")
    for run in rs.runs:
        parts = []
        status = run.status
        ep_run = run.summary.get("episodes_run")
        if status == "failed":
            err = str(run.summary.get("error") or "no error message")[:300]
            parts.append(f"failed{f' after {ep_run} episodes' if ep_run is not None else ''}: {err}")
        elif status == "running":
            parts.append(f"still running ({ep_run} of {run.summary.get('episodes_requested')} episodes)")
        elif status not in ("finished", STATUS_NO_SUMMARY):  # no summary: the file problems say why
            parts.append(f"status '{status}'")
        if not _known_lr(run.summary.get("actor_lr")) or not _known_lr(run.summary.get("critic_lr")):
            parts.append("learning rates unknown (no config.json/summary.json and a run id not of the form "
                         "alr{a}_clr{c}[_{preset}]_s{seed}); left out of figures and tables")
        parts += [p for p in run.problems if not p.startswith("tracking_agents")]
        if parts:
            items.append(f"{rs.label}/{run.run_id}: " + "; ".join(parts))
    return items


def _pair_text(row: pd.Series) -> str:
    """Pearson's and Spearman's coefficient of one :func:`~gradasym.report.analysis.stop_correlations` row."""
    pearson = "Pearson r" + (" (log10)" if row["log10"] else "")
    return (correlation_text(row["pearson_r"], row["pearson_lo"], row["pearson_hi"], row["pearson_n"], pearson)
            + "; " + correlation_text(row["spearman_r"], row["spearman_lo"], row["spearman_hi"], row["spearman_n"],
                                      "Spearman r_s"))


def _against_09(r: float, lo: float, hi: float) -> str:
    """Where |r| stands against the paper's 0.9, judged on the interval of |r| (the point without one)."""
    if not np.isfinite(r):
        return "no r to compare with the paper's 0.9"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo = hi = r
    mag = (lo, hi) if lo >= 0 else ((-hi, -lo) if hi <= 0 else (0.0, max(-lo, hi)))
    if mag[0] > 0.9:
        return "|r| is above 0.9 (whole interval)"
    if mag[1] < 0.9:
        return "|r| is below 0.9 (whole interval)"
    return "the interval of |r| includes 0.9"


def seed_summary(gd: GroupData, corr: pd.DataFrame | None, every: ViableCount | None,
                 one: ViableCount | None, per_seed: pd.DataFrame | None) -> list[str]:
    """Summary sentences of a group with several seeds: stops over seeds, correlations, viable counts."""
    lines = []
    agg = gd.agg[gd.agg["stop_n"] > 0].sort_values(["actor_lr", "critic_lr"])
    if len(agg):
        cells = []
        for _, r in agg.iterrows():
            ci = (f" [{bounded_text(r['stopmed_ci_lo'], r['stopmed_ci_lo_hi'])}, "
                  f"{bounded_text(r['stopmed_ci_hi'], r['stopmed_ci_hi_hi'])}]" if np.isfinite(r["stopmed_ci_lo"])
                  else "")
            cells.append(f"{_cfg(r)} {bounded_text(r['stopmed_lo'], r['stopmed_hi'])}{ci}")
        every_stop = int((agg["n_stopped"] == agg["stop_n"]).sum())
        none_stop = int((agg["n_stopped"] == 0).sum())
        lines.append("Median stopping episode over seeds [order-statistic 95% CI] (≥: seeds that never stopped, "
                     "counted as at least the episodes they ran): " + "; ".join(cells) + ".")
        lines.append(f"All actors stopped in every seed in {every_stop}, in no seed in {none_stop}, and in some "
                     f"seeds only in {len(agg) - every_stop - none_stop} of {len(agg)} configurations.")
    if corr is not None and len(corr):
        for quantity, rows in corr.groupby("quantity", sort=False):
            by = {r["runs"]: r for _, r in rows.iterrows()}
            a, s = by.get("all"), by.get("stopped")
            if a is None:
                continue
            label = a["label"][:1].upper() + a["label"][1:]
            text = (f"{label} vs stopping episode over runs: {_pair_text(a)} (all runs"
                    + (f", the {a['n_censored']} never stopped at the episodes they ran" if a["n_censored"] else "")
                    + (f"; {a['n_zero']} with ρ exactly 0 left out of Pearson's" if a["n_zero"] else "") + ")")
            if s is not None:
                text += f"; stopped runs only: {_pair_text(s)}"
            if quantity == "final_saturation_ratio":
                text += (". Paper: r > 0.9; here (all runs, Pearson) "
                         + _against_09(a["pearson_r"], a["pearson_lo"], a["pearson_hi"]))
            lines.append(text + ".")
    if every is not None:
        text = (f"Viable configurations under the thesis' criterion (improves in every seed, {gd.seeds_text}): "
                f"{every.viable} of {every.evaluated}")
        if one is not None and per_seed is not None and len(per_seed):
            text += f"; one seed alone (seed {single_seed(gd.runs)}): {one.viable} of {one.evaluated}"
            if len(per_seed) > 1:
                text += f"; single seeds range {per_seed['viable'].min()}–{per_seed['viable'].max()}"
        lines.append(text + f". Paper (thesis, 10 seeds): {paper.PAPER_VIABLE_COUNT} of {paper.PAPER_VIABLE_TOTAL}.")
    return lines

