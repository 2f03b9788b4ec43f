"""The paper's tables (3, 4, 7, 8, 9), the comparison and viability tables.

Every table is a :class:`Table`: a frame of display strings (what the HTML and
Markdown show, with "±" half-widths and "≥" lower bounds) and a numeric frame
(what the CSV holds, for further analysis). Paper values sit in columns whose
names start with "Paper".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper
from .analysis import (
    GroupData, ViableCount, bounded_text, comparable_with_paper, correlation_text, fmt_lr, fmt_num, single_seed,
    single_seed_viable, stop_cell_text, stop_correlations, viable_by_seed, viable_count, viable_table,
)
from .stats import (
    CORRELATION_CI_METHOD, FRACTION_CI_METHOD, MEDIAN_CI_METHOD, MEDIAN_DEFINITION, SEED_FRACTION_CI_METHOD,
    fraction_mean_ci,
    geometric_mean_ci, median_ci_ranks,
)

__all__ = [
    "Table", "table3_stopping", "table4_preactivation", "table_compare_stopping", "table7_large_actor",
    "table8_linear_hidden", "table9_preact_linear", "table_viable", "table_viable_counts", "table_runs", "to_markdown",
    "write_table", "find_group", "table_provenance", "provenance_text", "table_seed_stopping",
    "table_correlations", "table_viable_seeds",
]


@dataclass
class Table:
    """A report table: display strings plus the numbers behind them."""

    name: str           # file stem
    number: str         # paper table number ("3") or "" for report-only tables
    title: str
    caption: str
    frame: pd.DataFrame  # display strings
    data: pd.DataFrame   # numeric values (CSV)


# ------------------------------------------------------------------ formatting
def _ci_text(mean: float, lo: float, hi: float, n: int, fmt=fmt_num) -> str:
    if not n or not np.isfinite(mean):
        return "—"
    if n < 2:
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def _paper_stop_text(v: int | None) -> str:
    if v is None:
        return "—"
    return f"{v}" if v < paper.PAPER_MAX_EPISODES else f"{v} (no stop)"


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def write_table(table: Table, out_dir: Path) -> tuple[Path, Path]:
    """Write ``name.md`` (title, caption, table) and ``name.csv`` (numbers) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv = out_dir / f"{table.name}.md", out_dir / f"{table.name}.csv"
    label = f"Table {table.number} — " if table.number else ""
    md.write_text(f"### {label}{table.title}\n\n{table.caption}\n\n{to_markdown(table.frame)}\n")
    table.data.to_csv(csv, index=False)
    return md, csv


# ------------------------------------------------------------------ Table 3
def table3_stopping(gd: GroupData) -> Table:
    """Table 3: stopping episode per configuration, with the paper's single-seed values."""
    rows, data = [], []
    for _, r in gd.agg.sort_values(["actor_lr", "critic_lr"]).iterrows():
        p = paper.lookup(paper.TABLE3_STOP_EPISODES, r["actor_lr"], r["critic_lr"])
        pcat = paper.TABLE3_CATEGORIES.get((r["actor_lr"], r["critic_lr"])) if p is not None else None
        if p is not None and pcat is None:
            pcat = paper.paper_category(p)
        agrees = "" if (p is None or not r["category"] or r["partial"]) else ("yes" if r["category"] == pcat else "no")
        if agrees == "no" and r["category"] == "No stopping" and not comparable_with_paper(p, gd.max_episodes):
            agrees = "n/a (run shorter than the paper's stop)"
        rows.append({
            "Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]),
            "Seeds": f"{r['n_finished']}/{r['n_runs']} finished",
            "Stop ep. (mean ± 95% CI)": stop_cell_text(r),
            "95% CI": (f"[{r['stop_lo']:.0f}, {r['stop_hi']:.0f}]"
                       if r["stop_n"] >= 2 and not r["any_censored"] else "—"),
            "Seeds stopped": _seeds_stopped_text(r),
            "Grad-death ep.": _death_text(r),
            "Category": r["category"] or "—",
            "Paper stop ep.": _paper_stop_text(p), "Paper category": pcat or "—", "Same category": agrees,
        })
        data.append({"actor_lr": r["actor_lr"], "critic_lr": r["critic_lr"], "n_runs": r["n_runs"],
                     "n_finished": r["n_finished"], "stop_n": r["stop_n"], "n_stopped": r["n_stopped"],
                     "stop_mean": r["stop_mean"], "stop_lo": r["stop_lo"], "stop_hi": r["stop_hi"],
                     "stop_half": r["stop_half"], "any_censored": r["any_censored"], "category": r["category"],
                     "stopped_frac_lo": r["stopfrac_lo"], "stopped_frac_hi": r["stopfrac_hi"],
                     "n_grad_dead": r["n_dead"], "grad_death_mean": r["death_mean"],
                     "paper_stop_episode": p, "paper_category": pcat})
    scale_note = ("" if gd.max_episodes >= paper.PAPER_MAX_EPISODES else
                  f" Runs are {gd.max_episodes:.0f} episodes long: a configuration the paper saw stop later "
                  "than that cannot stop here, so it is marked n/a rather than compared.")
    caption = (f"{gd.title}, {gd.seeds_text}. Mean stopping episode (first episode at which all actors had "
               "stopped) with the 95% Student-t half-width, or [lo, hi] where the interval is clipped to the "
               "possible episodes (1 to the episodes requested); ≥N means at least one seed never stopped within "
               "the N episodes it ran (counted as N, the paper's convention: its Table 3 writes 2000). "
               "Seeds stopped: k of n seeds whose actors all stopped"
               + (f", with the {SEED_FRACTION_CI_METHOD}" if gd.agg["stop_n"].max() > 1 else "")
               + ". Grad-death ep.: the episode from which every actor's gradient stayed dead (norm below "
               "run.grad_death_threshold or exactly 0) to the end of the run, i.e. the latest of the agents' "
               "gradient-death episodes; mean over the runs where all actors' gradients died (k/n runs), — when "
               "none did. Paper columns: the paper's single-seed Table 3." + scale_note)
    return Table(_name("table3_stopping", gd), "3", "Stopping episodes by learning-rate configuration", caption,
                 pd.DataFrame(rows), pd.DataFrame(data))


def _seeds_stopped_text(r: pd.Series) -> str:
    """``2/3`` and, with several seeds, the Wilson interval of the fraction: ``2/3 [0.21, 0.94]``."""
    text = f"{r['n_stopped']}/{r['stop_n']}"
    if r["stop_n"] >= 2:
        text += f" [{r['stopfrac_lo']:.2f}, {r['stopfrac_hi']:.2f}]"
    return text


def _death_text(r: pd.Series) -> str:
    """Mean run-level gradient-death episode of the runs that have one, with ``k/n runs``."""
    if not r["n_dead"]:
        return "—"
    text = f"{r['death_mean']:.0f}"
    if r["n_runs"] > 1:
        text += f" ({r['n_dead']}/{r['n_runs']} runs)"
    return text


def _name(stem: str, gd: GroupData) -> str:
    return f"{stem}__{_slug(gd.group)}" if gd.group else stem


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


# ------------------------------------------------------------------ Table 4
def _preact_range(gd: GroupData, actor_lr: float) -> tuple[float, float]:
    """Min of ``preact_min`` and max of ``preact_max`` over tracking rows (NaN if none)."""
    t = gd.track
    if not len(t) or not {"preact_min", "preact_max"} <= set(t):
        return math.nan, math.nan
    sub = t[t["actor_lr"] == actor_lr]
    if not len(sub):
        return math.nan, math.nan
    return float(sub["preact_min"].min()), float(sub["preact_max"].max())


def table4_preactivation(gd: GroupData) -> Table:
    """Table 4: output pre-activation magnitude by actor LR (pooled over critic LRs)."""
    rows, data = [], []
    for a in sorted(gd.runs["actor_lr"].dropna().unique()):
        runs = gd.runs[gd.runs["actor_lr"] == a]
        zmin, zmax = _preact_range(gd, a)
        gm = geometric_mean_ci(runs["max_abs_preactivation"])
        sat = fraction_mean_ci(runs["final_saturation_ratio"])
        pr = paper.lookup(paper.TABLE4_PREACT_RANGE, a)
        rows.append({
            "Actor LR": fmt_lr(a), "Runs": len(runs),
            "Range over training (min … max)": (f"{fmt_num(zmin)} … {fmt_num(zmax)}"
                                                if np.isfinite(zmin) else "—"),
            "Max |z| (largest run)": fmt_num(runs["max_abs_preactivation"].max()),
            "Max |z| geometric mean [95% CI]": _ci_text(gm.mean, gm.lo, gm.hi, gm.n),
            "Final saturation [95% CI]": _ci_text(sat.mean, sat.lo, sat.hi, sat.n, lambda v: f"{v:.3f}"),
            "Paper range": (f"{fmt_num(pr[0])} … {fmt_num(pr[1])}" if pr else "—"),
            "Paper gradient flow": paper.lookup(paper.TABLE4_GRADIENT_FLOW, a) or "—",
        })
        data.append({"actor_lr": a, "n_runs": len(runs), "preact_min": zmin, "preact_max": zmax,
                     "max_abs_max": runs["max_abs_preactivation"].max(), "max_abs_geomean": gm.mean,
                     "max_abs_lo": gm.lo, "max_abs_hi": gm.hi, "final_saturation_mean": sat.mean,
                     "paper_min": pr[0] if pr else None, "paper_max": pr[1] if pr else None})
    caption = (f"{gd.title}, {gd.seeds_text} per configuration. Range: smallest preact_min and largest "
               "preact_max over all logged updates of all runs with that actor LR (all critic LRs). Max |z|: "
               "each run's max_abs_preactivation; geometric mean with a t-interval on log10. Final saturation: "
               f"mean over runs with the {FRACTION_CI_METHOD}.")
    return Table(_name("table4_preactivation", gd), "4", "Pre-activation magnitudes by actor learning rate",
                 caption, pd.DataFrame(rows), pd.DataFrame(data))


# ------------------------------------------------------------------ comparisons (7, 8, generic)
def table_compare_stopping(groups: list[GroupData]) -> Table:
    """Stopping episode per configuration for every result set, with differences to the first."""
    base = groups[0]
    pairs = sorted({(a, c) for g in groups for a, c in zip(g.agg["actor_lr"], g.agg["critic_lr"])})
    idx = [g.agg.set_index(["actor_lr", "critic_lr"]) for g in groups]
    rows, data = [], []
    for p in pairs:
        row = {"Actor LR": fmt_lr(p[0]), "Critic LR": fmt_lr(p[1])}
        num = {"actor_lr": p[0], "critic_lr": p[1]}
        base_r = idx[0].loc[p] if p in idx[0].index else None
        for k, (g, ix) in enumerate(zip(groups, idx)):
            r = ix.loc[p] if p in ix.index else None
            row[g.title] = stop_cell_text(r) if r is not None else "—"
            num[f"{g.title} stop_mean"] = r["stop_mean"] if r is not None else np.nan
            num[f"{g.title} stop_half"] = r["stop_half"] if r is not None else np.nan
            num[f"{g.title} stop_n"] = r["stop_n"] if r is not None else 0
            if k:
                diff, text = _difference(base_r, r)
                row[f"Δ {g.title} − {base.title}"] = text
                num[f"diff {g.title}"] = diff
        rows.append(row)
        data.append(num)
    caption = ("Mean stopping episode per configuration and result set (± 95% Student-t half-width; ≥ = at "
               "least one seed never stopped, counted at the episodes it ran). Δ: difference of the means, "
               f"relative to {base.title}; marked ≥/≤ when a lower bound is involved.")
    return Table("table_compare_stopping", "", "Stopping episodes across result sets", caption,
                 pd.DataFrame(rows), pd.DataFrame(data))


def _difference(a: pd.Series | None, b: pd.Series | None) -> tuple[float, str]:
    """``b - a`` of stopping means, with a bound marker when censored values are involved."""
    if a is None or b is None or not a["stop_n"] or not b["stop_n"]:
        return math.nan, "—"
    d = float(b["stop_mean"] - a["stop_mean"])
    mark = ""
    if b["any_censored"] and not a["any_censored"]:
        mark = "≥"
    elif a["any_censored"] and not b["any_censored"]:
        mark = "≤"
    elif a["any_censored"] and b["any_censored"]:
        mark = "~"
    return d, f"{mark}{d:+.0f}"


def find_group(groups: list[GroupData], preset: str) -> GroupData | None:
    """First group whose preset list contains ``preset`` ("" finds the baseline)."""
    for g in groups:
        names = g.group.split("+") if g.group else []
        if (preset == "" and not names) or (preset and preset in names):
            return g
    return None


def _paired_table(name: str, number: str, title: str, paper_table: dict, groups: list[GroupData],
                  preset: str, col_base: str, col_alt: str) -> Table:
    """Tables 7/8: baseline vs a preset, measured and paper columns side by side."""
    base, alt = find_group(groups, ""), find_group(groups, preset)
    ib = base.agg.set_index(["actor_lr", "critic_lr"]) if base is not None and len(base.agg) else None
    ia = alt.agg.set_index(["actor_lr", "critic_lr"]) if alt is not None and len(alt.agg) else None
    measured = set(ia.index) if ia is not None else set()  # rows: the paper's plus those of the ablation set
    pairs = sorted(set(paper_table) | measured, key=lambda p: (-p[0], -p[1]))
    rows, data = [], []
    for p in pairs:
        rb = ib.loc[p] if ib is not None and p in ib.index else None
        ra = ia.loc[p] if ia is not None and p in ia.index else None
        diff, dtext = _difference(rb, ra)
        pv = paper.lookup(paper_table, *p)
        rows.append({"Actor LR": fmt_lr(p[0]), "Critic LR": fmt_lr(p[1]),
                     f"{col_base} (measured)": stop_cell_text(rb) if rb is not None else "—",
                     f"{col_alt} (measured)": stop_cell_text(ra) if ra is not None else "—",
                     "Δ measured": dtext,
                     f"Paper {col_base}": pv[0] if pv else "—", f"Paper {col_alt}": pv[1] if pv else "—",
                     "Paper Δ": f"{pv[1] - pv[0]:+d}" if pv else "—"})
        data.append({"actor_lr": p[0], "critic_lr": p[1],
                     "base_stop_mean": rb["stop_mean"] if rb is not None else np.nan,
                     "alt_stop_mean": ra["stop_mean"] if ra is not None else np.nan, "diff": diff,
                     "paper_base": pv[0] if pv else None, "paper_alt": pv[1] if pv else None})
    missing = []
    if base is None:
        missing.append("a baseline result set (no preset)")
    if alt is None:
        missing.append(f"a result set with preset '{preset}' (pass it with --compare)")
    note = (" Measured columns are empty: needs " + " and ".join(missing) + ".") if missing else ""
    src = ""
    if base is not None and alt is not None:
        src = f" Measured: {base.title} ({base.seeds_text}) vs {alt.title} ({alt.seeds_text})."
    caption = ("Stopping episodes, mean ± 95% half-width (≥ = some seed never stopped). Paper columns: the "
               f"paper's single-seed Table {number}." + src + note)
    return Table(name, number, title, caption, pd.DataFrame(rows), pd.DataFrame(data))


def table7_large_actor(groups: list[GroupData]) -> Table:
    """Table 7: small (64->32) vs large (512->128) actor stopping episodes."""
    return _paired_table("table7_large_actor", "7", "Stopping episodes: small vs large actor",
                         paper.TABLE7_SMALL_VS_LARGE, groups, paper.TABLE7_PRESET, "Small actor", "Large actor")


def table8_linear_hidden(groups: list[GroupData]) -> Table:
    """Table 8: ReLU vs linear hidden activations stopping episodes."""
    return _paired_table("table8_linear_hidden", "8", "Stopping episodes: ReLU vs linear hidden activations",
                         paper.TABLE8_RELU_VS_LINEAR, groups, paper.TABLE8_PRESET, "ReLU hidden", "Linear hidden")


def table9_preact_linear(groups: list[GroupData]) -> Table:
    """Table 9: pre-activation magnitude, ReLU vs linear hidden layers, by actor LR."""
    base, alt = find_group(groups, ""), find_group(groups, paper.TABLE8_PRESET)
    lrs = set(paper.TABLE9_PREACT_RELU_VS_LINEAR)
    if alt is not None:
        lrs |= set(alt.runs["actor_lr"].dropna())
    rows, data = [], []
    for a in sorted(lrs, reverse=True):
        cells, nums = {}, {"actor_lr": a}
        for label, g in (("ReLU", base), ("Linear", alt)):
            runs = g.runs[g.runs["actor_lr"] == a] if g is not None else pd.DataFrame()
            mx = float(runs["max_abs_preactivation"].max()) if len(runs) else math.nan
            gm = geometric_mean_ci(runs["max_abs_preactivation"]) if len(runs) else None
            cells[f"{label} max |z| (largest run)"] = f"±{fmt_num(mx)}" if np.isfinite(mx) else "—"
            cells[f"{label} geometric mean [95% CI]"] = _ci_text(gm.mean, gm.lo, gm.hi, gm.n) if gm else "—"
            nums[f"{label.lower()}_max"] = mx
            nums[f"{label.lower()}_geomean"] = gm.mean if gm else math.nan
        pv = paper.lookup(paper.TABLE9_PREACT_RELU_VS_LINEAR, a)
        rows.append({"Actor LR": fmt_lr(a), **cells, "Paper ReLU": f"±{fmt_num(pv[0])}" if pv else "—",
                     "Paper Linear": f"±{fmt_num(pv[1])}" if pv else "—"})
        data.append(nums | {"paper_relu": pv[0] if pv else None, "paper_linear": pv[1] if pv else None})
    missing = [] if (base is not None and alt is not None) else [
        "needs a baseline and a 'linear-hidden' result set (pass the other with --compare)"]
    caption = ("Maximum |pre-activation| of the actor outputs (tanh inputs) over training, all runs with that "
               "actor LR pooled. Paper columns: the paper's Table 9 (single seed)."
               + (" Measured columns incomplete: " + missing[0] + "." if missing else ""))
    return Table("table9_preact_linear", "9", "Pre-activation magnitudes: ReLU vs linear hidden layers", caption,
                 pd.DataFrame(rows), pd.DataFrame(data))


# ------------------------------------------------------------------ viability, runs
def table_viable(gd: GroupData, margin: float) -> tuple[Table, ViableCount]:
    """Per-configuration viability (every seed improves by ``margin``) and the count."""
    vt = viable_table(gd.runs, margin)
    count = viable_count(vt, margin)
    rows = [{"Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]),
             "Seeds improved / evaluated": f"{r['seeds_improved']}/{r['seeds_evaluated']}"
             + (f" (of {r['seeds_total']} runs)" if r["seeds_total"] != r["seeds_evaluated"] else ""),
             "Mean Δ reward (last10 − first10)": fmt_num(r["mean_improvement"]),
             "Viable": {True: "yes", False: "no"}.get(r["viable"], "unknown (no finished run)")}
            for _, r in vt.iterrows()]
    caption = (f"{gd.title}: {count.viable} of {count.evaluated} evaluated configurations viable"
               f" ({count.total} configurations in total; margin {margin:.0%}, definition above).")
    return Table(f"table_viable__{_slug(gd.title)}", "", f"Viable configurations — {gd.title}", caption,
                 pd.DataFrame(rows), vt), count


def table_viable_counts(items: list[tuple[GroupData, ViableCount]]) -> Table:
    """The viable-configuration count of every result set (one row each)."""
    rows = [{"Result set": gd.title, "Viable": c.viable, "Evaluated configurations": c.evaluated,
             "Configurations": c.total, "Margin": f"{c.margin:.0%}", "Seeds": gd.seeds_text} for gd, c in items]
    rows.append({"Result set": "Paper (thesis, 10 seeds)", "Viable": paper.PAPER_VIABLE_COUNT,
                 "Evaluated configurations": paper.PAPER_VIABLE_TOTAL, "Configurations": paper.PAPER_VIABLE_TOTAL,
                 "Margin": "—", "Seeds": "n = 10 seeds"})
    data = pd.DataFrame([{"set": gd.title, "viable": c.viable, "evaluated": c.evaluated, "total": c.total,
                          "margin": c.margin} for gd, c in items])
    return Table("table_viable_counts", "", "Viable configurations per result set",
                 "Count of viable configurations (definition above).", pd.DataFrame(rows), data)


def viable_definition(margin: float) -> str:
    """The stated definition of a viable configuration for margin ``margin``."""
    return (f"A configuration is viable when, in every seed (finished runs only), the mean episode reward of the "
            f"last 10% of episodes exceeds the mean of the first 10% by more than {margin:.0%} of |first-10% "
            f"mean| (reward_last10 − reward_first10 > {margin:g}·|reward_first10|). The paper (thesis, 10 seeds): "
            f"{paper.PAPER_VIABLE_COUNT} of {paper.PAPER_VIABLE_TOTAL} (actor LR 0.0001, critic LR 0.001).")


def _short_commit(prov: dict | None) -> str:
    if not isinstance(prov, dict):
        return "not recorded"
    commit = str(prov.get("git_commit") or "unknown")
    short = commit[:10] if commit != "unknown" else commit
    return short + (" (modified)" if prov.get("git_dirty") else "")


def _machine(prov: dict | None) -> str:
    if not isinstance(prov, dict):
        return "not recorded"
    cores = prov.get("cpu_count")
    return (f"{prov.get('cpu_model') or 'unknown CPU'}, {cores if cores is not None else '?'} cores, "
            f"torch {prov.get('torch_version') or 'unknown'}")


def provenance_text(prov: dict | None) -> str:
    """One line: ``commit 89d80e71a7 (modified) · Intel Xeon, 2 cores, torch 2.13.0 · Python 3.11.7``."""
    if not isinstance(prov, dict):
        return "not recorded"
    return (f"commit {_short_commit(prov)} · {_machine(prov)} · Python {prov.get('python_version') or '?'}"
            f" · {prov.get('platform') or 'unknown platform'}")


def table_provenance(runs: pd.DataFrame) -> Table:
    """Where the runs ran: one row per (code commit, machine), with the runs' count and speed."""
    rows, data = [], []
    if len(runs):
        keyed = runs.assign(_commit=runs["provenance"].map(_short_commit), _machine=runs["provenance"].map(_machine))
        for (commit, machine), g in keyed.groupby(["_commit", "_machine"], sort=True):
            spe = g["seconds_per_episode"].dropna()
            rows.append({"Code commit": commit, "Machine (CPU, cores, torch)": machine, "Runs": len(g),
                         "s/episode (median, range)": (f"{spe.median():.3g} ({spe.min():.3g} … {spe.max():.3g})"
                                                       if len(spe) else "—")})
            data.append({"git_commit": commit, "machine": machine, "runs": len(g),
                         "seconds_per_episode_median": spe.median() if len(spe) else np.nan})
    caption = ("Code commit and machine recorded by each run in summary.json (provenance); \"not recorded\": "
               "runs written before gradasym recorded it. s/episode: wall-clock seconds per episode of each run "
               "(comparable only between runs on the same machine under the same load)."
               + (f" {int(_batched(runs).sum())} of the runs were trained in batches: their s/episode is the "
                  "run's acting time plus its share of the batch's training updates (the updates' time / the runs "
                  "updated together)." if len(runs) and _batched(runs).any() else ""))
    return Table("table_provenance", "", "Where the runs ran", caption, pd.DataFrame(rows), pd.DataFrame(data))


#: What "s/episode" of a run trained in a batch is (``summary.json`` ``trainer``: batched, or mixed).
BATCHED_SECONDS_NOTE = ("s/episode*: a run trained in a batch of runs (sweep --batch-runs; summary.json trainer "
                        "batched or mixed): its acting time plus its share of the batch's training updates (the "
                        "updates' time / the runs updated together), not the time it would take alone.")


def _batched(runs: pd.DataFrame) -> pd.Series:
    """Runs whose seconds are (partly) a share of a batch's time."""
    if "trainer" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["trainer"].isin(["batched", "mixed"])


def table_runs(runs: pd.DataFrame, problems: dict[str, list[str]]) -> Table:
    """Every run with status, progress, stopping and gradient-death episodes, speed, error and missing files."""
    rows = []
    for _, r in runs.sort_values(["set", "group", "actor_lr", "critic_lr", "seed"]).iterrows():
        ep_run = r["episodes_run"]
        ep_req = r["episodes_requested"]
        rows.append({
            "Set": r["set"], "Run": r["run_id"], "Status": r["status"],
            "Episodes": f"{fmt_num(ep_run)}/{fmt_num(ep_req)}",
            "Stop ep.": f"{r['stopping_episode']:.0f}" if r["stopped"] else "—",
            "Grad-death ep.": f"{r['grad_death_episode']:.0f}" if np.isfinite(r["grad_death_episode"]) else "—",
            "Critic stopped": {True: "yes", False: "no"}.get(r["critic_stopped"], "—"),
            "s/episode": fmt_num(r["seconds_per_episode"]) + ("*" if r.get("trainer") in ("batched", "mixed")
                                                                and np.isfinite(r["seconds_per_episode"]) else ""),
            "Commit": _short_commit(r["provenance"]),
            "Error": (str(r["error"])[:200] if isinstance(r["error"], str) and r["error"] else ""),
            "Missing / problems": "; ".join(problems.get(f"{r['set']}/{r['run_id']}", [])),
        })
    data = runs.drop(columns=["per_agent_stop_episode", "per_agent_grad_death_episode", "provenance"], errors="ignore")
    data = data.assign(git_commit=runs["provenance"].map(lambda p: p.get("git_commit") if isinstance(p, dict) else None))
    caption = ("Every run found, with what is missing. Stop ep.: first episode at which all actors had stopped; "
               "Grad-death ep.: first episode from which all actors' gradients stayed dead to the end (the latest "
               "of the agents' gradient-death episodes; — while any actor's gradient is alive); s/episode: "
               "wall-clock seconds per episode; Commit: the code commit the run recorded."
               + (" " + BATCHED_SECONDS_NOTE if _batched(runs).any() else ""))
    return Table("table_runs", "", "Runs", caption, pd.DataFrame(rows), data)


# ------------------------------------------------------------------ several seeds per configuration
def _median_ci_text(r: pd.Series) -> str:
    if not np.isfinite(r["stopmed_ci_lo"]):
        return "— (needs ≥ 6 seeds)" if r["stop_n"] else "—"
    return (f"[{bounded_text(r['stopmed_ci_lo'], r['stopmed_ci_lo_hi'])}, "
            f"{bounded_text(r['stopmed_ci_hi'], r['stopmed_ci_hi_hi'])}]")


def _range_text(r: pd.Series) -> str:
    if not r["stop_n"]:
        return "—"
    lo, hi = bounded_text(r["stop_min"], r["stop_min_hi"]), bounded_text(r["stop_max"], r["stop_max_hi"])
    return lo if lo == hi else f"{lo} … {hi}"


def _coverage_note(ns: pd.Series) -> str:
    """``n = 10: [X_(2), X_(9)], coverage 97.9%`` for each seed count present."""
    parts = []
    for n in sorted({int(v) for v in ns if v}):
        k, cov = median_ci_ranks(n)
        parts.append(f"n = {n}: [X_({k}), X_({n + 1 - k})], coverage {cov:.1%}" if k else
                     f"n = {n}: no 95% interval (needs ≥ 6 seeds)")
    return "; ".join(parts)


def table_seed_stopping(gd: GroupData, margin: float) -> Table:
    """Per configuration over its seeds: stopping-episode distribution, all-stopped fraction, |z|, saturation, viability.

    The thesis' criterion (viable only if every seed improves) sits beside the verdict
    of one seed alone (:func:`~gradasym.report.analysis.single_seed`: 42 if present,
    else the smallest), the paper's single-run view.
    """
    vt = viable_table(gd.runs, margin).set_index(["actor_lr", "critic_lr"])
    seed = single_seed(gd.runs)
    one = (viable_table(gd.runs[pd.to_numeric(gd.runs["seed"], errors="coerce") == seed], margin)
           .set_index(["actor_lr", "critic_lr"]) if seed is not None else None)
    verdict = {True: "yes", False: "no"}
    rows, data = [], []
    for _, r in gd.agg.sort_values(["actor_lr", "critic_lr"]).iterrows():
        key = (r["actor_lr"], r["critic_lr"])
        v = vt.loc[key] if key in vt.index else None
        o = one.loc[key] if one is not None and key in one.index else None
        n_cens = int(r["stop_n"] - r["n_stopped"])
        rows.append({
            "Actor LR": fmt_lr(r["actor_lr"]), "Critic LR": fmt_lr(r["critic_lr"]), "Seeds": int(r["n_runs"]),
            "Stop ep. median": bounded_text(r["stopmed_lo"], r["stopmed_hi"]),
            "Median 95% CI": _median_ci_text(r),
            "Range (min … max)": _range_text(r),
            "Never stopped": f"{n_cens}/{int(r['stop_n'])}" if r["stop_n"] else "—",
            "All actors stopped [95% Wilson]": _seeds_stopped_text(r) if r["stop_n"] else "—",
            "Max |z| geo. mean [95% CI]": _ci_text(r["zmax_mean"], r["zmax_lo"], r["zmax_hi"], r["zmax_n"]),
            "Final saturation [95% CI]": _ci_text(r["sat_mean"], r["sat_lo"], r["sat_hi"], r["sat_n"],
                                                  lambda x: f"{x:.3f}"),
            "Seeds improved": (f"{int(v['seeds_improved'])}/{int(v['seeds_evaluated'])}" if v is not None else "—"),
            "Viable (every seed)": verdict.get(v["viable"], "unknown") if v is not None else "—",
            f"Viable (seed {seed} alone)": verdict.get(o["viable"], "unknown") if o is not None else "—",
        })
        data.append({"actor_lr": key[0], "critic_lr": key[1], "n_runs": r["n_runs"], "stop_n": r["stop_n"],
                     "n_stopped": r["n_stopped"], "n_censored": n_cens,
                     "stop_median_lo": r["stopmed_lo"], "stop_median_hi": r["stopmed_hi"],
                     "stop_median_ci_lo": r["stopmed_ci_lo"], "stop_median_ci_lo_hi": r["stopmed_ci_lo_hi"],
                     "stop_median_ci_hi": r["stopmed_ci_hi"], "stop_median_ci_hi_hi": r["stopmed_ci_hi_hi"],
                     "stop_median_coverage": r["stopmed_coverage"], "stop_min": r["stop_min"],
                     "stop_min_hi": r["stop_min_hi"], "stop_max": r["stop_max"], "stop_max_hi": r["stop_max_hi"],
                     "stopped_frac": r["stopfrac_mean"], "stopped_frac_lo": r["stopfrac_lo"],
                     "stopped_frac_hi": r["stopfrac_hi"], "zmax_geomean": r["zmax_mean"], "zmax_lo": r["zmax_lo"],
                     "zmax_hi": r["zmax_hi"], "saturation_mean": r["sat_mean"], "saturation_lo": r["sat_lo"],
                     "saturation_hi": r["sat_hi"],
                     "seeds_improved": v["seeds_improved"] if v is not None else np.nan,
                     "seeds_evaluated": v["seeds_evaluated"] if v is not None else np.nan,
                     "viable": v["viable"] if v is not None else None,
                     "single_seed": seed, "viable_single_seed": o["viable"] if o is not None else None})
    caption = (f"{gd.title}, {gd.seeds_text}. Stopping episode (first episode at which all actors had stopped) over "
               "the seeds of each configuration: a seed whose actors never all stopped is right-censored, i.e. "
               "counted as ≥ the episodes it ran (never dropped); ≥N in a median, interval end or maximum means "
               "that order statistic is such a seed (only a lower bound is known); a–b: bracketed by a run still "
               "going. Median: " + MEDIAN_DEFINITION + ". Median 95% CI: the " + MEDIAN_CI_METHOD + " ("
               + _coverage_note(gd.agg["stop_n"]) + "). All actors stopped: k of n seeds, " + SEED_FRACTION_CI_METHOD
               + ". Max |z|: geometric mean "
               "over seeds with a 95% Student-t interval on log10. Final saturation: mean over seeds, "
               + FRACTION_CI_METHOD + f". Viable (every seed): the thesis' criterion, every finished seed's "
               f"last-10% mean reward exceeds its first-10% mean by {margin:.0%} of |first-10% mean|; Viable "
               f"(seed {seed} alone): the same criterion on one seed, as a single-run study would judge it.")
    return Table(_name("table_seeds_stopping", gd), "", "Stopping episodes and saturation over seeds", caption,
                 pd.DataFrame(rows), pd.DataFrame(data))


def table_correlations(gd: GroupData) -> Table:
    """Correlations over runs of the final saturation ratio and of ρ with the stopping episode."""
    corr = stop_correlations(gd.runs)
    rows = []
    for _, c in corr.iterrows():
        if c["runs"] == "all":
            runs = (f"all {c['n_runs']} runs with a value; the {c['n_censored']} that never stopped at the "
                    "episodes they ran" if c["n_censored"] else f"all {c['n_runs']} runs with a value (all stopped)")
        else:
            runs = f"the {c['n_runs']} runs whose actors all stopped"
        gone = [f"{c[k]} {what}" for k, what in (("n_running_left_out", "still running"),
                                                  ("n_failed_left_out", "failed before stopping")) if c[k]]
        if gone and c["runs"] == "all":
            runs += f" (left out, not stopped: {', '.join(gone)})"
        pearson_on = "log10 ρ" if c["log10"] else "value"
        if c["log10"] and c["n_zero"]:
            pearson_on += f" ({c['n_zero']} runs with ρ exactly 0 left out)"
        rows.append({"Quantity vs stopping episode": c["label"], "Runs": runs, "Pearson on": pearson_on,
                     "Pearson r [95% CI]": correlation_text(c["pearson_r"], c["pearson_lo"], c["pearson_hi"],
                                                            c["pearson_n"]),
                     "Spearman r_s [95% CI]": correlation_text(c["spearman_r"], c["spearman_lo"], c["spearman_hi"],
                                                               c["spearman_n"])})
    caption = (f"{gd.title}, {gd.seeds_text}: correlation over runs (every seed of every configuration) between the "
               "stopping episode and the final saturation ratio (the paper claims r > 0.9) and the final "
               "actor/critic gradient ratio ρ. Runs that never stopped enter the 'all' rows at the episodes they "
               "ran (the paper's convention, a lower bound) and are left out of the 'stopped' rows; running runs "
               "not stopped yet and failed runs that had not stopped are left out. Pearson's r on ρ uses log10 ρ "
               "(ρ spans decades), so runs with ρ exactly 0 are left out of it and counted; Spearman's rank "
               "correlation uses every run (ρ = 0 ranks lowest, ties share their mean rank). Intervals: "
               + CORRELATION_CI_METHOD + "; runs of one configuration share their learning rates, so they are "
               "not independent draws of the learning rates: the interval describes these runs, not the grid.")
    return Table(_name("table_seeds_correlations", gd), "", "Correlations with the stopping episode over runs",
                 caption, pd.DataFrame(rows), corr)


def table_viable_seeds(gd: GroupData, margin: float) -> tuple[Table, ViableCount, ViableCount | None, pd.DataFrame]:
    """The viable count under the thesis' criterion (every seed) beside the count of one seed alone.

    Rows: every seed; the single seed of :func:`~gradasym.report.analysis.single_seed`;
    the range of the single-seed counts over all seeds; the paper's thesis count.
    Returns the table, both counts and the per-seed counts.
    """
    every = viable_count(viable_table(gd.runs, margin), margin)
    seed = single_seed(gd.runs)
    one = single_seed_viable(gd.runs, margin, seed) if seed is not None else None
    per_seed = viable_by_seed(gd.runs, margin)
    rows = [{"Criterion": f"improves in every seed (thesis' criterion; {gd.seeds_text})", "Viable": every.viable,
             "Evaluated configurations": every.evaluated}]
    if one is not None:
        rows.append({"Criterion": f"seed {seed} alone (a single-seed study)", "Viable": one.viable,
                     "Evaluated configurations": one.evaluated})
    if len(per_seed) > 1:
        rows.append({"Criterion": f"any one seed alone (each of the {len(per_seed)} seeds)",
                     "Viable": f"{per_seed['viable'].min()} … {per_seed['viable'].max()} "
                               f"(median {per_seed['viable'].median():g})",
                     "Evaluated configurations": f"{per_seed['evaluated'].min()} … {per_seed['evaluated'].max()}"})
    rows.append({"Criterion": "paper (thesis, 10 seeds, every seed)", "Viable": paper.PAPER_VIABLE_COUNT,
                 "Evaluated configurations": paper.PAPER_VIABLE_TOTAL})
    caption = (f"{gd.title}: viable configurations (last-10% mean reward above first-10% by {margin:.0%} of "
               "|first-10% mean|, finished runs) counted under the thesis' criterion, which needs every seed to "
               f"improve, and as one seed alone would count them (seed {seed}: 42, the paper's seed, if present, "
               "else the smallest). The range over seeds shows how much a single-seed count depends on the seed.")
    data = per_seed.assign(set=gd.title, viable_every_seed=every.viable, evaluated_every_seed=every.evaluated)
    return (Table(_name("table_seeds_viable", gd), "", "Viable configurations: every seed vs one seed", caption,
                  pd.DataFrame(rows), data), every, one, per_seed)
