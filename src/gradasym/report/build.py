"""Build the whole report: figures (PNG + PDF), tables (Markdown + CSV), ``report.html``.

:func:`build_report` is what ``gradasym report`` calls. It reads the main results
folder and any ``compare`` folders, draws every figure it has data for, and lists
what it could not draw and why; partial results (running sweeps, failed runs,
missing files, a single run) never make it fail.

Output layout (``out_dir``, default ``<results_dir>/report``)::

    report.html          self-contained page (figures embedded)
    report.md            summary and all tables as Markdown
    figures/<name>.png   and <name>.pdf
    tables/<name>.md     and <name>.csv
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..errors import describe
from ..provenance import collect as collect_provenance
from ..runfolder import require_folder
from .analysis import GroupData, ViableCount, build_groups, check_margin, group_title, multi_seed, scale_text
from .generic import build_generic_report, check_one_task, generic_runs, is_paper_set, run_algorithm
from .failures import ERRORS_LOG, Failures
from .figures import (
    COMPARE_FIGURES, GROUP_FIGURES, PLASTICITY_FIGURES, SEED_FIGURES, VERDICT_FIGURE, draw_figure, fig_verdict,
    has_plasticity,
)
from .html import MAIN_FIGURE, ConfigInfo, FigureResult, MainResult, ReportContent, render_html
from .load import ResultSet, load_results, parse_run_id, presets_label, runs_frame
from .markdown import write_markdown
from .plasticity_tables import (
    lead_time_summary_line, table_critic_plasticity, table_instrument_correlations, table_lead_times,
    table_remedies,
)
from .short_runs import short_runs_warning
from .verdict import compute_verdict, table_verdict_configs, table_verdict_remedies, verdict_definition, verdict_summary
from .summary import compare_summary, group_summary, missing_items, seed_summary
from .tables import (
    Table, table3_stopping, table4_preactivation, table7_large_actor, table8_linear_hidden,
    provenance_text, table9_preact_linear, table_compare_stopping, table_correlations, table_provenance,
    table_runs, table_seed_stopping, table_viable, table_viable_counts, table_viable_seeds, viable_definition, write_table,
)

__all__ = ["build_report", "DEFAULT_MARGIN"]


#: Default viability margin: 5 % of |mean reward of the first 10 % of episodes|.
DEFAULT_MARGIN = 0.05


def _version() -> str:
    try:
        from gradasym import __version__
        return str(__version__)
    except Exception:  # pragma: no cover - the package always defines it
        return "unknown"


def _unique_labels(sets: list[ResultSet]) -> None:
    """Make result-set labels unique (``name``, ``name (2)``...)."""
    seen: Counter[str] = Counter()
    for rs in sets:
        seen[rs.label] += 1
        if seen[rs.label] > 1:
            rs.label = f"{rs.label} ({seen[rs.label]})"


def _clean(out_dir: Path) -> None:
    """Remove figure/table files of a previous build (only names this module writes)."""
    (out_dir / ERRORS_LOG).unlink(missing_ok=True)  # a failure of this build appends anew
    for sub, patterns in (("figures", ("fig*.png", "fig*.pdf")), ("tables", ("table*.md", "table*.csv"))):
        d = out_dir / sub
        if d.is_dir():
            for pat in patterns:
                for p in d.glob(pat):
                    p.unlink(missing_ok=True)


def _draw(make: Callable[[], Any], fig_dir: Path, name: str, number: str, title: str, caption: str,
          section: str, errors: Failures) -> FigureResult:
    """Draw one figure of ``section`` (:func:`~gradasym.report.figures.draw_figure`)."""
    return draw_figure(make, fig_dir, FigureResult(name, number, title, caption, section), errors,
                       f"Fig. {number} ({section})")


def _suffix(gd: GroupData, several: bool) -> str:
    return f"__{''.join(ch if ch.isalnum() or ch in '-_' else '-' for ch in gd.group or 'baseline')}" if several else ""


def _group_figures(groups: list[GroupData], fig_dir: Path, errors: Failures) -> list[FigureResult]:
    if not groups:
        return [FigureResult(stem, number, title, caption, "No runs", missing="no runs found in the results folder")
                for stem, number, title, caption, _ in GROUP_FIGURES]
    several = len(groups) > 1
    out = []
    for gd in groups:
        for stem, number, title, caption, fn in GROUP_FIGURES:
            out.append(_draw(lambda fn=fn, gd=gd: fn(gd), fig_dir, stem + _suffix(gd, several), number, title,
                             caption, gd.title, errors))
    return out


def _plasticity_figures(groups: list[GroupData], fig_dir: Path, errors: Failures,
                        several: bool | None = None) -> list[FigureResult]:
    """Figs. 17-18 for each group whose runs recorded the plasticity instruments (``run.plasticity``);
    result sets recorded before them get none (their tables have no such columns). ``several``: whether
    the file names get the group's suffix (default: more than one group given)."""
    several = len(groups) > 1 if several is None else several
    return [_draw(lambda fn=fn, gd=gd: fn(gd), fig_dir, stem + _suffix(gd, several), number, title, caption,
                  gd.title, errors)
            for gd in groups if has_plasticity(gd) for stem, number, title, caption, fn in PLASTICITY_FIGURES]


def _seed_section(gd: GroupData, several: bool, margin: float, fig_dir: Path,
                  errors: Failures) -> tuple[MainResult, list[str]]:
    """The several-seeds section of one group (tables, Fig. 16) and its summary sentences."""
    figures = [_draw(lambda fn=fn: fn(gd), fig_dir, stem + _suffix(gd, several), number, title, caption,
                     gd.title, errors) for stem, number, title, caption, fn in SEED_FIGURES]
    viable = _safe_table(lambda: table_viable_seeds(gd, margin), errors)
    corr = _safe_table(lambda: table_correlations(gd), errors)
    tables = [t for t in (_safe_table(lambda: table_seed_stopping(gd, margin), errors), corr,
                          viable[0] if viable else None) if t]
    lines = seed_summary(gd, corr.data if corr else None, *(viable[1:] if viable else (None, None, None)))
    return MainResult(gd.title, figures, tables), lines


def _plasticity_section(gd: GroupData, several: bool, fig_dir: Path, errors: Failures) -> MainResult:
    """The "Plasticity" section of one group whose runs recorded the instruments: the lead-time table
    and Fig. 18 (which instrument announces the freeze earliest and most reliably), the correlation
    table, the critic's plasticity table and Fig. 17."""
    figs = {f.number: f for f in _plasticity_figures([gd], fig_dir, errors, several)}
    tables = [_safe_table(lambda: table_lead_times(gd), errors),
              _safe_table(lambda: table_instrument_correlations(gd), errors),
              _safe_table(lambda: table_critic_plasticity(gd), errors)]
    return MainResult(gd.title, [f for f in (figs.get("18"), figs.get("17")) if f], [t for t in tables if t])


def _no_plasticity(groups: list[GroupData]) -> list[str]:
    """What is missing for the Plasticity section: groups whose tracking has no plasticity columns."""
    lacking = [gd.title for gd in groups if not has_plasticity(gd)]
    if not lacking:
        return []
    return [f"{', '.join(lacking)}: no Plasticity section (lead times, correlations, critic plasticity, Figs. "
            "17-18): tracking.parquet has no plasticity columns (runs recorded before gradasym measured them, "
            "or run.plasticity = false)"]


def _compare_figures(groups: list[GroupData], fig_dir: Path, errors: Failures) -> list[FigureResult]:
    out = []
    for stem, number, title, caption, fn in COMPARE_FIGURES:
        if len(groups) < 2:
            out.append(FigureResult(stem, number, title, caption, "Comparison",
                                    missing="needs a second result set (gradasym report RESULTS --compare OTHER)"))
        else:
            out.append(_draw(lambda fn=fn: fn(groups), fig_dir, stem, number, title, caption, "Comparison", errors))
    return out


def _verdict_section(groups: list[GroupData], margin: float, level: float, fig_dir: Path,
                     errors: Failures) -> tuple[MainResult | None, list[str]]:
    """The remedy verdict of ``groups[1:]`` against ``groups[0]`` (tables, Fig. 19) and its summary sentences."""
    try:
        v = compute_verdict(groups, margin, level)
    except Exception as exc:  # never lose the report to the verdict
        errors.add(f"remedy verdict failed: {describe(exc)}", "the remedy verdict", exc)
        return None, []
    tables = [t for t in (_safe_table(lambda: table_verdict_remedies(v), errors),
                          _safe_table(lambda: table_verdict_configs(v), errors)) if t]
    stem, number, title, caption = VERDICT_FIGURE
    figure = _draw(lambda: fig_verdict(v), fig_dir, stem, number, title, caption, "Remedy verdict", errors)
    return MainResult("Remedy verdict", [figure], tables), verdict_summary(v)


def _safe_groups(rs: ResultSet, runs: pd.DataFrame, level: float, errors: Failures) -> list[GroupData]:
    """:func:`build_groups`, or no groups (and an error line) if the data defeats it."""
    try:
        return build_groups(rs, runs, level)
    except Exception as exc:  # malformed tables must not kill the whole report
        errors.add(f"{rs.label}: could not prepare the data ({describe(exc)})",
                   f"preparing the data of {rs.label}", exc)
        return []


def _safe_table(make: Callable[[], Table], errors: Failures) -> Table | None:
    try:
        return make()
    except Exception as exc:  # never lose the report to one table
        errors.add(f"table failed: {describe(exc)}", "a table", exc)
        return None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def _config_info(rs: ResultSet) -> ConfigInfo:
    """The base config (first run's) and the fields in which runs differ."""
    with_cfg = sorted((r for r in rs.runs if r.config is not None), key=lambda r: r.run_id)
    flat = {r.run_id: {k: json.dumps(v, sort_keys=True) for k, v in _flatten(r.config).items()} for r in with_cfg}
    keys = sorted({k for f in flat.values() for k in f})
    varying = [k for k in keys if len({f.get(k) for f in flat.values()}) > 1]
    rows = [{"run": rid, **{k: f.get(k, "—") for k in varying}} for rid, f in flat.items()]
    versions = sorted({str(r.summary.get("version")) for r in rs.runs if r.summary.get("version")})
    return ConfigInfo(
        label=rs.label, path=str(rs.path), sweep=rs.sweep,
        base_config=with_cfg[0].config if with_cfg else None, base_run=with_cfg[0].run_id if with_cfg else None,
        varying=pd.DataFrame(rows, columns=["run", *varying]) if varying else pd.DataFrame(),
        run_versions=versions, without_config=[r.run_id for r in rs.runs if r.config is None],
    )


def _pending_in_group(rs: ResultSet, group: str) -> int:
    """Pending runs (listed in sweep.json, no folder) whose run id names this preset group."""
    return sum(presets_label(parse_run_id(rid).get("presets", [])) == group for rid in rs.pending)


def _problems_by_run(sets: list[ResultSet]) -> dict[str, list[str]]:
    return {f"{rs.label}/{r.run_id}": [p for p in r.problems if not p.startswith("tracking_agents")]
            for rs in sets for r in rs.runs}


def _short_runs(sets: list[ResultSet]) -> str | None:
    """The sets' too-short-runs warnings as one line, also printed to stderr (None: no warning)."""
    lines = [w for w in (short_runs_warning(rs) for rs in sets) if w]
    if not lines:
        return None
    text = "; ".join(lines)
    print(f"gradasym: warning: {text}", file=sys.stderr, flush=True)
    return text


def build_report(results_dir: str | Path, compare: Sequence[str | Path] = (), out_dir: str | Path | None = None,
                 *, margin: float = DEFAULT_MARGIN, title: str | None = None) -> Path:
    """Build figures, tables and ``report.html`` for ``results_dir``; return the HTML path.

    ``results_dir``: a sweep folder, a single run folder, or a folder of run
    folders. ``compare``: other result folders (e.g. a mitigation preset's sweep)
    shown side by side with the main one (Figs. 14-15, Tables 7-9) and judged against its
    first group in the remedy verdict (:mod:`~gradasym.report.verdict`: Fig. 19 and the
    ``table_verdict_*`` tables). ``margin``:
    the viability margin as a fraction of |first-10 % mean reward|, a finite number
    >= 0. Intervals are 95 %: Student-t for means, on log10 for quantities drawn on
    log axes, on the logit scale for means of fractions, Wilson for proportions of
    seeds (the figures and tables say which). ``title`` defaults to
    ``gradasym report — <folder> (<scale>)``, the scale derived from the runs.

    Raises :class:`~gradasym.config.ConfigError` (a ``ValueError``) for an invalid
    ``margin`` or a results folder or ``out_dir`` that is a file
    (:class:`~gradasym.runfolder.FolderKindError`), and ``FileNotFoundError`` when a given
    folder does not exist, all before any work; any content problem is reported on the page instead.
    """
    margin = check_margin(margin)
    paths = [Path(results_dir), *[Path(p) for p in compare]]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"results folder not found: {p}")
        require_folder(p, "results folder")
    out = require_folder(Path(out_dir) if out_dir is not None else paths[0] / "report")
    fig_dir, tab_dir = out / "figures", out / "tables"

    sets = [load_results(p) for p in paths]
    _unique_labels(sets)
    if not is_paper_set(sets[0]):  # another algorithm (SB3...): its own units, no paper tables
        runs = generic_runs(sets[0])
        check_one_task(sets[0], runs)  # before anything is written
        out.mkdir(parents=True, exist_ok=True)
        _clean(out)
        extra = [f"--compare {rs.path}: comparing result sets is only implemented for CCM-MADRL sweeps"
                 for rs in sets[1:]]
        return build_generic_report(sets[0], runs, out, margin, title, _version(), _config_info(sets[0]), extra,
                                    warning=_short_runs([sets[0]]))
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    # A compared set of another algorithm would be read in CCM-MADRL terms (episodes, viability): left out.
    not_compared = [f"--compare {rs.path}: it holds runs of another algorithm ("
                    + ", ".join(sorted({run_algorithm(r) for r in rs.runs})) + "); comparing is only implemented "
                    "between CCM-MADRL result sets, so it is left out" for rs in sets[1:] if not is_paper_set(rs)]
    for line in not_compared:
        print(f"gradasym: warning: {line}", file=sys.stderr, flush=True)
    sets = [sets[0], *[rs for rs in sets[1:] if is_paper_set(rs)]]
    short = _short_runs(sets)
    frames = [runs_frame(rs) for rs in sets]
    errors = Failures(out)
    errors.extend(not_compared)  # listed with what is missing, as the SB3 report lists its --compare
    level = 0.95
    groups = [_safe_groups(rs, df, level, errors) for rs, df in zip(sets, frames)]
    main_groups, all_groups = groups[0], [g for gs in groups for g in gs]

    figures = _group_figures(main_groups, fig_dir, errors) + _compare_figures(all_groups, fig_dir, errors)
    plasticity = [_plasticity_section(gd, len(main_groups) > 1, fig_dir, errors)
                  for gd in main_groups if has_plasticity(gd)]
    plasticity_lines = {m.section: [lead_time_summary_line(t.data) for t in m.tables
                                    if t.name.startswith("table_plasticity_lead_times")] for m in plasticity}
    figures += [f for m in plasticity for f in m.figures]
    plasticity_tables = [t for m in plasticity for t in m.tables]

    group_tables: list[Table] = []
    main: list[MainResult] = []
    viable: list[Table] = []
    counts: dict[int, ViableCount] = {}
    for gd in all_groups:
        vt = _safe_table(lambda gd=gd: table_viable(gd, margin), errors)
        if vt is not None:
            viable.append(vt[0])
            counts[id(gd)] = vt[1]
    viable.insert(0, table_viable_counts([(gd, counts[id(gd)]) for gd in all_groups if id(gd) in counts]))
    for gd in main_groups:
        tables = [t for t in (_safe_table(lambda gd=gd: table3_stopping(gd), errors),
                              _safe_table(lambda gd=gd: table4_preactivation(gd), errors)) if t]
        group_tables += tables
        main.append(MainResult(gd.title, [f for f in figures if f.section == gd.title
                                          and f.name.startswith(MAIN_FIGURE)], tables))
    if not main_groups:
        main.append(MainResult("No runs", [f for f in figures if f.name.startswith(MAIN_FIGURE)], []))
    compare_tables = [t for t in (
        _safe_table(lambda: table_compare_stopping(all_groups), errors) if len(all_groups) > 1 else None,
        _safe_table(lambda: table7_large_actor(all_groups), errors),
        _safe_table(lambda: table8_linear_hidden(all_groups), errors),
        _safe_table(lambda: table9_preact_linear(all_groups), errors),
        _safe_table(lambda: table_remedies(all_groups), errors) if len(sets) > 1 else None) if t]
    all_runs = pd.concat(frames, ignore_index=True) if any(len(f) for f in frames) else frames[0]
    runs_tab = table_runs(all_runs, _problems_by_run(sets))
    scale = scale_text(frames[0])

    seeds: list[MainResult] = []
    seed_lines: dict[int, list[str]] = {}
    for gd in main_groups:
        if multi_seed(gd):
            section, seed_lines[id(gd)] = _seed_section(gd, len(main_groups) > 1, margin, fig_dir, errors)
            seeds.append(section)
            figures += section.figures
    seed_tables = [t for m in seeds for t in m.tables]
    verdict, verdict_lines = (_verdict_section(all_groups, margin, level, fig_dir, errors)
                              if main_groups and len(all_groups) > 1 else (None, []))
    verdict_tables = verdict.tables if verdict is not None else []
    if verdict is not None:
        figures += verdict.figures

    summary: list[tuple[str, list[str]]] = [("Warning", [short])] if short else []
    for gd in main_groups:
        summary.append((group_title(gd.group) if len(main_groups) > 1 else gd.title,
                        group_summary(gd, _pending_in_group(sets[0], gd.group), counts.get(id(gd)))
                        + seed_lines.get(id(gd), []) + plasticity_lines.get(gd.title, [])))
    if not main_groups:
        summary.append((sets[0].label, ["No runs found yet: " + "; ".join(sets[0].problems or ["empty folder"])]))
    if main_groups and len(all_groups) > 1:
        summary.append(("Comparison", [compare_summary(main_groups[0], g, counts.get(id(g)))
                                       for g in all_groups if g is not main_groups[0]]))
    if verdict_lines:
        summary.append(("Remedy verdict", verdict_lines))
    missing = [m for rs in sets for m in missing_items(rs)] + _no_plasticity(main_groups) + errors

    roles = ["main"] + ["compare"] * (len(sets) - 1)
    content = ReportContent(
        title=title or f"gradasym report — {sets[0].label}" + (f" ({scale})" if scale else ""),
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), version=_version(),
        scale=scale, provenance_line=provenance_text(collect_provenance()), main=main,
        provenance_table=table_provenance(all_runs),
        sets=[{"role": role, "label": rs.label, "path": str(rs.path), "kind": rs.kind, "runs": len(rs.runs)}
              for role, rs in zip(roles, sets)],
        summary=summary, missing=missing, viable=viable,
        viable_definition=viable_definition(margin) + (f" Warning: {short}." if short else ""),
        figures=figures, group_tables=group_tables, compare_tables=compare_tables, runs_table=runs_tab,
        configs=[_config_info(rs) for rs in sets], out_dir=out, seeds=seeds, plasticity=plasticity,
        verdict=verdict, verdict_definition=verdict_definition(margin) if verdict is not None else "",
    )
    all_tables = (viable + group_tables + seed_tables + plasticity_tables + compare_tables + verdict_tables
                  + [runs_tab, content.provenance_table])
    for t in all_tables:
        write_table(t, tab_dir)
    write_markdown(out / "report.md", content,
                    group_tables + seed_tables + plasticity_tables + viable + compare_tables + verdict_tables
                    + [content.provenance_table])
    html_path = out / "report.html"
    html_path.write_text(render_html(content), encoding="utf-8")
    return html_path
