"""Several seeds per configuration (the thesis' 10-seed protocol): the distribution of stopping episodes with
right-censored seeds, correlations over runs, the viable count under the every-seed criterion beside one seed's.

Checked on a synthetic 10-seed sweep whose stopping episodes are known exactly, and against plain formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

import synthetic as syn
from gradasym.report import build_report
from gradasym.report.analysis import build_groups, single_seed, stop_correlations
from gradasym.report.figures import fig_grad_norms, fig_seed_stops, fig_saturation_vs_stop, figure_caption
from gradasym.report.load import load_results, runs_frame
from gradasym.report.stats import correlation, median_ci, median_ci_ranks

SEEDS = tuple(range(10))
ACTORS, CRITICS = (0.0001, 0.1), (0.001, 0.1)


def _stop(a: float, c: float, seed: int) -> int | None:
    """Known stopping episodes: base + 3 seed - 13; at (1e-4, 0.1) seeds 5-9 never stop."""
    base = syn.SCALED_TABLE3[(a, c)]
    if base is None or ((a, c) == (0.0001, 0.1) and seed >= 5):
        return None
    return base + 3 * seed - 13


def _customize(spec: syn.RunSpec) -> syn.RunSpec:
    spec.stop_episode = _stop(spec.actor_lr, spec.critic_lr, spec.seed)
    # (1e-4, 1e-3) improves in every seed; (0.1, 1e-3) only in seed 0: one seed alone sees 2 viable, ten see 1.
    spec.improves = (spec.actor_lr, spec.critic_lr) == (0.0001, 0.001) or (
        (spec.actor_lr, spec.critic_lr) == (0.1, 0.001) and spec.seed == 0)
    return spec


@pytest.fixture(scope="module")
def ten_seeds(tmp_path_factory):
    return syn.write_sweep(tmp_path_factory.mktemp("ten") / "sweep", actor_lrs=ACTORS, critic_lrs=CRITICS,
                           seeds=SEEDS, customize=_customize)


@pytest.fixture(scope="module")
def ten_report(ten_seeds, tmp_path_factory):
    out = tmp_path_factory.mktemp("ten_report")
    return build_report(ten_seeds, out_dir=out), out


@pytest.fixture(scope="module")
def group(ten_seeds):
    rs = load_results(ten_seeds)
    return build_groups(rs, runs_frame(rs))[0]


# ------------------------------------------------------------------ statistics
def _binom_coverage(n: int, k: int) -> float:
    return sum(math.comb(n, j) for j in range(k, n - k + 1)) / 2 ** n


@pytest.mark.parametrize("n", range(1, 31))
def test_median_ci_ranks_is_the_narrowest_interval_with_95_percent_coverage(n) -> None:
    k, cov = median_ci_ranks(n)
    if k == 0:
        assert _binom_coverage(n, 1) < 0.95 and math.isnan(cov)
        return
    assert cov == pytest.approx(_binom_coverage(n, k)) and cov >= 0.95
    assert k + 1 > n // 2 or _binom_coverage(n, k + 1) < 0.95


def test_median_ci_ranks_known_values() -> None:
    assert median_ci_ranks(10) == (2, pytest.approx(1 - 2 * 11 / 1024))
    assert median_ci_ranks(6) == (1, pytest.approx(1 - 2 / 64))
    assert median_ci_ranks(5)[0] == 0


def test_median_ci_uncensored_is_the_order_statistics() -> None:
    vals = [9, 3, 7, 1, 5, 2, 8, 4, 6, 10]
    m = median_ci(vals)
    assert (m.median_lo, m.median_hi) == (5, 5)          # X_(5): the lower middle value
    assert (m.ci_lo_lo, m.ci_hi_lo) == (2, 9)            # [X_(2), X_(9)]
    assert (m.min_lo, m.max_lo, m.n, m.n_censored) == (1, 10, 10, 0)


def test_median_ci_censored_seeds_are_lower_bounds_never_dropped() -> None:
    vals = [57, 60, 63, 66, 69, 200, 200, 200, 200, 200]
    m = median_ci(vals, [False] * 5 + [True] * 5)
    assert (m.median_lo, m.median_hi) == (69, 69)        # half the seeds had stopped by 69
    assert (m.ci_lo_lo, m.ci_lo_hi) == (60, 60)
    assert m.ci_hi_lo == 200 and math.isinf(m.ci_hi_hi)  # X_(9) never stopped: only >= 200 is known
    assert math.isinf(m.max_hi) and m.n_censored == 5
    m = median_ci([200] * 10, [True] * 10)
    assert m.median_lo == 200 and math.isinf(m.median_hi) and math.isinf(m.min_hi)


def test_median_ci_brackets_a_running_run() -> None:
    m = median_ci([50, 100, 120], [True, False, False])  # the first is still running at episode 50
    assert (m.median_lo, m.median_hi) == (100, 120)     # X_(2) is 100 or 120, depending on that run
    assert m.ci_k == 0 and math.isnan(m.ci_lo_lo)      # 3 seeds: no 95% interval


def test_pearson_and_spearman_match_plain_formulas() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    p = correlation(x, y, "pearson")
    assert p.r == pytest.approx(np.corrcoef(x, y)[0, 1])
    z, se = math.atanh(p.r), 1 / math.sqrt(37)
    assert (p.lo, p.hi) == pytest.approx((math.tanh(z - 1.959963985 * se), math.tanh(z + 1.959963985 * se)))
    s = correlation(x, y, "spearman")
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # no ties here
    assert s.r == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    zs, ses = math.atanh(s.r), math.sqrt(1.06 / 37)
    assert s.lo == pytest.approx(math.tanh(zs - 1.959963985 * ses))


def test_correlation_undefined_cases_and_ties() -> None:
    assert math.isnan(correlation([1, 2, 3], [5, 5, 5]).r)               # constant variable
    c = correlation([1, 2, 3], [1, 3, 2])
    assert c.r == pytest.approx(0.5) and math.isnan(c.lo)               # n = 3: r but no interval
    assert correlation([1, 2, np.nan, 4, 5], [2, 4, 9, 8, 10]).n == 4   # non-finite pairs dropped
    t = correlation([0, 0, 1, 2], [1, 2, 3, 4], "spearman")             # tied zeros share rank 1.5
    assert t.r == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    with pytest.raises(ValueError):
        correlation([1], [1], "kendall")


# ------------------------------------------------------------------ analysis of the sweep
def _summaries(root) -> pd.DataFrame:
    rows = [json.loads((d / "summary.json").read_text()) for d in sorted((root / "runs").iterdir())]
    return pd.DataFrame(rows)


def test_correlations_over_runs_state_how_non_stopping_runs_count(ten_seeds, group) -> None:
    corr = stop_correlations(group.runs).set_index(["quantity", "runs"])
    s = _summaries(ten_seeds)
    stop = s["stopping_episode"].where(s["stopping_episode"].notna(), s["episodes_run"]).astype(float)
    sat = corr.loc[("final_saturation_ratio", "all")]
    assert sat["n_runs"] == 40 and sat["n_censored"] == 15 and sat["pearson_n"] == 40
    assert sat["pearson_r"] == pytest.approx(np.corrcoef(stop, s["final_saturation_ratio"])[0, 1])
    stopped = corr.loc[("final_saturation_ratio", "stopped")]
    assert stopped["n_runs"] == 25 and stopped["n_censored"] == 0
    rho = corr.loc[("final_rho", "all")]
    assert rho["pearson_r"] == pytest.approx(np.corrcoef(stop, np.log10(s["final_rho"]))[0, 1])


def test_rho_zeros_are_left_out_of_pearson_and_counted(group) -> None:
    runs = group.runs.copy()
    zero = runs.index[runs["stopped"]][:3]
    runs.loc[zero, "final_rho"] = 0.0
    rho = stop_correlations(runs).set_index(["quantity", "runs"]).loc[("final_rho", "all")]
    assert rho["n_zero"] == 3 and rho["pearson_n"] == 37 and rho["spearman_n"] == 40


def test_single_seed_prefers_the_papers_seed() -> None:
    assert single_seed(pd.DataFrame({"seed": [3, 1, 2]})) == 1
    assert single_seed(pd.DataFrame({"seed": [7, 42, 0]})) == 42
    assert single_seed(pd.DataFrame({"seed": [None]})) is None


# ------------------------------------------------------------------ the report
def test_seed_tables_hold_the_known_distribution(ten_report) -> None:
    _, out = ten_report
    t = pd.read_csv(out / "tables" / "table_seeds_stopping.csv").set_index(["actor_lr", "critic_lr"])
    fast = t.loc[(0.1, 0.1)]   # stops 3, 6, ..., 30
    assert (fast["stop_median_lo"], fast["stop_median_ci_lo"], fast["stop_median_ci_hi"]) == (15, 6, 27)
    assert (fast["stop_min"], fast["stop_max"], fast["n_censored"]) == (3, 30, 0)
    assert fast["stop_median_coverage"] == pytest.approx(0.978515625)
    mixed = t.loc[(0.0001, 0.1)]  # 57 ... 69 and five seeds that never stopped
    assert (mixed["stop_median_lo"], mixed["stop_median_ci_lo"], mixed["n_censored"]) == (69, 60, 5)
    assert mixed["stop_median_ci_hi"] == 200 and np.isinf(mixed["stop_median_ci_hi_hi"])
    assert (mixed["stopped_frac"], mixed["stopped_frac_lo"] >= 0, mixed["stopped_frac_hi"] <= 1) == (0.5, True, True)
    md = (out / "tables" / "table_seeds_stopping.md").read_text()
    assert "| 0.0001 | 0.1 | 10 | 69 | [60, ≥200] | 57 … ≥200 | 5/10 |" in md
    assert "| 0.0001 | 0.001 | 10 | ≥200 | [≥200, ≥200] | ≥200 | 10/10 |" in md
    assert "coverage 97.9%" in md and "right-censored" in md


def test_viable_count_every_seed_beside_one_seed(ten_report) -> None:
    _, out = ten_report
    v = pd.read_csv(out / "tables" / "table_seeds_viable.csv").set_index("seed")
    assert (v["viable_every_seed"] == 1).all()
    assert v.loc[0, "viable"] == 2 and (v.loc[1:, "viable"] == 1).all()
    md = (out / "tables" / "table_seeds_viable.md").read_text()
    assert "seed 0 alone (a single-seed study) | 2 | 4 |" in md and "1 … 2" in md
    stop = pd.read_csv(out / "tables" / "table_seeds_stopping.csv").set_index(["actor_lr", "critic_lr"])
    assert stop.loc[(0.1, 0.001), "viable"] == False and stop.loc[(0.1, 0.001), "viable_single_seed"] == True  # noqa: E712


def test_html_has_the_seed_section_with_figure_and_honest_captions(ten_report) -> None:
    html_path, out = ten_report
    html = html_path.read_text()
    assert "id='seeds'" in html and "href='#seeds'" in html
    assert "Fig. 16 —" in html and (out / "figures" / "fig16_seed_stops.png").is_file()
    assert "Correlations with the stopping episode over runs" in html
    assert "Viable configurations: every seed vs one seed" in html
    assert "the 15 never stopped at the episodes they ran" in html  # summary line: censored runs stated
    assert "Paper: r &gt; 0.9" in html
    assert "Correlation with the stopping episode (above the plot)" in html  # Figs. 6 and 10
    assert "internal error" not in html and "table failed" not in html


def test_fig16_draws_every_seed_and_marks_the_censored_ones(group) -> None:
    fig = fig_seed_stops(group)
    ax = fig.axes[0]
    pts = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(p) for p in pts) == 40
    hollow = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())
              and np.allclose(c.get_facecolors()[:, :3], 1.0)]
    assert sum(len(c.get_offsets()) for c in hollow) == 15
    assert all(np.allclose(c.get_offsets()[:, 1], 200) for c in hollow)
    caption = figure_caption(fig)
    assert "40 runs in 4 configurations" in caption and "the 15 runs whose actors did not all stop" in caption


def test_fig4_band_is_the_order_statistic_interval_of_the_median_at_ten_seeds(group) -> None:
    fig = fig_grad_norms(group)
    caption = figure_caption(fig)
    assert "k = 2 and coverage 97.9% at 10 seeds" in caption and "range over the seeds" not in caption
    track = group.track
    one = track[(track["actor_lr"] == 0.0001) & (track["critic_lr"] == 0.1)]
    ep = sorted(one["episode"].unique())[len(one["episode"].unique()) // 2]
    x = np.sort(one.loc[one["episode"] == ep, "critic_grad_norm"].to_numpy())
    assert len(x) == 10
    panel = next(ax for ax in fig.axes if ax.get_title() == "actor LR = 0.0001")
    verts = np.concatenate([path.vertices for c in panel.collections for path in c.get_paths()])
    at = verts[np.isclose(verts[:, 0], ep)][:, 1]
    assert np.isclose(at, x[1], rtol=1e-12).any() and np.isclose(at, x[8], rtol=1e-12).any()  # 2nd and 9th seed


def test_fig10_states_the_correlation_with_n(group) -> None:
    caption = figure_caption(fig_saturation_vs_stop(group))
    assert "n = 40" in caption and "n = 25" in caption and "Fisher-z" in caption


def test_single_seed_report_has_no_seed_section(single_run, tmp_path) -> None:
    out = tmp_path / "rep"
    html = build_report(single_run, out_dir=out).read_text()
    assert "id='seeds'" not in html and "Fig. 16" not in html and "Correlation with the stopping" not in html
    assert not list((out / "tables").glob("table_seeds*")) and not (out / "figures" / "fig16_seed_stops.png").exists()


def _publish_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "results" / "ten-seeds" / "publish.py"
    spec = importlib.util.spec_from_file_location("ten_seeds_publish", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_publish_copies_what_docs_results_hold_and_refuses_partial_results(ten_seeds, ten_report, tmp_path,
                                                                          capsys) -> None:
    import shutil

    publish = _publish_module()
    results = tmp_path / "ten-seeds"
    results.mkdir()
    shutil.copy(ten_seeds / "summary.csv", results / "summary.csv")
    (results / "stopping_heatmap.png").write_bytes(b"\x89PNG heatmap")
    dest = tmp_path / "docs"
    assert publish.main([str(results), str(dest)]) == 2            # no report yet
    assert "run gradasym report" in capsys.readouterr().err
    shutil.copytree(ten_report[1], results / "report")
    assert publish.main([str(results), str(dest)]) == 0
    for name in ("summary.csv", "stopping_heatmap.png", "report.html", "report.md", "tables/table_seeds_stopping.csv",
                 "tables/table_seeds_correlations.md", "tables/table3_stopping.csv", "figures/fig16_seed_stops.png",
                 "figures/fig10_saturation_vs_stop.png", "figures/fig04_grad_norms.png"):
        assert (dest / name).is_file(), name
    table = pd.read_csv(results / "summary.csv")
    table.loc[0, "status"] = "running"
    table.to_csv(results / "summary.csv", index=False)
    assert publish.main([str(results), str(dest)]) == 2
    assert "1 runs are not finished" in capsys.readouterr().err
    assert publish.main([str(results), str(dest), "--partial"]) == 0


def test_partial_sweep_states_running_and_failed_runs_it_leaves_out(partial_sweep) -> None:
    rs = load_results(partial_sweep)
    gd = build_groups(rs, runs_frame(rs))[0]                       # baseline group: 2 seeds
    corr = stop_correlations(gd.runs)
    assert (corr["n_running_left_out"] == 1).all() and (corr["n_failed_left_out"] == 1).all()
    caption = figure_caption(fig_seed_stops(gd))
    assert "1 of them are still running" in caption
    assert "Not drawn: 1 failed runs whose actors had not stopped" in caption and "alr0.1_clr0.001_s0" in caption
    assert "fewer than 6 seeds: no interval" in caption


def test_fig16_claims_an_interval_only_when_one_is_drawn(group, tmp_path) -> None:
    fig = fig_seed_stops(group)                                  # 10 seeds: intervals drawn
    assert "median and 95% CI" in fig._suptitle.get_text()
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "median 95% CI" in legend
    two = syn.write_sweep(tmp_path / "two", actor_lrs=ACTORS, critic_lrs=CRITICS, seeds=(0, 1),
                          customize=_customize)
    rs = load_results(two)
    fig = fig_seed_stops(build_groups(rs, runs_frame(rs))[0])    # 2 seeds: no interval can be drawn
    assert "no interval" in fig._suptitle.get_text() and "95% CI" not in fig._suptitle.get_text()
    assert "median 95% CI" not in [t.get_text() for lg in fig.legends for t in lg.get_texts()]
