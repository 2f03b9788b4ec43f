"""Render the report as one self-contained HTML page (no server, no network).

Figures are embedded as base64 PNG ``<img>`` (the PDF twins sit next to the page
in ``figures/``), tables as HTML tables, configs as pretty-printed JSON. The page
has inline CSS only and no JavaScript, so it opens from disk in any browser.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .tables import Table

__all__ = ["FigureResult", "ConfigInfo", "MainResult", "ReportContent", "render_html", "MAIN_FIGURE"]

#: The figure shown with Tables 3 and 4 as the main result of each group.
MAIN_FIGURE = "fig02_stopping_heatmap"


@dataclass
class FigureResult:
    """A figure that was drawn (``png``/``pdf`` set) or could not be (``missing`` says why)."""

    name: str
    number: str
    title: str
    caption: str
    section: str
    png: Path | None = None
    pdf: Path | None = None
    missing: str | None = None


@dataclass
class ConfigInfo:
    """The resolved configuration of one result set."""

    label: str
    path: str
    sweep: dict[str, Any] | None
    base_config: dict[str, Any] | None
    base_run: str | None
    varying: pd.DataFrame
    run_versions: list[str]
    without_config: list[str] = field(default_factory=list)


@dataclass
class MainResult:
    """The main results of one group of the main result set: the stopping heatmap, Tables 3 and 4."""

    section: str
    figures: list[FigureResult]
    tables: list[Table]


@dataclass
class ReportContent:
    """Everything the page shows, already computed.

    ``scale``: the runs' scale derived from them (``reduced scale: 1000 episodes,
    seed 42``); ``provenance_line``: :func:`gradasym.provenance.collect` of the
    build as one line; ``provenance_table``: where the runs ran (their recorded
    provenance); ``main``: the main results, shown before every other figure and
    before the comparison.
    """

    title: str
    generated: str
    version: str
    scale: str
    provenance_line: str
    main: list[MainResult]
    provenance_table: Table
    sets: list[dict[str, Any]]
    summary: list[tuple[str, list[str]]]
    missing: list[str]
    viable: list[Table]
    viable_definition: str
    figures: list[FigureResult]
    group_tables: list[Table]
    compare_tables: list[Table]
    runs_table: Table
    configs: list[ConfigInfo]
    out_dir: Path
    #: what the folded runs table lists (its units: episodes for CCM-MADRL, steps for SB3)
    runs_note: str = "status, progress, stopping episode, errors, missing files"
    #: per group with several seeds per configuration: the distribution over seeds, correlations, viability
    seeds: list[MainResult] = field(default_factory=list)
    #: per group whose runs recorded the plasticity instruments: lead times, correlations, critic plasticity
    plasticity: list[MainResult] = field(default_factory=list)
    #: the remedy verdict (main result set's first group against every other group): Fig. 19 and its tables
    verdict: MainResult | None = None
    #: the verdict's definitions (improvement, both criteria, IQM and its interval)
    verdict_definition: str = ""


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:16px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:.4em 0}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:1.8em}
h3{margin-top:1.4em}nav a{margin-right:14px}nav{padding:6px 0;border-bottom:1px solid #eee}
table{border-collapse:collapse;font-size:13px;margin:8px 0 4px}th,td{border:1px solid #d5d5d5;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f1f3f5}td.num{text-align:right}
tr:nth-child(even) td{background:#fafbfc}.caption{color:#444;font-size:13px;max-width:1000px}
figure{margin:18px 0 30px;padding:0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#333;max-width:1000px}.missing{color:#8a5a00;background:#fff7e0;
padding:8px 12px;border-left:4px solid #f0ad00}ul.summary li{margin:4px 0}pre{background:#f6f8fa;padding:10px;
overflow:auto;font-size:12px;max-height:480px}.meta td{text-align:left}.ok{color:#2b7a2b}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}.scroll{overflow-x:auto}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


_NUMERIC = re.compile(r"^[\s≥≤~±+\-−\[]*[\d.]")


def _frame_html(df: pd.DataFrame) -> str:
    """A DataFrame as an HTML table; numeric-looking cells right-aligned, text left-aligned."""
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = "—" if v is None or (isinstance(v, float) and v != v) else str(v)
            cls = " class='num'" if _NUMERIC.match(text) else ""
            cells.append(f"<td{cls}>{_e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _table_html(table: Table) -> str:
    label = f"Table {table.number} — " if table.number else ""
    body = _frame_html(table.frame) if len(table.frame) else "<p class='missing'>No rows.</p>"
    return (f"<h3 id='{_e(table.name)}'>{_e(label + table.title)}</h3><p class='caption'>{_e(table.caption)}</p>"
            f"<div class='scroll'>{body}</div><p class='caption'>Files: tables/{_e(table.name)}.md, "
            f"tables/{_e(table.name)}.csv</p>")


def _figure_html(fig: FigureResult, out_dir: Path) -> str:
    head = f"Fig. {fig.number} — {fig.title}"
    if fig.png is None or not fig.png.is_file():
        reason = fig.missing or "not drawn"
        return (f"<figure id='{_e(fig.name)}' class='figure-missing'><p class='missing'><b>{_e(head)}</b>: "
                f"not available — {_e(reason)}</p></figure>")
    data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
    pdf = fig.pdf.relative_to(out_dir).as_posix() if fig.pdf else ""
    link = f" <i>(PDF: <a href='{_e(pdf)}'>{_e(pdf)}</a>)</i>" if pdf else ""
    return (f"<figure id='{_e(fig.name)}'><img alt='{_e(head)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{_e(head)}.</b> {_e(fig.caption)}{link}</figcaption></figure>")


def _header(c: ReportContent) -> str:
    rows = "".join(f"<tr><td>{_e(s['role'])}</td><td>{_e(s['label'])}</td><td>{_e(s['path'])}</td>"
                   f"<td>{_e(s['kind'])}</td><td>{_e(s['runs'])}</td></tr>" for s in c.sets)
    scale = f"<p class='scale'><b>Scale</b>: {_e(c.scale)}.</p>" if c.scale and c.scale not in c.title else ""
    return (f"<h1>{_e(c.title)}</h1>{scale}<p>Generated {_e(c.generated)} by gradasym {_e(c.version)}; built "
            f"with {_e(c.provenance_line)}.</p>"
            "<table class='meta'><tr><th>role</th><th>label</th><th>folder</th><th>layout</th><th>runs</th></tr>"
            f"{rows}</table>")


NAV = [("summary", "Summary"), ("missing", "Missing"), ("main", "Main results"), ("figures", "Figures"),
       ("viable", "Viable"), ("comparison", "Comparison"), ("runs", "Runs"), ("configs", "Configs")]


def _summary(c: ReportContent) -> str:
    parts = ["<h2 id='summary'>Summary</h2>"]
    for heading, lines in c.summary:
        items = "".join(f"<li>{_e(line)}</li>" for line in lines)
        parts.append(f"<h3>{_e(heading)}</h3><ul class='summary'>{items}</ul>")
    return "".join(parts)


def _missing(c: ReportContent) -> str:
    if not c.missing:
        return "<h2 id='missing'>What is missing</h2><p class='ok'>Nothing: every run finished with all files.</p>"
    items = "".join(f"<li>{_e(m)}</li>" for m in c.missing[:500])
    more = f"<p>… and {len(c.missing) - 500} more.</p>" if len(c.missing) > 500 else ""
    return (f"<h2 id='missing'>What is missing</h2><div class='missing'>The results are partial "
            f"({len(c.missing)} items); the report shows what exists.<ul>{items}</ul>{more}</div>")


def _viable(c: ReportContent) -> str:
    """The counts table in full; the per-configuration tables folded (they are long)."""
    first = _table_html(c.viable[0]) if c.viable else ""
    rest = "".join(f"<details><summary>{_e(t.title)}</summary>{_table_html(t)}</details>" for t in c.viable[1:])
    return f"<h2 id='viable'>Viable configurations</h2><p>{_e(c.viable_definition)}</p>{first}{rest}"


def _main(c: ReportContent) -> str:
    """Stopping heatmap, Table 3 and Table 4 of each group of the main result set."""
    parts = ["<h2 id='main'>Main results</h2>"]
    for m in c.main:
        if len(c.main) > 1:
            parts.append(f"<h3>{_e(m.section)}</h3>")
        parts += [_figure_html(f, c.out_dir) for f in m.figures] + [_table_html(t) for t in m.tables]
    return "".join(parts)


def _seeds(c: ReportContent) -> str:
    """Groups with several seeds: stopping distribution, correlations over runs, viable count every seed vs one."""
    if not c.seeds:
        return ""
    parts = ["<h2 id='seeds'>Several seeds</h2>"]
    for m in c.seeds:
        if len(c.seeds) > 1:
            parts.append(f"<h3>{_e(m.section)}</h3>")
        parts += [_table_html(t) for t in m.tables] + [_figure_html(f, c.out_dir) for f in m.figures]
    return "".join(parts)


#: The questions the Plasticity section answers (its opening paragraph).
PLASTICITY_INTRO = ("Which instrument announces the actors' freeze earliest and most reliably (lead time before the "
                    "stopping episode, and the correlation of an early value with it over runs), and does the critic "
                    "lose plasticity (dormant units, feature rank) while it keeps learning? Definitions in the "
                    "captions; the method in docs/plasticity.md. Which remedies un-freeze the actors: the table "
                    "'Which remedies un-freeze the actors' under Comparison, when result sets are compared.")


def _plasticity(c: ReportContent) -> str:
    """Groups whose runs recorded the plasticity instruments: lead times, correlations, critic plasticity."""
    if not c.plasticity:
        return ""
    parts = ["<h2 id='plasticity'>Plasticity</h2>", f"<p>{_e(PLASTICITY_INTRO)}</p>"]
    for m in c.plasticity:
        if len(c.plasticity) > 1:
            parts.append(f"<h3>{_e(m.section)}</h3>")
        tables = {t.name.split("__")[0]: t for t in m.tables}
        order = [tables.get("table_plasticity_lead_times"), *[f for f in m.figures if f.number == "18"],
                 tables.get("table_plasticity_correlations"), tables.get("table_plasticity_critic"),
                 *[f for f in m.figures if f.number != "18"]]
        parts += [_table_html(x) if isinstance(x, Table) else _figure_html(x, c.out_dir) for x in order if x]
    return "".join(parts)


def _figures(c: ReportContent) -> str:
    parts = ["<h2 id='figures'>Figures</h2>"]
    current = None
    shown = {id(f) for m in c.main + c.seeds + c.plasticity + ([c.verdict] if c.verdict else []) for f in m.figures}
    for fig in c.figures:
        if fig.section == "Comparison" or id(fig) in shown:
            continue
        if fig.section != current:
            parts.append(f"<h3>{_e(fig.section)}</h3>")
            current = fig.section
        parts.append(_figure_html(fig, c.out_dir))
    return "".join(parts)


def _has_comparison(c: ReportContent) -> bool:
    """Whether the page has comparison figures or tables (else no heading and no link for them)."""
    return bool(c.compare_tables) or any(f.section == "Comparison" for f in c.figures)


def _comparison(c: ReportContent) -> str:
    if not _has_comparison(c):
        return ""
    figs = "".join(_figure_html(f, c.out_dir) for f in c.figures if f.section == "Comparison")
    tables = "".join(_table_html(t) for t in c.compare_tables)
    return f"<h2 id='comparison'>Comparison of result sets</h2>{figs}{tables}"


def _verdict(c: ReportContent) -> str:
    """The remedy verdict: definitions, the table over configurations, Fig. 19, the per-configuration table."""
    if c.verdict is None:
        return ""
    tables = [_table_html(t) for t in c.verdict.tables]
    figs = [_figure_html(f, c.out_dir) for f in c.verdict.figures]
    return (f"<h2 id='verdict'>Remedy verdict</h2><p>{_e(c.verdict_definition)}</p>"
            + "".join(tables[:1] + figs + tables[1:]))


def _configs(c: ReportContent) -> str:
    parts = [f"<h2 id='configs'>Configurations and versions</h2><p>Report generated by gradasym "
             f"{_e(c.version)}.</p>"]
    for info in c.configs:
        parts.append(f"<h3>{_e(info.label)}</h3><p>Folder: {_e(info.path)}. Versions recorded by the runs: "
                     f"{_e(', '.join(info.run_versions) or 'none recorded')}.</p>")
        if info.sweep is not None:
            parts.append(f"<details><summary>sweep.json</summary><pre>{_e(json.dumps(info.sweep, indent=2))}"
                         "</pre></details>")
        if info.base_config is not None:
            opened = " open" if info is c.configs[0] else ""
            parts.append(f"<details{opened}><summary>Resolved config of {_e(info.base_run)} (config.json); every "
                         f"other run differs only in the fields listed below</summary><pre>"
                         f"{_e(json.dumps(info.base_config, indent=2))}</pre></details>")
        if len(info.varying):
            parts.append("<details><summary>Fields that differ between runs</summary><div class='scroll'>"
                         f"{_frame_html(info.varying)}</div></details>")
        if info.without_config:
            parts.append(f"<p class='missing'>No config.json: {_e(', '.join(info.without_config))}</p>")
    parts.append(f"<p>This report was built with {_e(c.provenance_line)}.</p>")
    parts.append(_table_html(c.provenance_table))
    return "".join(parts)


def render_html(c: ReportContent) -> str:
    """The complete page as a string."""
    extra = ([("seeds", "Several seeds")] if c.seeds else []) + ([("plasticity", "Plasticity")] if c.plasticity else [])
    nav_items = NAV[:3] + extra + NAV[3:]
    nav_items = [(k, v) for k, v in nav_items if k != "comparison" or _has_comparison(c)]
    if c.verdict is not None:
        at = next(i for i, (k, _) in enumerate(nav_items) if k == "runs")
        nav_items = nav_items[:at] + [("verdict", "Remedy verdict")] + nav_items[at:]
    nav = "".join(f"<a href='#{k}'>{_e(v)}</a>" for k, v in nav_items)
    opened = " open" if len(c.runs_table.frame) <= 40 else ""
    runs = (f"<h2 id='runs'>Runs</h2><details{opened}><summary>{len(c.runs_table.frame)} runs ({_e(c.runs_note)})"
            f"</summary>{_table_html(c.runs_table)}</details>")
    body = "".join([_header(c), f"<nav>{nav}</nav>", _summary(c), _missing(c), _main(c), _seeds(c), _plasticity(c),
                    _figures(c), _viable(c), _comparison(c), _verdict(c), runs, _configs(c)])
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(c.title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")
