"""Compare the regenerated ten-seed protocol with the published torch-engine one, finding by finding.

    python docs/results/ten-seeds/compare_engines.py [NEW_RUNS_CSV] [OLD_RUNS_CSV]

Defaults: ``docs/results/ten-seeds/tables/table_runs.csv`` (the regenerated runs table, copied by
``publish.py`` from ``gradasym report results/ten-seeds``) against
``docs/results/ten-seeds/torch-engine/table_runs.csv`` (the 160 runs published before the compiled
engine: torch engine, commits d144208-0db80c8, 2026-12-01). Writes ``engines_comparison.md`` and
``engines_comparison.csv`` next to this script: per configuration the category, the all-stopped
fraction (Wilson), the median stopping episode with its distribution-free interval (each median
inside the other's interval?) and max |z|, then every difference beyond the intervals
(:mod:`gradasym.report.agreement`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gradasym.io import atomic_write
from gradasym.report.agreement import agreement_markdown, findings_agreement

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    new = Path(argv[0]) if argv else HERE / "tables" / "table_runs.csv"
    old = Path(argv[1]) if len(argv) > 1 else HERE / "torch-engine" / "table_runs.csv"
    try:
        old_runs, new_runs = pd.read_csv(old), pd.read_csv(new)
    except (OSError, ValueError) as exc:
        print(f"compare_engines.py: cannot read the runs tables: {exc}", file=sys.stderr)
        return 2
    table = findings_agreement(old_runs, new_runs, old="torch engine", new="compiled engine")
    text = agreement_markdown(table, "torch engine", "compiled engine")
    atomic_write(HERE / "engines_comparison.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(HERE / "engines_comparison.md", lambda tmp: tmp.write_text(text))
    print(f"wrote {HERE / 'engines_comparison.md'} and .csv ({len(table)} configurations)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
