"""The remedy verdict (issue 21): per remedy and configuration, per remedy over configurations, the reward reached.

Checked on small synthetic sweep folders whose rewards and stopping episodes are set by hand, against values
computed here from the formulas (Wilson, Student-t, Welch, IQM), with a censored seed, a remedy that lacks a
configuration and has fewer seeds, two builds of the same report, and a remedy better / worse in every seed as the
negative control; the IQM and its stratified bootstrap against the rliable library where it is installed."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import synthetic as syn
from gradasym.report import build_report
from gradasym.report.analysis import build_groups
from gradasym.report.figures import fig_verdict, figure_caption
from gradasym.report.load import load_results, runs_frame
from gradasym.report.stats import BOOTSTRAP_REPS, iqm, stratified_bootstrap_ci, t_quantile, welch_diff_ci
from gradasym.report.verdict import compute_verdict, table_verdict_configs, table_verdict_remedies

Z = 1.959963984540054       # normal quantile 0.975
T2 = 4.302652729911275      # Student-t quantile 0.975, 2 degrees of freedom
T1 = 12.706204736174698     # ... 1 degree of freedom
LOW, HIGH = (0.0001, 0.001), (0.1, 0.1)
FIRST = -200.0              # every run's first-10% mean reward
MARGIN = 0.05

#: last-10% mean reward per (preset, configuration) and seed 0, 1, 2 (improvement = (last - FIRST) / 200).
LAST: dict[str, dict[tuple[float, float], list[float]]] = {
    # LOW: improves in every seed (0.10, 0.15, 0.20) but the t interval's lower end (0.026) is below the margin;
    # HIGH: seed 1 improves by only 2.5 %.
    "": {LOW: [-180.0, -170.0, -160.0], HIGH: [-210.0, -195.0, -150.0]},
    "layernorm": {LOW: [-150.0, -148.0, -146.0], HIGH: [-150.0, -148.0, -146.0]},   # better in every seed
    "gradclip": {LOW: [-220.0, -215.0, -210.0], HIGH: [-220.0, -215.0, -210.0]},    # worse in every seed
    "redo": {LOW: [-150.0, -140.0]},                                                  # one configuration, 2 seeds
}
#: stopping episodes (None: never stopped, counted as the 200 episodes run); HIGH's seed 2 is censored.
STOPS: dict[str, dict[tuple[float, float], list[int | None]]] = {
    "": {LOW: [None] * 3, HIGH: [20, 23, None]},
    "layernorm": {LOW: [None] * 3, HIGH: [None] * 3},
    "gradclip": {LOW: [None] * 3, HIGH: [None] * 3},   # actors keep moving, the reward gets worse
    "redo": {LOW: [None] * 2},
}


def _write(root: Path, preset: str, n_seeds: int = 3) -> Path:
    """A sweep folder of ``preset`` ("" = baseline) with the rewards of :data:`LAST` (at most ``n_seeds`` seeds)."""
    folder = root / (preset or "baseline")
    ids = []
    for key, lasts in LAST[preset].items():
        for seed, last in enumerate(lasts[:n_seeds]):
            spec = syn.RunSpec(*key, seed, stop_episode=STOPS[preset][key][seed], presets=(preset,) if preset else (),
                               extra={"reward_first10": FIRST, "reward_last10": last})
            ids.append(syn.run_id(*key, seed, preset))
            syn.write_run(folder / "runs" / ids[-1], spec)
    (folder / "sweep.json").write_text(json.dumps({"run_ids": ids, "presets": [preset] if preset else []}))
    return folder


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("verdict")
    return [_write(root, p) for p in ("", "layernorm", "gradclip", "redo")]


def _groups(paths: list[Path]):
    out = []
    for p in paths:
        rs = load_results(p)
        out += build_groups(rs, runs_frame(rs))
    return out


@pytest.fixture(scope="module")
def verdict(sweeps):
    return compute_verdict(_groups(sweeps), MARGIN)


@pytest.fixture(scope="module")
def report(sweeps, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verdict_report")
    build_report(sweeps[0], compare=sweeps[1:], out_dir=out)
    return out


def _row(v, preset: str, key: tuple[float, float]) -> pd.Series:
    title = {"": "baseline"}.get(preset, f"{preset} [{preset}]")
    c = v.configs
    return c[(c["set"] == title) & (c["actor_lr"] == key[0]) & (c["critic_lr"] == key[1])].iloc[0]


def _t_interval(x: list[float], t: float) -> tuple[float, float, float]:
    a = np.asarray(x)
    half = t * a.std(ddof=1) / math.sqrt(a.size)
    return a.mean(), a.mean() - half, a.mean() + half


def _improvement(preset: str, key) -> list[float]:
    return [(last - FIRST) / abs(FIRST) for last in LAST[preset][key]]


# ------------------------------------------------------------------ statistics
def test_iqm_hand_computed_examples() -> None:
    assert iqm([1, 2, 3, 4]) == 2.5                      # floor(4/4) = 1 cut from each end: (2 + 3) / 2
    assert iqm([100, 1, 7, 2, 6, 3, 5, 4]) == 4.5        # 2 cut from each end: (3 + 4 + 5 + 6) / 4
    assert iqm([1, 2, 3, 4, 50]) == 3.0                  # floor(5/4) = 1: (2 + 3 + 4) / 3
    assert iqm([1, 2, 30]) == 11.0                       # n < 4: nothing cut, the mean
    assert iqm([1, 2, float("nan"), 3, 4]) == 2.5        # non-finite dropped
    assert math.isnan(iqm([]))


def test_stratified_bootstrap_resamples_within_configurations() -> None:
    # Constant within each configuration: a stratified resample always draws one value of each, so the IQM never
    # moves; a bootstrap over the pooled runs would mix them and give a wide interval.
    ci = stratified_bootstrap_ci([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    assert (ci.estimate, ci.lo, ci.hi, ci.n, ci.strata) == (5.0, 5.0, 5.0, 6, 2)
    rng = np.random.default_rng(1)
    strata = [rng.normal(m, 1.0, 5) for m in (0.0, 3.0, 6.0)]
    a, b = stratified_bootstrap_ci(strata), stratified_bootstrap_ci(strata)
    assert a == b and a.lo < a.estimate < a.hi and a.reps == BOOTSTRAP_REPS   # deterministic, fixed seed
    assert stratified_bootstrap_ci(strata, seed=1) != a                          # the seed is what fixes it
    one = stratified_bootstrap_ci([[1.0], [2.0], [9.0]])                         # one seed each: nothing to resample
    assert (one.lo, one.hi) == (one.estimate, one.estimate) == (4.0, 4.0)
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap_ci(strata, reps=0)


def test_welch_interval_matches_the_formula() -> None:
    a, b = [-220.0, -215.0, -210.0], [-180.0, -170.0, -160.0]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    nu = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = t_quantile(0.975, nu) * math.sqrt(va + vb)
    d = welch_diff_ci(a, b)
    assert (d.mean, d.lo, d.hi) == pytest.approx((-45.0, -45.0 - half, -45.0 + half), rel=1e-12)
    assert 2 < nu < 3 and d.hi < 0
    assert welch_diff_ci([1.0], [2.0, 3.0]).n == 1 and math.isnan(welch_diff_ci([], [1.0]).mean)


def _rliable():
    """rliable's library and metrics modules, or a skip saying why they cannot be imported."""
    try:
        from rliable import library, metrics
    except Exception as exc:  # not installed, or its arch dependency breaks on this pandas
        pytest.skip(f"rliable is not importable here ({type(exc).__name__}: {exc}); pip install rliable "
                    "(with arch >= 8 under pandas >= 3)")
    return library, metrics


def _rliable_interval(library, metrics, scores: np.ndarray, reps: int) -> np.ndarray:
    """rliable's 95% stratified bootstrap percentile interval of the IQM of ``scores`` (runs x configurations).

    Through ``get_interval_estimates`` where it runs. rliable 1.2 passes ``random_state`` to arch's bootstrap,
    which arch >= 8 refuses (and arch < 8 does not import under pandas >= 3): then rliable's own resampling step
    (``StratifiedBootstrap.update_indices``) is driven here and the interval taken as arch's percentile method
    takes it (``np.percentile`` of the replications at 2.5 and 97.5).
    """
    np.random.seed(0)  # rliable's StratifiedBootstrap draws from numpy's global generator
    try:
        _, cis = library.get_interval_estimates({"x": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]),
                                                reps=reps)
        return cis["x"][:, 0]
    except TypeError as exc:
        if "random_state" not in str(exc):
            raise
    bs = types.SimpleNamespace(_num_items=scores.shape[0], _args_shape=scores.shape, _task_bootstrap=False)
    bs._strata_indices = library.StratifiedBootstrap._get_strata_indices(bs)
    reps_iqm = [metrics.aggregate_iqm(scores[library.StratifiedBootstrap.update_indices(bs)]) for _ in range(reps)]
    return np.percentile(reps_iqm, [2.5, 97.5])


def test_iqm_and_stratified_bootstrap_agree_with_rliable() -> None:
    library, metrics = _rliable()
    rng = np.random.default_rng(7)
    scores = rng.normal(0.0, 1.0, (5, 4)) + np.array([0.0, 0.5, 2.0, 4.0])   # 5 seeds x 4 configurations
    assert iqm(scores.ravel()) == pytest.approx(float(metrics.aggregate_iqm(scores)), rel=1e-14)
    assert iqm(scores[:, :3].ravel()) == pytest.approx(float(metrics.aggregate_iqm(scores[:, :3])), rel=1e-14)
    theirs = _rliable_interval(library, metrics, scores, 20_000)
    ours = stratified_bootstrap_ci([scores[:, j] for j in range(scores.shape[1])], reps=20_000)
    width = ours.hi - ours.lo
    assert ours.lo == pytest.approx(float(theirs[0]), abs=0.03 * width)  # bootstrap noise of 20,000 replications
    assert ours.hi == pytest.approx(float(theirs[1]), abs=0.03 * width)
    iid = np.quantile([iqm(rng.choice(scores.ravel(), 20)) for _ in range(2000)], [0.025, 0.975])
    assert iid[1] - iid[0] > 1.5 * width   # negative control: resampling the pooled runs is visibly different


# ------------------------------------------------------------------ per remedy and configuration
def test_configuration_values_equal_hand_computed_ones(verdict) -> None:
    r = _row(verdict, "", HIGH)
    assert (r["n_finished"], r["stop_n"], r["n_stopped"]) == (3, 3, 2)
    p, n = 2 / 3, 3
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    assert (r["stopfrac_mean"], r["stopfrac_lo"], r["stopfrac_hi"]) == pytest.approx((p, centre - half, centre + half))
    assert (r["stopmed_lo"], r["stopmed_hi"]) == (23, 23)   # X_(2) of 20, 23, >=200: the censored seed is kept
    mean, lo, hi = _t_interval(_improvement("", HIGH), T2)
    assert (r["imp_mean"], r["imp_lo"], r["imp_hi"]) == pytest.approx((mean, lo, hi), rel=1e-9)
    mean, lo, hi = _t_interval(LAST[""][HIGH], T2)
    assert (r["final_mean"], r["final_lo"], r["final_hi"]) == pytest.approx((mean, lo, hi), rel=1e-9)
    assert (r["viable_every"], r["viable_robust"]) == (False, False)


def test_the_two_criteria_differ_where_one_seed_is_weak(verdict) -> None:
    r = _row(verdict, "", LOW)
    mean, lo, _ = _t_interval(_improvement("", LOW), T2)
    assert r["imp_lo"] == pytest.approx(lo) and 0 < lo < MARGIN < mean
    assert (r["viable_every"], r["viable_robust"]) == (True, False)   # every seed > 5 %, yet the bound is below


def test_better_in_every_seed_is_viable_under_both_worse_under_neither(verdict) -> None:
    for key in (LOW, HIGH):
        good, bad = _row(verdict, "layernorm", key), _row(verdict, "gradclip", key)
        assert (good["viable_every"], good["viable_robust"]) == (True, True)
        assert (bad["viable_every"], bad["viable_robust"]) == (False, False)
    counts = verdict.remedies.set_index("set")
    assert counts.loc["layernorm [layernorm]", ["viable_every", "viable_robust"]].tolist() == [2, 2]
    assert counts.loc["gradclip [gradclip]", ["viable_every", "viable_robust"]].tolist() == [0, 0]
    assert counts.loc["baseline", ["viable_every", "viable_robust"]].tolist() == [1, 0]


def test_reward_against_the_best_baseline_configuration(verdict) -> None:
    assert verdict.best == LOW   # baseline means: LOW -170, HIGH -185
    bad = _row(verdict, "gradclip", HIGH)
    d = welch_diff_ci(LAST["gradclip"][HIGH], LAST[""][LOW])
    assert (bad["diff_mean"], bad["diff_lo"], bad["diff_hi"]) == pytest.approx((d.mean, d.lo, d.hi), rel=1e-12)
    frame = table_verdict_configs(verdict).frame.set_index(["Result set", "Actor LR", "Critic LR"])
    moving = frame.loc[("gradclip [gradclip]", "0.1", "0.1")]
    assert moving["All stopped [95% Wilson]"].startswith("0/3")        # the actors keep moving ...
    assert moving["Reward vs best baseline"] == "worse"                # ... and the reward reached is worse
    # +22 over a baseline configuration whose 3 seeds spread by 20: Welch cannot tell them apart, and says so
    good = _row(verdict, "layernorm", HIGH)
    assert good["diff_mean"] == pytest.approx(22.0) and good["diff_lo"] < 0 < good["diff_hi"]
    assert frame.loc[("layernorm [layernorm]", "0.1", "0.1"), "Reward vs best baseline"] == "not distinguishable"
    caption = table_verdict_configs(verdict).caption
    assert "actor LR 0.0001 / critic LR 0.001 of baseline" in caption and "lower end" in caption


# ------------------------------------------------------------------ per remedy over configurations
def test_iqm_over_runs_equals_hand_computed_values(verdict) -> None:
    rem = verdict.remedies.set_index("set")
    imps = sorted(_improvement("", LOW) + _improvement("", HIGH))   # 6 runs: cut 1 from each end
    assert rem.loc["baseline", "imp_iqm"] == pytest.approx(np.mean(imps[1:-1]))
    assert rem.loc["layernorm [layernorm]", "imp_iqm"] == pytest.approx(0.26)
    finals = sorted(LAST[""][LOW] + LAST[""][HIGH])
    assert rem.loc["baseline", "final_iqm"] == pytest.approx(np.mean(finals[1:-1]))
    ci = stratified_bootstrap_ci([_improvement("", LOW), _improvement("", HIGH)])
    assert (rem.loc["baseline", "imp_lo"], rem.loc["baseline", "imp_hi"]) == (ci.lo, ci.hi)
    assert rem.loc["layernorm [layernorm]", "imp_lo"] > rem.loc["baseline", "imp_hi"]
    assert rem.loc["gradclip [gradclip]", "final_hi"] < rem.loc["baseline", "final_lo"]


def test_a_remedy_missing_a_configuration_is_shown_with_its_n(verdict) -> None:
    rem = verdict.remedies.set_index("set").loc["redo [redo]"]
    assert (rem["configurations"], rem["grid"], rem["missing"], rem["runs"]) == (1, 2, "0.1/0.1", 2)
    assert (rem["seeds_min"], rem["seeds_max"]) == (2, 2)
    row = table_verdict_remedies(verdict).frame.set_index("Result set").loc["redo [redo]"]
    assert row["Configurations"] == "1 of 2 (missing: 0.1/0.1)" and row["Seeds (finished)"] == "n = 2"
    r = _row(verdict, "redo", LOW)
    mean, lo, hi = _t_interval(_improvement("redo", LOW), T1)   # 2 seeds: t with 1 degree of freedom
    assert (r["imp_mean"], r["imp_lo"], r["imp_hi"]) == pytest.approx((mean, lo, hi), rel=1e-9)


def test_one_seed_gives_no_interval_and_no_robust_verdict(sweeps, tmp_path) -> None:
    from test_report_honest import _check_inside, _check_no_interval, _drawn

    one = [_write(tmp_path, p, n_seeds=1) for p in ("", "layernorm")]
    v = compute_verdict(_groups(one), MARGIN)
    assert v.configs["viable_robust"].isna().all() and v.configs["viable_every"].notna().all()
    frame = table_verdict_configs(v).frame
    assert (frame["Viable (robust)"] == "unknown (< 2 seeds)").all()
    assert frame["Improvement, mean [95% t]"].str.endswith("(1 seed: no interval)").all()
    fig = _drawn(lambda: fig_verdict(v))
    _check_inside(fig, "fig19 one seed")
    _check_no_interval(fig, "fig19_verdict")
    several = _drawn(lambda: fig_verdict(compute_verdict(_groups(sweeps), MARGIN)))
    _check_inside(several, "fig19 three seeds")
    assert "baseline" in figure_caption(several) and "stratified bootstrap" in figure_caption(several)


# ------------------------------------------------------------------ the report
def test_report_has_the_verdict_section_tables_and_figure(report) -> None:
    html = (report / "report.html").read_text()
    assert "<h2 id='verdict'>Remedy verdict</h2>" in html and "href='#verdict'" in html
    assert "id='fig19_verdict'><img" in html
    md = (report / "report.md").read_text()
    assert "## Remedy verdict" in md and "Viable (robust)" in md
    csv = pd.read_csv(report / "tables" / "table_verdict_configs.csv")
    assert len(csv) == 2 + 2 + 2 + 1 and set(csv["set"]) == {"baseline", "layernorm [layernorm]",
                                                             "gradclip [gradclip]", "redo [redo]"}
    rem = pd.read_csv(report / "tables" / "table_verdict_remedies.csv")
    assert rem["set"].tolist()[0] == "baseline" and (report / "figures" / "fig19_verdict.pdf").is_file()
    assert not (report / "errors.log").exists()


def test_two_computations_give_the_same_tables(sweeps, report) -> None:
    """The bootstrap is seeded: the verdict computed again from freshly loaded folders gives the report's
    tables byte for byte (a second full report build would test the same at many times the cost)."""
    again = compute_verdict(_groups(sweeps), MARGIN)
    for name, table in (("table_verdict_configs", table_verdict_configs(again)),
                        ("table_verdict_remedies", table_verdict_remedies(again))):
        assert table.data.to_csv(index=False) == (report / "tables" / f"{name}.csv").read_text(), f"{name} differs"
