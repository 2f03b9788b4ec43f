"""Table contents from synthetic data with known stopping episodes (no figures drawn here)."""

from __future__ import annotations

import math

import pytest

import synthetic as syn
from gradasym.report import paper
from gradasym.report.analysis import build_groups, config_table
from gradasym.report.load import load_results, runs_frame
from gradasym.report.tables import (
    table3_stopping, table4_preactivation, table7_large_actor, table8_linear_hidden, table9_preact_linear,
    table_compare_stopping, table_viable, to_markdown,
)

T975_2 = 4.302652730  # t quantile for 3 seeds


def _groups(*paths):
    out = []
    for p in paths:
        rs = load_results(p)
        out += build_groups(rs, runs_frame(rs))
    return out


@pytest.fixture(scope="module")
def base_group(base_sweep):
    return _groups(base_sweep)[0]


def test_table3_numbers(base_group):
    t = table3_stopping(base_group)
    data = t.data.set_index(["actor_lr", "critic_lr"])
    assert len(data) == 16
    for key, stop in syn.SCALED_TABLE3.items():
        row = data.loc[key]
        assert row["paper_stop_episode"] == paper.TABLE3_STOP_EPISODES[key]
        if stop is None:
            assert row["stop_mean"] == 200 and row["any_censored"] and row["n_stopped"] == 0
            assert row["category"] == "No stopping"
        else:
            assert row["stop_mean"] == pytest.approx(stop)
            assert row["stop_half"] == pytest.approx(T975_2 * 2 / math.sqrt(3), rel=1e-8)
            assert row["n_stopped"] == 3 and not row["any_censored"]
    frame = t.frame.set_index(["Actor LR", "Critic LR"])
    assert frame.loc[("0.1", "0.01"), "Stop ep. (mean ± 95% CI)"] == "18 ± 5"
    assert frame.loc[("0.1", "0.01"), "95% CI"] == "[13, 23]"
    assert frame.loc[("0.0001", "0.001"), "Stop ep. (mean ± 95% CI)"] == "≥200"
    assert frame.loc[("0.1", "0.01"), "Paper stop ep."] == "176"
    # thresholds are absolute: the synthetic late stops (70, 76) are early, the rest agree
    late = [("0.0001", "0.1"), ("0.001", "0.1")]
    assert (frame.loc[late, "Same category"] == "no").all()
    assert (frame.drop(index=late)["Same category"] == "yes").all()
    assert "Runs are 200 episodes long" in t.caption


def test_table4_preactivation_ranges(base_group):
    t = table4_preactivation(base_group)
    data = t.data.set_index("actor_lr")
    assert data.loc[0.1, "preact_max"] == pytest.approx(syn.PREACT_SCALE[0.1])
    assert data.loc[0.1, "paper_max"] == 1_070_000
    assert data.loc[0.0001, "n_runs"] == 12
    assert "Normal" in t.frame["Paper gradient flow"].tolist()


def test_viable_count_and_margin(base_group):
    t, count = table_viable(base_group, margin=0.05)
    assert (count.viable, count.evaluated, count.total) == (1, 16, 16)
    viable = t.data[t.data["viable"] == True]  # noqa: E712
    assert list(zip(viable["actor_lr"], viable["critic_lr"])) == [(0.0001, 0.001)]
    _, strict = table_viable(base_group, margin=0.5)  # +60 on -200 is below a 50% margin
    assert strict.viable == 0
    assert "margin 5%" in t.caption


def test_viable_needs_every_seed(base_sweep):
    rs = load_results(base_sweep)
    runs = runs_frame(rs)
    idx = runs.index[runs["run_id"] == "alr0.0001_clr0.001_s1"]
    runs.loc[idx, "reward_last10"] = runs.loc[idx, "reward_first10"]  # one seed does not improve
    gd = build_groups(rs, runs)[0]
    assert table_viable(gd, 0.05)[1].viable == 0


def test_compare_table_differences(base_sweep, large_actor_sweep):
    groups = _groups(base_sweep, large_actor_sweep)
    t = table_compare_stopping(groups)
    data = t.data.set_index(["actor_lr", "critic_lr"])
    diff_col = [c for c in data.columns if c.startswith("diff ")][0]
    for key in [(0.1, 0.1), (0.01, 0.0001)]:
        assert data.loc[key, diff_col] == pytest.approx(3)  # conftest.LARGE_ACTOR_SHIFT
    assert math.isnan(data.loc[(0.0001, 0.0001), diff_col])  # not in the large-actor sweep
    assert t.frame.set_index(["Actor LR", "Critic LR"]).loc[("0.1", "0.1")].iloc[-1] == "+3"


def test_table7_uses_baseline_and_large_actor(base_sweep, large_actor_sweep):
    groups = _groups(base_sweep, large_actor_sweep)
    t = table7_large_actor(groups)
    row = t.frame.set_index(["Actor LR", "Critic LR"]).loc[("0.1", "0.1")]
    assert row["Small actor (measured)"] == "16 ± 5"
    assert row["Large actor (measured)"].startswith("19")
    assert row["Δ measured"] == "+3"
    assert (row["Paper Small actor"], row["Paper Large actor"]) == (161, 161)
    assert "Measured columns are empty" not in t.caption


def test_tables_8_9_show_paper_values_without_linear_hidden(base_sweep):
    groups = _groups(base_sweep)
    t8 = table8_linear_hidden(groups)
    assert "linear-hidden" in t8.caption
    assert t8.frame.set_index(["Actor LR", "Critic LR"]).loc[("0.1", "0.1"), "Paper Linear hidden"] == 301
    t9 = table9_preact_linear(groups)
    row = t9.frame.set_index("Actor LR").loc["0.1"]
    assert row["Paper Linear"] == "±1.83e+07" and row["Linear max |z| (largest run)"] == "—"


def test_config_table_excludes_failed_unstopped_runs(partial_sweep):
    rs = load_results(partial_sweep)
    agg = config_table(runs_frame(rs)).set_index(["group", "actor_lr", "critic_lr"])
    failed_cfg = agg.loc[("", 0.1, 0.001)]   # s0 failed before stopping, s1 running and stopped at 22
    assert failed_cfg["stop_n"] == 1 and failed_cfg["stop_mean"] == 22 and failed_cfg["n_failed"] == 1
    running = agg.loc[("", 0.0001, 0.001)]   # s0 finished (200, never), s1 running at 50
    assert running["all_censored"] and running["partial"] and running["category"] == "Not stopped yet"


def test_markdown_table_escapes_pipes():
    import pandas as pd

    md = to_markdown(pd.DataFrame({"a|b": ["x|y"], "c": [1]}))
    assert md.splitlines()[0] == "| a\\|b | c |" and md.splitlines()[2] == "| x\\|y | 1 |"


def test_runs_shorter_than_the_papers_stop_are_not_compared() -> None:
    from gradasym.report.analysis import comparable_with_paper

    assert not comparable_with_paper(696, 400)  # the paper's late stop cannot happen in 400 episodes
    assert comparable_with_paper(233, 400)
    assert comparable_with_paper(2000, 2000)  # "no stop" at the paper's length
    assert not comparable_with_paper(2000, 1000)
