"""Every figure honest at every n (issue 22, item 4): rendered for a 1-seed, a 10-seed and two SB3 result
sets, no text leaves the canvas, tick labels of one axis do not collide, no interval is claimed where a
configuration has one seed, and intervals stay inside the values the quantity can take."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.text import Text

import synthetic as syn
from gradasym.io import write_json, write_table
from gradasym.report.analysis import GroupData, build_groups
from gradasym.report.figures import (
    GROUP_FIGURES, PLASTICITY_FIGURES, SEED_FIGURES, STYLE, NoData, fig_grad_norms, figure_caption,
)
from gradasym.report.generic import NoFigure, _figure_specs, config_summary, generic_runs
from gradasym.report.load import load_results, runs_frame

#: Words that claim an interval (in a title or legend of a figure whose configurations have one seed).
CLAIM = re.compile(r"\bCI\b|95 ?%|t-band|interval|error bar", re.IGNORECASE)
#: Words that say no interval is drawn (these are not claims).
DENIAL = re.compile(r"(no|not an) (interval|band|error bar)|log interval|one seed", re.IGNORECASE)
#: Fig. 8's band is each run's spread of z (± 1 std, named so), not an interval over seeds.
SPREAD_BANDS = {"fig08_preactivation_time"}


def _dead(spec: syn.RunSpec) -> syn.RunSpec:
    spec.dead_grads = spec.stop_episode is not None
    return spec


def _group(root: Path) -> GroupData:
    rs = load_results(root)
    return build_groups(rs, runs_frame(rs))[0]


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory) -> GroupData:
    root = syn.write_sweep(tmp_path_factory.mktemp("one") / "sweep", actor_lrs=(0.0001, 0.1),
                           critic_lrs=(0.001, 0.1), seeds=(42,), customize=_dead, plasticity=True)
    return _group(root)


@pytest.fixture(scope="module")
def ten_seeds(tmp_path_factory) -> GroupData:
    root = syn.write_sweep(tmp_path_factory.mktemp("ten") / "sweep", actor_lrs=(0.0001, 0.1),
                           critic_lrs=(0.001, 0.1), seeds=tuple(range(10)), customize=_dead, plasticity=True)
    return _group(root)


def _sb3_run(root: Path, alr: float, clr: float, seed: int, stop: int | None, steps: int = 25_000) -> None:
    """A TD3-on-Pendulum run folder: returns <= 0, tracking over 20,000 gradient steps."""
    rid = f"alr{alr:g}_clr{clr:g}_td3_s{seed}"
    d = root / "runs" / rid
    write_json(d / "config.json", {"algo": "td3", "env": {"id": "Pendulum-v1"},
                                   "agent": {"actor_lr": alr, "critic_lr": clr}, "run": {"seed": seed, "steps": steps}})
    rng = np.random.default_rng(seed)
    n_ep = steps // 200
    # returns close to 0 (the best Pendulum return) so that a t-interval would cross 0
    write_table(d / "episodes.parquet", [{"episode": i + 1, "step": 200 * (i + 1),
                                          "return": -min(1500.0, 3.0 + abs(float(rng.normal(0, 8))) * (n_ep - i)),
                                          "length": 200, "seconds": 0.1} for i in range(n_ep)])
    grads = range(1000, steps - 4000 + 1, 1000)
    write_table(d / "tracking.parquet", [
        {"gradient_step": g, "step": g + 1000, "saturation_ratio": min(1.0, 0.9 + 0.05 * seed * g / steps),
         "preact_max_abs": 3.0 + g / 100, "rho": 0.0 if stop and g >= stop else 10.0 ** (-2 - 4 * seed),
         "dead_output_frac": min(1.0, 0.95 + 0.02 * seed) if stop and g >= stop else 0.0} for g in grads])
    write_json(d / "summary.json", {
        "status": "finished", "error": None, "algo": "td3", "env": "Pendulum-v1", "actor_lr": alr, "critic_lr": clr,
        "seed": seed, "steps_requested": steps, "steps_run": steps, "gradient_steps": steps - 1000,
        "stopping_step": stop, "grad_death_step": stop, "critic_stopped": False, "diverged": False,
        "max_abs_preactivation": 103.0, "final_saturation_ratio": 0.9, "return_first10": -1400.0,
        "final_return": -2.0 - 3 * seed, "seconds_per_step": 0.01})


def _sb3_set(root: Path, seeds: tuple[int, ...]) -> Path:
    for alr in (0.001, 0.1):
        for s in seeds:
            # a stop near 0 in one seed and late in the others: a Student-t interval would reach below 0
            _sb3_run(root, alr, 0.001, s, (50 if s == 0 else 19_000) if alr == 0.1 else None)
    write_json(root / "sweep.json", {"runs": []})
    return root


@pytest.fixture(scope="module")
def sb3_one(tmp_path_factory) -> Path:
    return _sb3_set(tmp_path_factory.mktemp("sb3one"), (0,))


@pytest.fixture(scope="module")
def sb3_three(tmp_path_factory) -> Path:
    return _sb3_set(tmp_path_factory.mktemp("sb3three"), (0, 1, 2))


# ------------------------------------------------------------------ checks
def _drawn(make) -> Figure | None:
    with mpl.rc_context(STYLE):
        try:
            fig = make()
        except (NoData, NoFigure):
            return None
        fig.set_dpi(STYLE["savefig.dpi"])  # as saved in the report
        FigureCanvasAgg(fig)
        fig.canvas.draw()
    return fig


def _texts(fig: Figure) -> list[tuple[str, object]]:
    """(what, bbox) of every text drawn: free texts, titles, labels, legends and the tick labels in view."""
    renderer = fig.canvas.get_renderer()
    out = []
    ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks.update(id(t) for tick in axis.majorTicks + axis.minorTicks for t in (tick.label1, tick.label2))
            for tick in axis._update_ticks():  # the ticks drawn (inside the view limits)
                for label in (tick.label1, tick.label2):
                    if label.get_visible() and label.get_text() and ax.get_visible():
                        out.append((f"tick label {label.get_text()!r}", label.get_window_extent(renderer)))
    for t in fig.findobj(Text):
        if id(t) in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        out.append((t.get_text(), t.get_window_extent(renderer)))
    return out


def _check_inside(fig: Figure, name: str) -> None:
    box = fig.bbox
    for text, bb in _texts(fig):
        assert (bb.x0 >= box.x0 - 1 and bb.y0 >= box.y0 - 1 and bb.x1 <= box.x1 + 1 and bb.y1 <= box.y1 + 1), (
            f"{name}: {text!r} leaves the canvas ({bb.bounds} vs {box.bounds})")


def _check_ticks_apart(fig: Figure, name: str) -> None:
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [(t.label1.get_text(), t.label1.get_window_extent(renderer)) for t in axis._update_ticks()
                     if t.label1.get_visible() and t.label1.get_text()]
            gap = 2.0 * fig.dpi / 72  # labels closer than 2 points read as one ("1750020000")
            for i, (a, ba) in enumerate(boxes):
                for b, bb in boxes[i + 1:]:
                    assert not ba.padded(gap / 2).overlaps(bb.padded(gap / 2)), (
                        f"{name}: tick labels {a!r} and {b!r} collide")


def _titles_and_legends(fig: Figure) -> list[str]:
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    texts += [t.get_text() for lg in legends for t in lg.get_texts()]
    texts += [lg.get_title().get_text() for lg in legends]
    texts += [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    texts += [ax.get_ylabel() for ax in fig.axes]  # colorbar labels
    return [t for t in texts if t]


def _check_no_interval(fig: Figure, name: str) -> None:
    """One seed per configuration: no interval named, no band, no error bar or cap."""
    for text in _titles_and_legends(fig):
        stripped = DENIAL.sub("", text)
        assert not CLAIM.search(stripped), f"{name}: claims an interval with one seed: {text!r}"
    caption = figure_caption(fig) or ""
    assert not CLAIM.search(DENIAL.sub("", caption)), f"{name}: caption claims an interval with one seed: {caption!r}"
    for ax in fig.axes:
        assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)], f"{name}: error bars with n=1"
        bands = [c for c in ax.collections if type(c).__name__ in ("FillBetweenPolyCollection",)
                 or type(c) is PolyCollection]
        assert name.split()[-1] in SPREAD_BANDS or not bands, f"{name}: a shaded band with n=1"


def _group_figures(gd: GroupData) -> list[tuple[str, object]]:
    return [(stem, (lambda fn=fn: fn(gd))) for stem, _, _, _, fn in GROUP_FIGURES + SEED_FIGURES + PLASTICITY_FIGURES]


def _sb3_figures(root: Path) -> list[tuple[str, object]]:
    rs = load_results(root)
    runs = generic_runs(rs)
    agg = config_summary(runs, 0.05)
    return [(spec[0], spec[4]) for spec in _figure_specs(rs, runs, agg, "gradient steps")]


@pytest.mark.parametrize("which", ["one_seed", "ten_seeds"])
def test_every_ccm_figure_keeps_its_text_on_the_canvas(which, request) -> None:
    gd = request.getfixturevalue(which)
    drawn = 0
    for name, make in _group_figures(gd):
        fig = _drawn(make)
        if fig is None:
            continue
        drawn += 1
        _check_inside(fig, f"{which} {name}")
        _check_ticks_apart(fig, f"{which} {name}")
        if which == "one_seed":
            _check_no_interval(fig, name)
    assert drawn >= 12


@pytest.mark.parametrize("which", ["sb3_one", "sb3_three"])
def test_every_sb3_figure_keeps_its_text_on_the_canvas(which, request) -> None:
    root = request.getfixturevalue(which)
    drawn = 0
    for name, make in _sb3_figures(root):
        fig = _drawn(make)
        if fig is None:
            continue
        drawn += 1
        _check_inside(fig, f"{which} {name}")
        _check_ticks_apart(fig, f"{which} {name}")
        if which == "sb3_one":
            _check_no_interval(fig, name)
    assert drawn == 7


def test_the_checks_can_fail() -> None:
    """Negative controls: text off the canvas, colliding tick labels and a claimed interval are caught."""
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(3, 2))
        ax = fig.subplots()
        ax.set_title("a title far too long to fit on a figure three inches wide, cut at both ends")
        ax.errorbar([0], [1], yerr=[0.0], capsize=3)
        ax.set_xticks([17500, 20000], ["17500", "20000"])
        ax.set_xlim(17000, 20500)
        FigureCanvasAgg(fig)
        fig.canvas.draw()
    with pytest.raises(AssertionError, match="leaves the canvas"):
        _check_inside(fig, "control")
    with pytest.raises(AssertionError, match="error bars"):
        _check_no_interval(fig, "control")
    fig2 = Figure(figsize=(1.0, 2), dpi=120)
    ax2 = fig2.subplots()
    ax2.set_xticks([17500, 18500], ["17500", "18500"])
    ax2.set_xlim(17000, 20000)
    FigureCanvasAgg(fig2)
    fig2.canvas.draw()
    with pytest.raises(AssertionError, match="collide"):
        _check_ticks_apart(fig2, "control")


def test_fig4_legend_and_caption_give_the_same_count_of_zeros(one_seed) -> None:
    with mpl.rc_context(STYLE):
        fig = fig_grad_norms(one_seed)
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts() if "exactly 0" in t.get_text()]
    assert len(legend) == 1
    counts = re.findall(r"(\d+) of (\d+) (actor|critic)", legend[0])
    assert counts, legend[0]
    caption = figure_caption(fig)
    for k, n, kind in counts:  # the caption's "51 of the 80 logged actor norms"
        assert f"{k} of the {n} logged {kind} norms" in caption, (legend[0], caption)


def test_fig8_is_small_multiples_one_band_per_panel(ten_seeds) -> None:
    with mpl.rc_context(STYLE):
        fig = dict(_group_figures(ten_seeds))["fig08_preactivation_time"]()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    n_configs = len(ten_seeds.agg)
    assert len(panels) == n_configs
    assert all(len(ax.collections) == 1 for ax in panels)  # one ±std band each: no band covers another's


def test_sb3_intervals_stay_inside_possible_values(sb3_three) -> None:
    """Stopping steps >= 0 and Pendulum returns <= 0, in the table and the learning-curve bands."""
    runs = generic_runs(load_results(sb3_three))
    agg = config_summary(runs, 0.05).set_index("actor_lr")
    row = agg.loc[0.1]
    assert row["stop_n"] == 3 and row["stop_mean"] > 0
    assert row["stop_lo"] >= 0  # the plain t-interval of (50, 19000, 19000) reaches below 0
    assert (agg["return_hi"] <= 0).all() and (agg["return_lo"] <= agg["return_mean"]).all()
    fig = _drawn(dict(_sb3_figures(sb3_three))["fig_learning_curves"])
    tops = [c.get_paths()[0].vertices[:, 1].max() for ax in fig.axes for c in ax.collections]
    assert tops and max(tops) <= 0
    assert "clipped: a return is <= 0" in fig._suptitle.get_text().replace("\n", " ")


def test_sb3_page_has_no_empty_comparison_and_says_how_intervals_are_clipped(sb3_one, tmp_path) -> None:
    from gradasym.report import build_report

    html = build_report(sb3_one, out_dir=tmp_path / "report").read_text()
    assert "Comparison of result sets" not in html and "href='#comparison'" not in html
    md = (tmp_path / "report" / "tables" / "table_configurations.md").read_text()
    assert "clipped at 0" in md and "the task can give (<= 0)" in md


def test_runs_table_defines_the_seconds_of_batched_runs(tmp_path) -> None:
    """s/episode of a run trained in a batch is its share of the batch's time: marked and defined."""
    from gradasym.report.tables import table_provenance, table_runs

    def batched(spec: syn.RunSpec) -> syn.RunSpec:
        if spec.critic_lr == 0.1:
            spec.extra = {"trainer": "batched"}
        return spec

    for kind in ("single", "batched"):
        root = syn.write_sweep(tmp_path / kind, actor_lrs=(0.1,), critic_lrs=(0.01, 0.1), seeds=(0,),
                               customize=batched if kind == "batched" else None)
        runs = runs_frame(load_results(root))
        table, where = table_runs(runs, {}), table_provenance(runs)
        marked = table.frame.set_index("Run")["s/episode"]
        if kind == "batched":
            assert marked["alr0.1_clr0.1_s0"].endswith("*") and not marked["alr0.1_clr0.01_s0"].endswith("*")
            assert "share of the batch's training updates" in table.caption
            assert "1 of the runs were trained in batches" in where.caption
        else:
            assert not any(v.endswith("*") for v in marked) and "batch" not in table.caption + where.caption


def test_stopping_episode_intervals_stay_inside_the_episodes_run(tmp_path) -> None:
    """Seeds stopping at 2, 3 and 150 of 200 episodes: the t-interval (-160, 263) is clipped to [1, 200],
    shown as [lo, hi] (not "± 211") in Fig. 2's cells and Table 3, and the Fig. 6 error bar stays inside."""
    from gradasym.report.analysis import stop_cell_text
    from gradasym.report.tables import table3_stopping

    stops = {0: 2, 1: 3, 2: 150}

    def spread(spec: syn.RunSpec) -> syn.RunSpec:
        spec.stop_episode = stops[spec.seed]
        return spec

    gd = _group(syn.write_sweep(tmp_path / "s", actor_lrs=(0.1,), critic_lrs=(0.1,), seeds=(0, 1, 2),
                                customize=spread))
    row = gd.agg.iloc[0]
    assert row["stop_n"] == 3 and row["stop_mean"] - row["stop_half"] < 1  # the plain interval leaves [1, 200]
    assert row["stop_lo"] == 1 and row["stop_hi"] == 200
    assert stop_cell_text(row) == f"{row['stop_mean']:.0f} [1, 200]"
    table = table3_stopping(gd)
    assert table.frame.iloc[0]["95% CI"] == "[1, 200]" and "clipped" in table.caption
    fig = _drawn(lambda: GROUP_FIGURES[4][4](gd))  # Fig. 6: the configuration mean's horizontal error bar
    assert GROUP_FIGURES[4][0] == "fig06_rho_vs_stop"
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bars  # every seed has a positive rho: the configuration mean is drawn
    xs = np.concatenate([seg[:, 0] for c in bars for lc in c[2] for seg in lc.get_segments()])
    assert xs.min() >= 1 and xs.max() <= 200
