"""``report.md``, the text twin of ``report.html``, written the same way by both report builders."""

from __future__ import annotations

from pathlib import Path

from .html import ReportContent
from .tables import Table, to_markdown


def write_markdown(path: Path, content: ReportContent, tables: list[Table]) -> None:
    """``report.md``: the title, provenance, summary, what is missing, every table and the figures not drawn."""
    lines = [f"# {content.title}", ""]
    if content.scale and content.scale not in content.title:
        lines += [f"Scale: {content.scale}.", ""]
    lines += [f"Generated {content.generated} by gradasym {content.version}; built with {content.provenance_line}.", ""]
    for heading, items in content.summary:
        lines += [f"## {heading}", "", *[f"- {x}" for x in items], ""]
    if content.missing:
        lines += ["## What is missing", "", *[f"- {m}" for m in content.missing], ""]
    for t in tables:
        label = f"Table {t.number} — " if t.number else ""
        heading = [f"## {label}{t.title}", ""]
        if content.viable and t is content.viable[0]:  # the viability section opens with its definition
            lines += ["## Viable configurations", "", content.viable_definition, ""]
            heading = [] if heading[0] == "## Viable configurations" else heading
        if content.verdict is not None and content.verdict.tables and t is content.verdict.tables[0]:
            lines += ["## Remedy verdict", "", content.verdict_definition, ""]
        lines += [*heading, t.caption, "", to_markdown(t.frame), ""]
    missing_figs = [f for f in content.figures if f.missing]
    if missing_figs:
        lines += ["## Figures not drawn", "", *[f"- Fig. {f.number} ({f.section}): {f.missing}" for f in missing_figs]]
    path.write_text("\n".join(lines) + "\n")
