"""Honest figures: every run drawn (zeros on log axes at a marked floor), captions naming only what is drawn,
position-based Fig. 12, fraction intervals inside [0, 1]. Checked on the artists of the matplotlib figures."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Rectangle
from matplotlib.figure import Figure
from matplotlib.text import Text

import synthetic as syn
from gradasym.report.analysis import GroupData, build_groups, curve_median, reward_at_stop_and_end
from gradasym.report.figures import (
    figure_caption, fig_grad_norms, fig_reward_stop_end, fig_rho_vs_stop, fig_saturation_heatmap,
    fig_saturation_time, fig_saturation_vs_stop, zero_floor,
)
from gradasym.report.figures import _count_labels, _overlapping
from gradasym.report.load import load_results, runs_frame

#: Stopping episodes of the paper's Table 3 for 1000-episode runs: 8 of 16 configurations stop.
STOPS_1000 = {k: (None if v is None or v > 50 else v * 10) for k, v in syn.SCALED_TABLE3.items()}


def _dead(spec: syn.RunSpec) -> syn.RunSpec:
    spec.dead_grads = spec.stop_episode is not None  # like the committed reproduction: stopped => gradient 0
    return spec


def _group(root) -> GroupData:
    rs = load_results(root)
    return build_groups(rs, runs_frame(rs))[0]


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory) -> GroupData:
    """The shape of the committed reproduction: 16 runs, seed 42, the 8 that stopped have actor gradient 0."""
    root = syn.write_sweep(tmp_path_factory.mktemp("one") / "sweep", seeds=(42,), episodes=1000, stops=STOPS_1000,
                           customize=_dead)
    return _group(root)


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory) -> GroupData:
    root = syn.write_sweep(tmp_path_factory.mktemp("three") / "sweep", seeds=(0, 1, 2), customize=_dead)
    return _group(root)


def _offsets(ax) -> np.ndarray:
    pts = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(pts) if pts else np.empty((0, 2))


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def test_zero_floor_is_a_decade_below_the_smallest_positive_value() -> None:
    assert zero_floor([0.0, 3.7e-5, 1e-2]) == pytest.approx(1e-6)
    assert zero_floor([0.0, 1e-3]) == pytest.approx(1e-4)
    assert zero_floor([0.0, np.nan]) == 1e-12


def test_fig6_draws_every_run_including_exact_zero_rho(one_seed) -> None:
    runs = one_seed.runs
    assert len(runs) == 16 and int((runs["final_rho"] == 0).sum()) == 8 and int(runs["stopped"].sum()) == 8
    fig = fig_rho_vs_stop(one_seed)
    ax = fig.axes[0]
    pts = _offsets(ax)
    assert len(pts) == 16                                   # every run is a point
    floor = zero_floor([*runs["final_rho"], 1e-8])         # below the paper's rho range too
    assert floor == pytest.approx(1e-9)
    on_floor = pts[np.isclose(pts[:, 1], floor)]
    assert len(on_floor) == 8                               # the 8 zero-rho runs, at the floor
    stopped_at = sorted(runs.loc[runs["final_rho"] == 0, "stopping_episode"])
    assert sorted(on_floor[:, 0]) == stopped_at             # ... at their stopping episodes
    assert any("ρ = 0 exactly (8 of 16 runs)" in t for t in _legend_texts(fig))
    assert any(np.isclose(line.get_ydata()[0], floor) for line in ax.get_lines())  # the floor line
    cap = figure_caption(fig)
    assert "Triangles" in cap and "8 runs whose ρ is exactly 0" in cap
    assert "Filled markers: the 8 runs" in cap and "Hollow markers: the 8 runs" in cap and "Circles: the 8 runs" in cap
    assert "Diamond" not in cap and "Diamond" not in " ".join(_legend_texts(fig))  # one seed: no means drawn


def test_fig6_caption_names_only_the_markers_drawn(tmp_path) -> None:
    stops = {(0.1, 0.1): 16, (0.1, 0.01): 18}
    root = syn.write_sweep(tmp_path / "s", actor_lrs=(0.1,), critic_lrs=(0.1, 0.01), seeds=(0, 1), stops=stops)
    gd = _group(root)
    fig = fig_rho_vs_stop(gd)
    cap = figure_caption(fig)
    assert "Hollow" not in cap and "hollow" not in fig.axes[0].get_xlabel()   # nobody failed to stop
    assert "Triangles" not in cap and "ρ = 0" not in " ".join(_legend_texts(fig))  # no zero rho
    assert "Diamonds" in cap and len(_offsets(fig.axes[0])) == 4


def test_fig6_multi_seed_zero_configurations_get_no_geometric_mean(three_seeds) -> None:
    fig = fig_rho_vs_stop(three_seeds)
    assert len(_offsets(fig.axes[0])) == 48
    diamonds = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    n_means = sum(len(c.lines[0].get_xdata()) for c in diamonds)
    runs = three_seeds.runs
    zero_cfgs = runs.loc[runs["final_rho"] == 0, ["actor_lr", "critic_lr"]].drop_duplicates()
    assert len(zero_cfgs) == 10
    assert n_means == 16 - 10                                # only configurations whose seeds all have rho > 0
    assert "10 configurations with a zero seed have no diamond" in figure_caption(fig)


def test_overlapping_groups_chains_of_markers_closer_than_a_diameter() -> None:
    disp = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0], [100.0, 0.0], [100.0, 5.9], [50.0, 50.0], [50.0, 50.0]])
    groups = sorted(sorted(g.tolist()) for g in _overlapping(disp, diameter=6.0))
    assert groups == [[0, 1, 2], [3, 4], [5, 6]]          # a chain, a vertical pair, two coinciding
    assert sorted(sorted(g.tolist()) for g in _overlapping(disp, diameter=5.0)) == [[0], [1], [2], [3], [4], [5, 6]]


def test_count_label_that_would_cover_another_moves_to_a_free_line_with_a_leader() -> None:
    fig = Figure(figsize=(4, 3), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 1)
    # two places 8 px apart vertically (markers 5 pt = 7 px wide do not overlap), the labels (~11 px) would
    xs, ys = [50, 50, 50, 50, 50], [0.5, 0.5, 0.537, 0.537, 0.537]
    crowded, places = _count_labels(fig, ax, xs, ys, marker_pt=5.0)
    assert (crowded, places) == (5, 2)
    fig.draw_without_rendering()
    labels = sorted((t for t in ax.texts), key=lambda t: t.get_text())
    assert [t.get_text() for t in labels] == ["×2", "×3"]
    assert labels[0].xyann[1] == 0 and labels[0].arrow_patch is None   # the first keeps its place
    assert labels[1].xyann[1] != 0 and labels[1].arrow_patch is not None  # the second moved, with a leader
    assert not Text.get_window_extent(labels[0]).overlaps(Text.get_window_extent(labels[1]))


@pytest.mark.parametrize("make", [fig_rho_vs_stop, fig_saturation_vs_stop])
def test_count_labels_of_crowded_runs_add_up_and_do_not_cover_each_other(three_seeds, make) -> None:
    """Runs at one place (same point, or markers overlapping) get one "×k" label: the labels add up to
    the caption's count and cover every coinciding run; neighbouring labels are moved apart instead of
    printed over each other (the ten-seed Fig. 10 had "×10×2..." in one smudge)."""
    fig = make(three_seeds)
    ax = fig.axes[0]
    fig.draw_without_rendering()
    labels = [t for t in ax.texts if t.get_text().startswith("×")]
    counts = [int(t.get_text()[1:]) for t in labels]
    m = re.search(r"×k: k runs whose markers coincide or overlap \((\d+) runs in (\d+) places?\)", figure_caption(fig))
    assert m and (sum(counts), len(counts)) == (int(m[1]), int(m[2]))
    pts = pd.DataFrame(_offsets(ax), columns=["x", "y"]).round(9)
    stacks = pts.groupby(["x", "y"]).size()
    assert sum(counts) >= stacks[stacks > 1].sum() and min(counts) >= 2 and sum(counts) <= len(pts)
    boxes = [Text.get_window_extent(t) for t in labels]          # the text, without its leader
    frame = ax.get_window_extent()
    for i, a in enumerate(boxes):
        assert frame.y0 - 1 <= a.y0 and a.y1 <= frame.y1 + 1     # inside the axes
        for b in boxes[:i]:
            assert not a.overlaps(b), (labels[i].get_text(), a, b)
    for t in labels:                                            # a moved label points at its place
        assert (t.arrow_patch is not None) == (t.xyann[1] != 0)


def test_fig4_draws_vanished_actor_gradients_at_the_floor(one_seed) -> None:
    fig = fig_grad_norms(one_seed)
    track = one_seed.track
    floor = zero_floor(pd.concat([track["actor_grad_norm"], track["critic_grad_norm"]]))
    panel = next(ax for ax in fig.axes if ax.get_title() == "actor LR = 0.1")
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in panel.get_lines()]
    assert any(np.isclose(y, floor).sum() >= 10 for y in ys if len(y) > 1)  # the actor line runs along the floor
    n_zero = int((track["actor_grad_norm"] == 0).sum())
    assert n_zero > 0
    assert any(f"({n_zero} of {len(track)} actor norms)" in t for t in _legend_texts(fig))  # the caption's count
    assert f"{n_zero} of the {len(track)} logged actor norms" in figure_caption(fig)
    assert "band" not in figure_caption(fig)                 # one seed: no interval claimed


def _norm_track(values_by_episode: dict[int, list[float]]) -> pd.DataFrame:
    rows = [{"set": "s", "group": "g", "actor_lr": 0.1, "critic_lr": 0.1, "episode": ep, "seed": seed, "x": v}
            for ep, values in values_by_episode.items() for seed, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_curve_median_counts_zeros_as_zeros_and_uses_order_statistic_bands() -> None:
    ten = [7.0, 0.0, 1e-45, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]         # unsorted on purpose
    track = _norm_track({1: ten, 2: [0.0] * 5 + [4.0, 5.0, 6.0, 7.0, 8.0], 3: [0.0, 2.0, 9.0], 4: [0.0, 8.0],
                         5: [3.0]})
    cm = curve_median(track, "x").set_index("episode")
    assert cm.loc[1, "median"] == pytest.approx(np.sqrt(3.0 * 4.0))  # geometric midpoint of the two middle seeds
    assert (cm.loc[1, "lo"], cm.loc[1, "hi"], cm.loc[1, "band"]) == (1e-45, 7.0, "ci")  # 2nd smallest/largest
    assert (cm.loc[2, "median"], cm.loc[2, "n_zero"]) == (0.0, 5)     # half the seeds at 0: the median is 0
    assert (cm.loc[3, "median"], cm.loc[3, "lo"], cm.loc[3, "hi"], cm.loc[3, "band"]) == (2.0, 0.0, 9.0, "range")
    assert cm.loc[4, "median"] == 0.0                                 # lower middle 0: midpoint 0
    assert (cm.loc[5, "median"], cm.loc[5, "lo"], cm.loc[5, "hi"], cm.loc[5, "band"]) == (3.0, 3.0, 3.0, "none")
    assert list(cm["n"]) == [10, 10, 3, 2, 1]


def test_fig4_median_is_not_pulled_to_the_floor_by_a_vanished_seed(three_seeds, tmp_path) -> None:
    """One seed of three with actor norms exactly 0: the curve is the middle seed's norm, not a mean on log10
    dragged towards the floor; the band (the range, 3 seeds) reaches the floor, and the caption says how."""
    import dataclasses
    from pathlib import Path

    from gradasym.report.figures import render_figure

    track = three_seeds.track.copy()
    cfg = (track["actor_lr"] == 1e-4) & (track["critic_lr"] == 1e-4)
    seeds = sorted(track.loc[cfg, "seed"].unique())
    track.loc[cfg & (track["seed"] == seeds[0]), "actor_grad_norm"] = 0.0
    track.loc[cfg & (track["seed"] == seeds[1]), "actor_grad_norm"] = 1e-45
    gd = dataclasses.replace(three_seeds, track=track)
    fig = fig_grad_norms(gd)
    middle = track[cfg].groupby("episode")["actor_grad_norm"].median().to_numpy()
    assert (middle > 0).all() and middle.min() == pytest.approx(1e-45)
    panel = next(ax for ax in fig.axes if ax.get_title() == "actor LR = 0.0001")
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in panel.get_lines()]
    assert any(len(y) == len(middle) and np.allclose(y, middle, rtol=1e-12, atol=0) for y in ys)
    floor = zero_floor(pd.concat([track["actor_grad_norm"], track["critic_grad_norm"]]))
    assert floor == pytest.approx(1e-46)
    bands = [c for c in panel.collections if isinstance(c, PolyCollection)]
    assert min(np.nanmin(path.vertices[:, 1]) for c in bands for path in c.get_paths()) == pytest.approx(floor)
    caption = figure_caption(fig)
    assert "median over seeds" in caption and "range over the seeds" in caption and "t-interval" not in caption
    assert "band reaching 0 cut there" in caption
    png, _, _ = render_figure(lambda: fig_grad_norms(gd), tmp_path, "fig04")
    assert Path(png).stat().st_size > 0


def test_curves_over_seeds_say_when_runs_ended_earlier(three_seeds) -> None:
    """Under early termination a configuration's runs end at different episodes: Figs. 4, 7, 8 and 11 say that
    their late episodes are over fewer seeds, and only then."""
    import dataclasses

    from gradasym.report.figures import fig_learning_curves, fig_preactivation_time

    figures = (fig_grad_norms, fig_saturation_time, fig_preactivation_time, fig_learning_curves)
    for fig in figures:
        assert "Runs end at different episodes" not in (figure_caption(fig(three_seeds)) or "")
    track, eps = three_seeds.track, three_seeds.eps
    first = sorted(track["seed"].unique())[0]
    cut = lambda df: df[~((df["actor_lr"] == 0.1) & (df["critic_lr"] == 0.1) & (df["seed"] == first)  # noqa: E731
                          & (df["episode"] > df["episode"].median()))]
    gd = dataclasses.replace(three_seeds, track=cut(track), eps=cut(eps))
    for fig in figures:
        caption = figure_caption(fig(gd))
        assert "Runs end at different episodes" in caption and "(2 to 3 per configuration)" in caption, fig.__name__
    assert figure_caption(fig_preactivation_time(gd)).startswith("Mean ± std of the tanh inputs")


def _has_bars(ax) -> bool:
    return any(isinstance(p, Rectangle) and p.get_height() != 0 for p in ax.patches)


def test_fig12_is_a_dot_plot_with_positions_equal_to_rewards(one_seed) -> None:
    fig = fig_reward_stop_end(one_seed)
    ax = fig.axes[0]
    assert not _has_bars(ax)
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]   # one seed: no caps
    per_run = reward_at_stop_and_end(one_seed.eps, one_seed.runs)
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()])
    for v in per_run["at_end"]:
        assert np.isclose(ys, v).any()
    for v in per_run.loc[per_run["stopped"], "at_stop"]:
        assert np.isclose(ys, v).any()
    assert (per_run["at_end"] < 0).all()                     # negative rewards: positions, not bar lengths
    low, high = ax.get_ylim()
    assert low < per_run["at_end"].min() and high > per_run["at_end"].max()
    cap = figure_caption(fig)
    assert "8 configurations never stopped" in cap and "no interval" in cap


def test_fig12_error_bars_only_with_several_seeds(three_seeds) -> None:
    fig = fig_reward_stop_end(three_seeds)
    assert not _has_bars(fig.axes[0])
    assert [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert "95% Student-t" in figure_caption(fig)


@pytest.fixture(scope="module")
def near_one(tmp_path_factory) -> GroupData:
    """Saturation ratios near 1 with spread across seeds: a raw t-interval would exceed 1."""
    root = syn.write_sweep(tmp_path_factory.mktemp("sat") / "sweep", actor_lrs=(0.1,), critic_lrs=(0.1,),
                           seeds=(0, 1, 2), stops={(0.1, 0.1): 16})
    for sat, seed in zip((1.0, 1.0, 0.6), (0, 1, 2)):
        run = root / "runs" / syn.run_id(0.1, 0.1, seed)
        t = pd.read_parquet(run / "tracking.parquet")
        t["saturation_ratio"] = sat
        t.to_parquet(run / "tracking.parquet")
        import json
        s = json.loads((run / "summary.json").read_text())
        s["final_saturation_ratio"] = sat
        (run / "summary.json").write_text(json.dumps(s))
    return _group(root)


def test_fraction_intervals_stay_inside_0_1(near_one) -> None:
    row = near_one.agg.iloc[0]
    assert 0.0 <= row["sat_lo"] <= row["sat_mean"] <= row["sat_hi"] <= 1.0
    vals = np.array([1.0, 1.0, 0.6])
    from gradasym.report.stats import mean_ci
    assert mean_ci(vals).hi > 1.0                            # what the old interval would have drawn
    fig = fig_saturation_time(near_one)
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert bands
    for b in bands:
        for path in b.get_paths():
            y = path.vertices[:, 1]
            assert (y >= -1e-12).all() and (y <= 1 + 1e-12).all()
    assert "logit" in figure_caption(fig)
    heat = fig_saturation_heatmap(near_one)
    text = " ".join(t.get_text() for t in heat.axes[0].texts)
    assert f"[{row['sat_lo']:.2f}, {row['sat_hi']:.2f}]" in text and "±" not in text
    sat_fig = fig_saturation_vs_stop(near_one)
    for c in sat_fig.axes[0].containers:
        if isinstance(c, ErrorbarContainer):
            for seg in c.lines[2]:
                for path in seg.get_segments():
                    assert (path[:, 1] <= 1 + 1e-12).all() and (path[:, 1] >= -1e-12).all()


def test_summary_counts_zero_rho_and_gradient_death(one_seed) -> None:
    from gradasym.report.summary import group_summary

    text = " ".join(group_summary(one_seed, 0, None))
    assert "across the runs where it is positive; in 8 of 16 runs it is exactly 0" in text
    assert "Every actor's gradient died" in text and "in 8 of 16 runs" in text
    assert "the stop came 0 episodes after the gradient died" in text  # synthetic: death at the stop episode


def _all_stop(spec: syn.RunSpec) -> syn.RunSpec:
    spec.stop_episode = spec.stop_episode or 400
    return spec


def test_fig3_caption_and_title_mention_thick_edges_only_when_drawn(one_seed, tmp_path) -> None:
    from gradasym.report.figures import fig_stopping_bubbles

    fig = fig_stopping_bubbles(one_seed)                    # 8 of 16 never stopped
    cap = figure_caption(fig)
    assert "Thick edges: the 8 configuration(s)" in cap and "(one seed)" in cap
    assert "thick edge" in fig._suptitle.get_text()
    every = _group(syn.write_sweep(tmp_path / "all", seeds=(42,), episodes=1000, stops=STOPS_1000,
                                   customize=_all_stop))
    fig = fig_stopping_bubbles(every)
    assert "Thick" not in figure_caption(fig) and "thick edge" not in fig._suptitle.get_text()


def test_fig14_caption_claims_intervals_and_hatches_only_when_drawn(one_seed, three_seeds, tmp_path) -> None:
    from gradasym.report.figures import fig_compare_stopping

    every = _group(syn.write_sweep(tmp_path / "all", seeds=(42,), episodes=1000, stops=STOPS_1000,
                                   customize=_all_stop))
    fig = fig_compare_stopping([every, every])              # one seed each, all stopped
    cap = figure_caption(fig)
    assert "One seed per set: no intervals." in cap and "Hatched" not in cap
    assert not any("not all seeds stopped" in t for t in _legend_texts(fig))
    fig = fig_compare_stopping([one_seed, three_seeds])     # censored bars, one set with seeds
    cap = figure_caption(fig)
    assert "Hatched:" in cap and "the sets with several seeds" in cap
    assert any("not all seeds stopped" in t for t in _legend_texts(fig))
