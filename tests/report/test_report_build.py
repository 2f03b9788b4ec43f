"""The whole report: figure files, tables, HTML; complete, partial, single-run and empty inputs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

import gradasym
from gradasym.report import build_report
from gradasym.report.figures import COMPARE_FIGURES, GROUP_FIGURES, SEED_FIGURES, VERDICT_FIGURE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def _images(html: str) -> list[tuple[str, bytes]]:
    return [(alt, base64.b64decode(data)) for alt, data in IMG_RE.findall(html)]


def test_every_figure_exists_as_png_and_pdf(full_report):
    figs = full_report.out / "figures"
    stems = [f[0] for f in GROUP_FIGURES + COMPARE_FIGURES + SEED_FIGURES]  # 3 seeds: Fig. 16 too
    stems.append(VERDICT_FIGURE[0])  # --compare: the remedy verdict, Fig. 19
    assert len(stems) == 16
    for stem in stems:
        png, pdf = figs / f"{stem}.png", figs / f"{stem}.pdf"
        assert png.read_bytes()[:8] == PNG_MAGIC, stem
        assert png.stat().st_size > 15_000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 8_000, stem


def test_html_embeds_every_figure(full_report):
    html = full_report.html.read_text()
    images = _images(html)
    assert len(images) == 18  # with the Plasticity section's Figs. 17-18 and, with --compare, the verdict's Fig. 19
    for alt, png in images:
        assert png[:8] == PNG_MAGIC and len(png) > 15_000, alt
    for number in ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14–15", "15b", "16", "17", "18",
                   "19"]:
        assert any(alt.startswith(f"Fig. {number} —") for alt, _ in images), number
    assert "not available" not in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "<script" not in html


def test_html_lists_configs_version_and_definitions(full_report):
    html = full_report.html.read_text()
    assert f"gradasym {gradasym.__version__}" in html
    assert "sweep.json" in html and "&quot;agent&quot;" in html  # resolved config JSON, escaped
    assert "0.1.0-synthetic" in html                           # versions recorded by the runs
    assert "exceeds the mean of the first 10%" in html and "5%" in html
    assert "Paper (thesis, 10 seeds)" in html
    assert "14 of 16 comparable configurations fall in the same category" in html
    assert "Nothing: every run finished" in html
    for table in ["Table 3 —", "Table 4 —", "Table 7 —", "Table 8 —", "Table 9 —"]:
        assert table in html


def test_table_files(full_report):
    tables = full_report.out / "tables"
    for name in ["table3_stopping", "table4_preactivation", "table7_large_actor", "table8_linear_hidden",
                 "table9_preact_linear", "table_compare_stopping", "table_viable_counts", "table_runs"]:
        assert (tables / f"{name}.md").read_text().startswith("### "), name
        assert (tables / f"{name}.csv").is_file(), name
    t3 = pd.read_csv(tables / "table3_stopping.csv").set_index(["actor_lr", "critic_lr"])
    assert t3.loc[(0.1, 0.1), "stop_mean"] == 16 and t3.loc[(0.1, 0.1), "paper_stop_episode"] == 161
    counts = pd.read_csv(tables / "table_viable_counts.csv")
    assert counts["viable"].tolist() == [1, 0] and counts["evaluated"].tolist() == [16, 8]
    md = (full_report.out / "report.md").read_text()
    assert "## Table 3 — Stopping episodes" in md and "| 0.1 | 0.01 |" in md


def test_partial_sweep_report_says_what_is_missing(partial_report):
    html = partial_report.html.read_text()
    missing = html[html.index("id='missing'"):html.index("id='viable'")]
    for needle in ["RuntimeError: boom", "still running (50 of 200 episodes)", "alr0.0001_clr0.1_s1",
                   "alr0.01_clr0.01_s0", "tracking.parquet missing", "tracking.parquet unreadable",
                   "summary.json unreadable", "summary.json missing", "alr0.1_clr0.1_s9",
                   "runs/copied-by-hand is not a run of this sweep"]:
        assert needle in missing, needle
    assert "internal error" not in html
    figs = partial_report.out / "figures"
    for group in ("baseline", "layernorm"):  # two preset groups in one folder
        assert (figs / f"fig02_stopping_heatmap__{group}.png").is_file()
    assert (figs / "fig14_compare_stopping.png").is_file()
    assert len(_images(html)) >= 24
    assert "Not stopped yet" in html


def test_single_run_folder(single_run, tmp_path):
    html_path = build_report(single_run, out_dir=tmp_path / "rep")
    html = html_path.read_text()
    assert len(_images(html)) == 12
    assert "needs a second result set" in html
    assert "1 runs in 1 configurations" in html or "1 runs in 1 configuration" in html
    assert (tmp_path / "rep" / "figures" / "fig11_learning_curves.pdf").is_file()


def test_empty_sweep_does_not_crash(empty_sweep):
    html_path = build_report(empty_sweep)
    assert html_path == empty_sweep / "report" / "report.html"
    html = html_path.read_text()
    assert "No runs found yet" in html and "2 runs listed in sweep.json have no folder yet" in html
    assert "<img" not in html and html.count("not available") == 14


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path, compare=[tmp_path / "nope"])


def test_rebuild_removes_stale_figures(tmp_path):
    from gradasym.report.build import _clean

    (tmp_path / "figures").mkdir()
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures" / "fig99_stale.png").write_bytes(b"x")
    (tmp_path / "tables" / "table_old.csv").write_text("x")
    (tmp_path / "figures" / "keep.txt").write_text("user file")
    _clean(tmp_path)
    assert not (tmp_path / "figures" / "fig99_stale.png").exists()
    assert not (tmp_path / "tables" / "table_old.csv").exists()
    assert (tmp_path / "figures" / "keep.txt").exists()


def test_odd_types_and_columns_do_not_crash(tmp_path):
    import json

    import synthetic as syn

    spec = syn.RunSpec(0.01, 0.1, 0, stop_episode=20, episodes=60)
    run_dir = syn.write_run(tmp_path / "runs" / syn.run_id(0.01, 0.1, 0), spec)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(stopping_episode="n/a", presets="layernorm", per_agent_stop_episode=["x", None, 3],
                   final_rho=None, max_abs_preactivation="big", critic_stopped=None)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"episode": [10, 20], "rho": [1e-6, 0.0]}).to_parquet(run_dir / "tracking.parquet")
    html = build_report(tmp_path, out_dir=tmp_path / "rep").read_text()
    assert "What is missing" in html and "Fig. 2 — Stopping-episode heatmap" in html
    assert "internal error" not in html and "no per-layer gradient columns" in html


def test_short_runs_mark_late_paper_stops_not_comparable(tmp_path) -> None:
    """20-episode runs cannot show the paper's stops at 161-763: the summary says so instead of failing."""
    import synthetic as syn

    from gradasym.report import build_report

    stops = {k: (None if v is None else 10) for k, v in syn.SCALED_TABLE3.items()}
    stops.update({(0.0001, 0.1): None, (0.001, 0.1): None})
    root = syn.write_sweep(tmp_path / "short", stops=stops, episodes=20)
    html = build_report(root).read_text()
    assert "Not comparable (2)" in html


# ------------------------------------------------------------------ validation, scale, order, provenance
import json  # noqa: E402
import math  # noqa: E402

from gradasym.config import ConfigError  # noqa: E402
from gradasym.report.load import run_grad_death_episode  # noqa: E402
from gradasym.report.paper import paper_category  # noqa: E402


@pytest.mark.parametrize("margin", [math.nan, math.inf, -math.inf, -0.05, "0.05", None, True])
def test_bad_margin_is_refused_before_any_work(single_run, tmp_path, margin) -> None:
    out = tmp_path / "rep"
    with pytest.raises(ConfigError, match="margin"):
        build_report(single_run, out_dir=out, margin=margin)
    assert not out.exists()


def test_margin_zero_is_accepted(single_run, tmp_path) -> None:
    assert build_report(single_run, out_dir=tmp_path / "a", margin=0).is_file()


def test_title_keeps_the_scale_derived_from_the_runs(full_report, single_run, tmp_path) -> None:
    html = full_report.html.read_text()
    assert "<title>gradasym report — sweep (reduced scale: 200 episodes, seeds 0–2)</title>" in html
    custom = build_report(single_run, out_dir=tmp_path / "r", title="My title").read_text()
    assert "<title>My title</title>" in custom and "<b>Scale</b>: reduced scale: 200 episodes, seed 42." in custom
    assert "Scale: reduced scale: 200 episodes, seed 42." in (tmp_path / "r" / "report.md").read_text()


def test_main_results_come_before_the_other_figures_and_the_comparison(full_report) -> None:
    html = full_report.html.read_text()
    pos = {k: html.index(k) for k in ("id='main'", "Table 3 —", "Table 4 —", "id='fig02_stopping_heatmap'",
                                      "id='fig04_grad_norms'", "id='comparison'", "Table 7 —", "id='viable'")}
    for main in ("Table 3 —", "Table 4 —", "id='fig02_stopping_heatmap'"):
        assert pos["id='main'"] < pos[main] < pos["id='fig04_grad_norms'"] < pos["id='comparison'"]
    assert pos["id='comparison'"] < pos["Table 7 —"]
    assert html.count("id='fig02_stopping_heatmap'") == 1 and html.count("Table 3 —") == 1
    md = (full_report.out / "report.md").read_text()
    assert md.index("## Table 3") < md.index("## Viable configurations") < md.index("## Table 7")


def test_report_records_build_and_run_provenance(tmp_path) -> None:
    import synthetic as syn

    prov = {"git_commit": "0123456789abcdef", "git_dirty": True, "cpu_model": "Test CPU 9000", "cpu_count": 7,
            "torch_version": "9.9.9", "python_version": "3.11.0", "platform": "TestOS", "gradasym_version": "x"}
    spec = syn.RunSpec(0.1, 0.1, 0, stop_episode=16, dead_grads=True,
                       extra={"provenance": prov, "seconds_per_episode": 0.125})
    syn.write_run(tmp_path / "runs" / syn.run_id(0.1, 0.1, 0), spec)
    syn.write_run(tmp_path / "runs" / syn.run_id(0.1, 0.01, 0), syn.RunSpec(0.1, 0.01, 0))  # no provenance
    html = build_report(tmp_path, out_dir=tmp_path / "rep").read_text()
    from gradasym.provenance import collect

    build = collect()
    assert f"commit {build['git_commit'][:10]}" in html or "commit unknown" in html
    assert f"{build['cpu_model']}, {build['cpu_count']} cores, torch {build['torch_version']}" in html
    runs = pd.read_csv(tmp_path / "rep" / "tables" / "table_runs.csv").set_index("run_id")
    rid = syn.run_id(0.1, 0.1, 0)
    assert runs.loc[rid, "git_commit"] == "0123456789abcdef" and runs.loc[rid, "seconds_per_episode"] == 0.125
    per_agent = json.loads((tmp_path / "runs" / rid / "summary.json").read_text())["per_agent_grad_death_episode"]
    assert runs.loc[rid, "grad_death_episode"] == max(per_agent) == 16
    assert math.isnan(runs.loc[syn.run_id(0.1, 0.01, 0), "grad_death_episode"])
    where = pd.read_csv(tmp_path / "rep" / "tables" / "table_provenance.csv")
    assert set(where["machine"]) == {"Test CPU 9000, 7 cores, torch 9.9.9", "not recorded"}
    assert "0123456789 (modified)" in html and "not recorded" in html
    t3 = pd.read_csv(tmp_path / "rep" / "tables" / "table3_stopping.csv").set_index(["actor_lr", "critic_lr"])
    assert t3.loc[(0.1, 0.1), "grad_death_mean"] == 16 and t3.loc[(0.1, 0.01), "n_grad_dead"] == 0


def test_run_grad_death_episode_is_the_latest_agent_once_all_died() -> None:
    assert run_grad_death_episode([3, 7, 5]) == 7
    assert run_grad_death_episode([3, None, 5]) is None      # one actor's gradient still alive
    assert run_grad_death_episode([]) is None and run_grad_death_episode(None) is None
    assert run_grad_death_episode(["x", 2]) is None


def test_category_thresholds_are_absolute_whatever_the_run_length() -> None:
    # docs/report.md: "the thresholds do not scale with the run length"
    assert paper_category(250) == paper_category(250, max_episodes=1000) == "Early (<300)"
    assert paper_category(335, max_episodes=1000) == "Intermediate (300-500)"
    assert paper_category(600) == "Late (>500)" and paper_category(2000) == "No stopping"


def test_seeds_stopped_carries_a_wilson_interval(full_report) -> None:
    from gradasym.report.stats import wilson_interval

    t3 = pd.read_csv(full_report.out / "tables" / "table3_stopping.csv").set_index(["actor_lr", "critic_lr"])
    ci = wilson_interval(3, 3)
    assert t3.loc[(0.1, 0.1), "stopped_frac_lo"] == pytest.approx(ci.lo) and t3.loc[(0.1, 0.1), "stopped_frac_hi"] == 1
    assert "3/3 [0.44, 1.00]" in full_report.html.read_text() and "Wilson score interval" in full_report.html.read_text()


def test_a_figure_that_fails_is_one_warning_line_and_its_traceback_goes_to_errors_log(small_sweep, tmp_path, caplog,
                                                                                      monkeypatch):
    import gradasym.report.build as build

    def boom(gd):
        raise RuntimeError("boom")

    failing = [(stem, n, title, cap, boom if stem == "fig04_grad_norms" else fn)
               for stem, n, title, cap, fn in GROUP_FIGURES]
    monkeypatch.setattr(build, "GROUP_FIGURES", failing)
    out = tmp_path / "rep"
    with caplog.at_level("WARNING", logger="gradasym.report.build"):
        html = build_report(small_sweep, out_dir=out)
    lines = [r.getMessage() for r in caplog.records if "fig04_grad_norms" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "RuntimeError: boom" in lines[0], lines
    assert "Traceback" in (out / "errors.log").read_text() and "boom" in (out / "errors.log").read_text()
    assert "internal error while drawing (RuntimeError: boom)" in Path(html).read_text()
    monkeypatch.setattr(build, "GROUP_FIGURES", GROUP_FIGURES)
    build_report(small_sweep, out_dir=out)  # fixed: the old errors.log does not linger
    assert not (out / "errors.log").exists()


def test_a_table_that_fails_is_one_warning_line_and_its_traceback_goes_to_errors_log(small_sweep, tmp_path, caplog,
                                                                                     monkeypatch):
    import gradasym.report.build as build

    def boom(gd):
        raise RuntimeError("table boom")

    monkeypatch.setattr(build, "table4_preactivation", boom)
    out = tmp_path / "rep"
    with caplog.at_level("WARNING"):
        html = build_report(small_sweep, out_dir=out)
    lines = [r.getMessage() for r in caplog.records if "table boom" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "marked missing in the report" in lines[0], lines
    assert "Traceback" in (out / "errors.log").read_text() and "table boom" in (out / "errors.log").read_text()
    assert "table failed: RuntimeError: table boom" in Path(html).read_text()
