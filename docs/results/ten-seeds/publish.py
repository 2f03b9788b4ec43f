"""Copy the ten-seed protocol's summary, report and tables into docs/results/ten-seeds/ (not typed by hand).

    python docs/results/ten-seeds/publish.py [RESULTS] [DEST]   # defaults: results/ten-seeds, this folder

RESULTS is the folder of
``gradasym reproduce --full --seeds 0 1 2 3 4 5 6 7 8 9 --out results/ten-seeds`` (the published
runs were made with ``--batch-runs off``, an option retired since: run by run is the only way now)
after ``gradasym report results/ten-seeds`` (the report in ``RESULTS/report/``). Copied, as for
docs/results/reproduce/: ``summary.csv`` and ``stopping_heatmap.png`` (written by ``reproduce``),
``report.html`` and ``report.md``; in addition ``tables/`` (every table as ``.md`` and ``.csv``) and the
figures of the several-seeds section and of Figs. 2, 4, 6 and 10 (``figures/<name>.png``). Refuses, with a
one-line message and exit status 2, a RESULTS folder without a report or whose runs are not all finished
(a partial protocol must not be published as the result); ``--partial`` publishes it anyway.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
#: Files of RESULTS copied as they are (the layout of docs/results/reproduce/).
TOP_FILES = ("summary.csv", "stopping_heatmap.png")
REPORT_FILES = ("report.html", "report.md")
#: Figures of the report copied next to it (the several-seeds figure, the two correlation scatters, the
#: stopping heatmap and the gradient norms over episodes).
FIGURES = ("fig16_seed_stops", "fig06_rho_vs_stop", "fig10_saturation_vs_stop", "fig02_stopping_heatmap",
           "fig04_grad_norms")


def _unfinished(results: Path) -> list[str]:
    """Run ids of ``summary.csv`` whose status is not ``finished`` (all of them when it is unreadable)."""
    try:
        table = pd.read_csv(results / "summary.csv")
    except (OSError, ValueError) as exc:
        return [f"summary.csv unreadable ({exc})"]
    return table.loc[table["status"] != "finished", "run_id"].astype(str).tolist()


def publish(results: Path, dest: Path, partial: bool = False) -> list[Path]:
    """Copy the files into ``dest``; return the paths written. ``ValueError`` names what is missing."""
    report = results / "report"
    missing = [p for p in [*(results / f for f in TOP_FILES), *(report / f for f in REPORT_FILES)] if not p.is_file()]
    if missing:
        hint = (f"gradasym reproduce ... --out {results} writes summary.csv and stopping_heatmap.png when the "
                f"sweep ends; run gradasym report {results} for the report")
        raise ValueError(f"missing {', '.join(str(p) for p in missing)} ({hint})")
    unfinished = _unfinished(results)
    if unfinished and not partial:
        raise ValueError(f"{len(unfinished)} runs are not finished ({', '.join(unfinished[:5])}"
                         f"{' ...' if len(unfinished) > 5 else ''}); pass --partial to publish them anyway")
    written = []
    dest.mkdir(parents=True, exist_ok=True)
    for src in [*(results / f for f in TOP_FILES), *(report / f for f in REPORT_FILES)]:
        written.append(Path(shutil.copy2(src, dest / src.name)))
    for sub, names in (("tables", None), ("figures", FIGURES)):
        out = dest / sub
        if out.is_dir():
            shutil.rmtree(out)  # a rebuilt report may have dropped a table: no stale copies
        out.mkdir()
        if names is None:
            files = sorted((report / sub).glob("*.md")) + sorted((report / sub).glob("*.csv"))
        else:
            files = [report / sub / f"{n}.png" for n in names if (report / sub / f"{n}.png").is_file()]
        for src in files:
            written.append(Path(shutil.copy2(src, out / src.name)))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Copy the ten-seed report and tables into docs/results/ten-seeds/.")
    p.add_argument("results", nargs="?", type=Path, default=Path("results/ten-seeds"),
                   help="the reproduce folder (default results/ten-seeds)")
    p.add_argument("dest", nargs="?", type=Path, default=HERE, help=f"where to copy (default {HERE})")
    p.add_argument("--partial", action="store_true", help="publish even if some runs are not finished")
    args = p.parse_args(argv)
    try:
        written = publish(args.results, args.dest, args.partial)
    except ValueError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} files written to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
