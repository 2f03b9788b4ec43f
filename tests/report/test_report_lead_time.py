"""Lead time of each instrument before the stopping episode and its correlation over runs (issue 20, item 4),
on synthetic runs whose instruments move at known episodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradasym.report.lead_time import instrument_correlations, lead_time_summary, lead_times, onset_episode


def test_onset_is_the_first_log_past_half_the_change():
    ep = np.arange(10, 110, 10, dtype=float)  # 10..100
    v = np.where(ep >= 60, 1.0, 0.0)  # a step at episode 60
    assert onset_episode(ep, v, stop=100, direction=+1) == 60
    assert math.isnan(onset_episode(ep, v, stop=100, direction=-1))  # moved the other way: no announcement
    assert math.isnan(onset_episode(ep, v, stop=50, direction=+1))  # nothing happened by the stop
    ramp = ep / 100.0
    assert onset_episode(ep, ramp, stop=100, direction=+1) == 60  # (0.6 - 0.1) >= 0.5 * (1.0 - 0.1)
    assert onset_episode(ep, ramp, stop=100, direction=+1, fraction=1.0) == 100
    with pytest.raises(ValueError, match="fraction"):
        onset_episode(ep, ramp, 100, +1, fraction=0)


def _synthetic(n_runs=12, seed=0):
    """Runs stopping at S_r; the dormant fraction jumps 200 episodes before S_r, saturation 20 before,
    the effective rank falls 100 before; one never-stopped run; rho never moves (constant)."""
    rng = np.random.default_rng(seed)
    stops = rng.integers(40, 150, n_runs).astype(float) * 10  # on the log grid
    tracks, runs = [], []
    for r, s in enumerate(stops):
        ep = np.arange(10, s + 101, 10, dtype=float)
        tracks.append(pd.DataFrame({
            "run_id": f"r{r}", "episode": ep,
            "actor_dormant_tau0.025": np.where(ep >= s - 200, 0.8, 0.1),
            "saturation_ratio": np.where(ep >= s - 20, 0.95, 0.05),
            "actor_effective_rank": np.where(ep >= s - 100, 3.0, 30.0),
            "rho": np.full(len(ep), 1e-3),
            "preact_max_abs": 2000.0 / s * ep / ep[0],  # early |z| larger in runs that stop early
        }))
        runs.append({"run_id": f"r{r}", "stopped": True, "stop_value": s})
    ep = np.arange(10, 2001, 10, dtype=float)
    tracks.append(pd.DataFrame({"run_id": "never", "episode": ep, "actor_dormant_tau0.025": 0.1,
                                "saturation_ratio": 0.05, "actor_effective_rank": 30.0, "rho": 1e-3,
                                "preact_max_abs": 3.0 * ep / ep[0]}))  # out of line with the others
    runs.append({"run_id": "never", "stopped": False, "stop_value": 2000.0})
    return pd.concat(tracks, ignore_index=True), pd.DataFrame(runs), stops


def test_lead_times_and_their_summary():
    track, runs, stops = _synthetic()
    leads = lead_times(track, runs)
    assert set(leads["run_id"]) == {f"r{i}" for i in range(len(stops))}  # the never-stopped run has no stop
    by = leads.pivot(index="run_id", columns="instrument", values="lead")
    assert (by["actor_dormant_tau0.025"] == 200).all() and (by["saturation_ratio"] == 20).all()
    assert (by["actor_effective_rank"] == 100).all() and by["rho"].isna().all()
    summary = lead_time_summary(leads).set_index("instrument")
    assert summary.loc["actor_dormant_tau0.025", "lead_median"] == 200
    assert summary.loc["actor_dormant_tau0.025", "lead_lo"] == 200  # every run agrees: a degenerate interval
    assert summary.loc["rho", "n_announced"] == 0 and summary.loc["rho", "announced"] == 0
    assert summary.loc["saturation_ratio", "n_runs"] == 12 and summary.loc["saturation_ratio", "announced"] == 1
    assert 0 < summary.loc["saturation_ratio", "announced_lo"] < 1  # Wilson interval of 12/12
    # negative control: shuffled onsets give other lead times
    shuffled = track.copy()
    shuffled["actor_dormant_tau0.025"] = shuffled.groupby("run_id")["actor_dormant_tau0.025"].transform(
        lambda s: s.iloc[::-1].to_numpy())
    assert not (lead_times(shuffled, runs).query("instrument == 'actor_dormant_tau0.025'")["lead"] == 200).all()


def test_correlations_over_runs_with_n_and_intervals():
    track, runs, stops = _synthetic(n_runs=15, seed=1)
    corr = instrument_correlations(track, runs, at_episode=10).set_index(["instrument", "runs"])
    row = corr.loc[("preact_max_abs", "stopped")]
    assert row["spearman_r"] == pytest.approx(-1.0) and row["spearman_n"] == 15  # early |z| ranks the stops
    assert row["spearman_lo"] == row["spearman_r"]  # |r| = 1: the interval is the point
    allr = corr.loc[("preact_max_abs", "all")]
    assert allr["spearman_n"] == 16 and -1 < allr["spearman_r"] < 0
    assert allr["spearman_lo"] < allr["spearman_r"] < allr["spearman_hi"]
    # an instrument that is constant early has no correlation (NaN), not a number
    assert math.isnan(corr.loc[("rho", "all"), "spearman_r"])
    late = instrument_correlations(track, runs, at_episode=1000)
    assert (late["n_stopped_before"] == int((stops < 1000).sum())).all()
