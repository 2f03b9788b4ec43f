"""Fig. 17 (dormant units and feature rank, actors vs critic): drawn from the plasticity columns, medians over
seeds, no interval claimed from one seed, absent for result sets recorded without the columns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import synthetic as syn
from gradasym.report.analysis import build_groups
from gradasym.report.build import _plasticity_figures
from gradasym.report.failures import Failures
from gradasym.report.figures import NoData, fig_plasticity, figure_caption, has_plasticity
from gradasym.report.load import load_results, runs_frame


def _group(tmp_path, seeds):
    root = syn.write_sweep(tmp_path / "sweep", actor_lrs=(1e-4, 1e-1), critic_lrs=(1e-3,), seeds=seeds, episodes=200)
    rs = load_results(root)
    return build_groups(rs, runs_frame(rs))[0]


def _with_columns(gd):
    t = gd.track.copy()
    rng = np.random.default_rng(0)
    n = len(t)
    t["actor_dormant_tau0.025"] = rng.uniform(0, 1, n)
    t["critic_dormant_tau0.025"] = rng.uniform(0, 0.5, n)
    t["actor_dormant_tau0.1"] = 1.0
    t["actor_effective_rank"] = rng.uniform(1, 32, n)
    t["critic_effective_rank"] = rng.uniform(1, 128, n)
    return dataclasses.replace(gd, track=t)


def _lines(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines() if len(ln.get_xdata())]


def test_fig17_draws_the_medians_over_seeds(tmp_path):
    gd = _with_columns(_group(tmp_path, (0, 1, 2)))
    assert has_plasticity(gd)
    fig = fig_plasticity(gd)
    t = gd.track
    # the actor LR 1e-4 row, left panel: actors' dormant fraction at tau = 0.025 (preferred over 0.1)
    sub = t[(t["actor_lr"] == 1e-4) & (t["critic_lr"] == 1e-3)]
    expected = sub.groupby("episode")["actor_dormant_tau0.025"].median()
    ax = fig.axes[0]
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"][0]
    np.testing.assert_allclose(solid.get_ydata(), expected.to_numpy())
    np.testing.assert_allclose(solid.get_xdata(), expected.index.to_numpy())
    assert len(_lines(fig)) == 2 * 2 * 2  # 2 actor LRs x 2 quantities x (actors, critic)
    cap = figure_caption(fig)
    assert "median over the seeds" in cap and "not a confidence interval" in cap and "τ = 0.025" in cap


def test_fig17_one_seed_claims_no_interval_and_missing_columns_give_no_figure(tmp_path):
    gd = _group(tmp_path, (42,))
    assert not has_plasticity(gd)
    with pytest.raises(NoData, match="no plasticity columns"):
        fig_plasticity(gd)
    assert _plasticity_figures([gd], tmp_path, Failures(tmp_path)) == []  # a result set recorded before them
    gd = _with_columns(gd)
    fig = fig_plasticity(gd)
    assert "One seed per configuration: no interval." in figure_caption(fig)
    assert not any(ax.collections for ax in fig.axes)  # no band drawn
    drawn = _plasticity_figures([gd], tmp_path, Failures(tmp_path))
    assert [r.name for r in drawn] == ["fig17_plasticity", "fig18_lead_times"]  # Fig. 18: the lead times
