"""The report's Plasticity section and remedies table (issue 20, item 4): lead times, correlations of early
values with the stopping episode, the critic's plasticity per configuration and the un-freezing of actors,
checked number by number on synthetic run folders whose instruments move at known episodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import synthetic as syn
from gradasym.report.analysis import build_groups
from gradasym.report.load import load_results, runs_frame
from gradasym.report.plasticity import freeze_history, median_cell, plasticity_by_config, plasticity_first_last
from gradasym.report.plasticity_tables import (
    correlation_episode, table_critic_plasticity, table_instrument_correlations, table_lead_times, table_remedies,
)

#: Stopping episodes of the six seeds of the configuration that stops (not on the 10-episode log grid).
STOPS = {0: 151, 1: 155, 2: 158, 3: 162, 4: 167, 5: 180}
PATIENCE = 40  # early termination PATIENCE episodes after the stop: the run ends at S + 41


def _customize(spec: syn.RunSpec) -> syn.RunSpec:
    if spec.actor_lr == 0.1:
        spec.stop_episode = STOPS[spec.seed]
        spec.early_stop_patience = PATIENCE
        spec.critic_frozen_end = spec.seed == 0
    return spec


@pytest.fixture(scope="module")
def plasticity_sweep(tmp_path_factory):
    """Actor LR 0.1 stops at STOPS (six seeds, early termination), actor LR 1e-4 never stops (300 episodes)."""
    return syn.write_sweep(tmp_path_factory.mktemp("plast") / "sweep", actor_lrs=(0.1, 0.0001), critic_lrs=(0.1,),
                           seeds=tuple(STOPS), stops={(0.1, 0.1): 150, (0.0001, 0.1): None}, episodes=300,
                           plasticity=True, customize=_customize)


@pytest.fixture(scope="module")
def group(plasticity_sweep):
    rs = load_results(plasticity_sweep)
    (gd,) = build_groups(rs, runs_frame(rs))
    return gd


def test_lead_time_table_equals_the_hand_computed_lead_times(group):
    table = table_lead_times(group)
    data = table.data.set_index("instrument")
    # dormant steps at S - 60, effective rank at S - 30; the onset is the first log (every 10 episodes) at
    # or after that: lead = S - ceil((S - 60) / 10) * 10
    #   S:       151 155 158 162 167 180
    #   dormant:  51  55  58  52  57  60  -> sorted 51 52 55 57 58 60: median X_(3) = 55, 95% CI [X_(1), X_(6)]
    #   rank:     21  25  28  22  27  30  -> median 25, CI [21, 30]
    d = data.loc["actor_dormant_tau0.025"]
    assert (d["n_runs"], d["n_announced"], d["lead_median"], d["lead_lo"], d["lead_hi"]) == (6, 6, 55, 51, 60)
    r = data.loc["actor_effective_rank"]
    assert (r["n_runs"], r["n_announced"], r["lead_median"], r["lead_lo"], r["lead_hi"]) == (6, 6, 25, 21, 30)
    assert d["announced_lo"] == pytest.approx(6 / (6 + 1.959964 ** 2), abs=1e-6)  # Wilson lower end of 6/6
    shown = table.frame.set_index("Instrument").loc["τ-dormant fraction of the actors (τ = 0.025)"]
    assert shown["Announced [95% Wilson]"] == "6/6 = 1.00 [0.61, 1.00]"
    assert (shown["Median lead (episodes)"], shown["Median 95% CI"], shown["Range (episodes)"]) == (
        "55", "[51, 60]", "51 … 60")
    assert "half of its change" in table.caption and "the 6 runs whose actors all stopped" in table.caption


def test_the_summary_line_names_the_earliest_and_the_most_reliable_instrument():
    from gradasym.report.plasticity_tables import lead_time_summary_line

    summary = pd.DataFrame({"label": ["a", "b", "c"], "n_runs": 10, "n_announced": [10, 6, 0],
                            "announced": [1.0, 0.6, 0.0], "lead_median": [20.0, 90.0, np.nan]})
    line = lead_time_summary_line(summary)
    assert "earliest announcement of the freeze by b (median lead 90 episodes over the 6 stopped runs" in line
    assert "most reliable: a (10 of 10 stopped runs)" in line
    none = lead_time_summary_line(summary.assign(n_announced=0, announced=0.0, lead_median=np.nan))
    assert "no instrument announced the freeze in any of the 10 stopped runs" in none


def test_lead_time_table_negative_control_an_instrument_that_never_moves(group):
    import dataclasses

    flat = dataclasses.replace(group, track=group.track.assign(**{"actor_dormant_tau0.025": 0.3}))
    data = table_lead_times(flat).data.set_index("instrument")
    assert data.loc["actor_dormant_tau0.025", "n_announced"] == 0 and data.loc["actor_dormant_tau0.025", "n_runs"] == 6
    row = table_lead_times(flat).frame.set_index("Instrument").loc["τ-dormant fraction of the actors (τ = 0.025)"]
    assert row["Announced [95% Wilson]"].startswith("0/6 = 0.00") and row["Median lead (episodes)"] == "—"


def test_correlation_table_equals_numpy_on_the_early_values(group):
    at = correlation_episode(group)
    assert at == 15  # 5 % of the 300 episodes requested; the value is read at the first log at or after it (20)
    table = table_instrument_correlations(group)
    data = table.data.set_index(["instrument", "runs"])
    runs = group.runs.set_index("run_id")
    early = group.track[group.track["episode"] == 20].set_index("run_id")
    z = np.log10(early["preact_max_abs"])
    stop = runs.loc[z.index, "stop_value"]
    stopped = runs.loc[z.index, "stopped"].astype(bool)
    row = data.loc[("preact_max_abs", "stopped")]
    assert row["pearson_n"] == 6 and row["pearson_r"] == pytest.approx(np.corrcoef(z[stopped], stop[stopped])[0, 1])
    assert row["spearman_r"] == pytest.approx(-1.0)  # early |z| = scale * (0.05 + 20 / S) falls with S
    allr = data.loc[("preact_max_abs", "all")]
    assert allr["pearson_n"] == 12 and allr["pearson_r"] == pytest.approx(np.corrcoef(z, stop)[0, 1])
    assert math.isnan(data.loc[("actor_dormant_tau0.025", "all"), "spearman_r"])  # 0.1 everywhere at episode 20
    assert "undefined" in table.frame.iloc[4]["Pearson r [95% CI]"]
    late = table_instrument_correlations(group, at_episode=160).data
    assert (late["n_stopped_before"] == 3).all()  # 151, 155, 158 stopped before episode 160


def test_critic_plasticity_table_equals_the_hand_computed_medians(group):
    table = table_critic_plasticity(group)
    data = table.data.set_index("actor_lr")
    s = data.loc[0.1]
    # critic dormant = 0.05 + episode / 1000; the runs end at S + 41 = 192 196 199 203 208 221, so their last
    # logs are 190 190 190 200 200 220: 0.24 0.24 0.24 0.25 0.25 0.27 -> median X_(3) = 0.24, CI [0.24, 0.27]
    assert s["critic_dormant_tau0.025_first_median"] == pytest.approx(0.06)
    assert (s["critic_dormant_tau0.025_last_median"], s["critic_dormant_tau0.025_last_lo"],
            s["critic_dormant_tau0.025_last_hi"]) == pytest.approx((0.24, 0.24, 0.27))
    assert s["critic_dormant_tau0.025_last_band"] == "ci"
    # critic effective rank = 100 - episode / 10: 81 81 81 80 80 78 -> median X_(3) = 80 (ascending: 78 80 80 81 ..)
    assert s["critic_effective_rank_last_median"] == pytest.approx(80.0)
    assert (s["actor_dormant_tau0.025_first_median"], s["actor_dormant_tau0.025_last_median"]) == (0.1, 0.7)
    assert (s["actor_effective_rank_first_median"], s["actor_effective_rank_last_median"]) == (30.0, 5.0)
    assert (s["critic_moved_end_k"], s["critic_moved_end_n"]) == (5, 6)  # seed 0's last update left it unchanged
    assert (s["critic_grad_end_k"], s["critic_ever_froze_k"]) == (6, 0)
    never = data.loc[0.0001]  # ran all 300 episodes: last log 300
    assert never["critic_dormant_tau0.025_last_median"] == pytest.approx(0.35)
    assert never["actor_dormant_tau0.025_last_median"] == pytest.approx(0.1)
    row = table.frame.set_index("Actor LR").loc["0.1"]
    assert row["critic τ-dormant, last log"] == "0.240 [0.240, 0.270]"
    assert row["Critic weights moved at the end"] == "5/6"


def test_plasticity_by_config_one_seed_gives_the_value_alone_and_few_seeds_the_range():
    per_run = pd.DataFrame({"set": "s", "group": "", "actor_lr": 0.1, "critic_lr": [0.1, 0.01, 0.01, 0.01],
                            "run_id": list("abcd"), "seed": [0, 0, 1, 2]})
    for c in ("critic_dormant_tau0.025", "actor_dormant_tau0.025", "critic_effective_rank", "actor_effective_rank"):
        per_run[f"{c}_first"] = [0.5, 0.3, 0.1, 0.2]
        per_run[f"{c}_last"] = np.nan
    per_run["critic_moved_end"] = [1.0, 1.0, 0.0, np.nan]
    per_run["critic_grad_end"] = per_run["critic_ever_froze"] = 1.0
    agg = plasticity_by_config(per_run).set_index("critic_lr")
    one, three = agg.loc[0.1], agg.loc[0.01]
    v = "critic_dormant_tau0.025_first"
    assert (one[f"{v}_median"], one[f"{v}_band"]) == (0.5, "none")
    assert (three[f"{v}_median"], three[f"{v}_lo"], three[f"{v}_hi"], three[f"{v}_band"]) == (0.2, 0.1, 0.3, "range")
    assert (three["critic_moved_end_k"], three["critic_moved_end_n"]) == (1, 2)  # unknown for one run
    assert median_cell(0.5, 0.5, 0.5, "none") == "0.5"
    assert median_cell(0.2, 0.1, 0.3, "range") == "0.2 (range 0.1–0.3)"
    assert median_cell(math.nan, 0.1, 0.3, "none") == "—"
    assert plasticity_first_last(pd.DataFrame(), per_run).empty  # no tracking: no rows, no error


def test_freeze_history_finds_the_unfreezing_and_only_after_all_froze():
    ep = pd.DataFrame({"episode": range(1, 9), "actors_frozen": [0, 3, 1, 4, 4, 2, 4, 4]})
    h = freeze_history(ep, 4)
    assert h == {"all_frozen_first": 4.0, "frozen_end": 4.0, "unfrozen_at": 6.0, "all_frozen_end": 1.0}
    # negative control: partial freezing before all froze (episode 3) is not an un-freezing
    never = freeze_history(ep.assign(actors_frozen=[0, 3, 1, 4, 4, 4, 4, 4]), 4)
    assert never["all_frozen_first"] == 4 and math.isnan(never["unfrozen_at"])
    none = freeze_history(ep.assign(actors_frozen=[0, 1, 2, 3, 3, 3, 3, 3]), 4)
    assert math.isnan(none["all_frozen_first"]) and none["frozen_end"] == 3 and math.isnan(none["unfrozen_at"])
    assert all(math.isnan(v) for v in freeze_history(ep.drop(columns="actors_frozen"), 4).values())


@pytest.fixture(scope="module")
def remedy_groups(tmp_path_factory):
    """A baseline and a 'redo' set at one seed, 400 episodes, no early termination: under 'redo' the actors
    of actor LR 0.1 un-freeze at episode 250; those of 0.01 stay frozen in both."""
    root = tmp_path_factory.mktemp("remedies")
    stops = {(0.1, 0.1): 150, (0.01, 0.1): 200}
    base = syn.write_sweep(root / "base", actor_lrs=(0.1, 0.01), critic_lrs=(0.1,), seeds=(42,), stops=stops,
                           episodes=400)

    def unfreeze(spec):
        if spec.actor_lr == 0.1:
            spec.unfreeze_episode = 250
        return spec
    redo = syn.write_sweep(root / "redo", actor_lrs=(0.1, 0.01), critic_lrs=(0.1,), seeds=(42,), stops=stops,
                           episodes=400, preset="redo", customize=unfreeze)
    groups = []
    for p in (base, redo):
        rs = load_results(p)
        groups += build_groups(rs, runs_frame(rs))
    return base, redo, groups


def test_remedies_table_one_run_unfreezes_the_other_does_not(remedy_groups):
    _, _, groups = remedy_groups
    table = table_remedies(groups)
    f = table.frame.set_index(["Result set", "Actor LR"])
    # per-agent stops are S, S-3, ..., S-12 (5 agents): every actor frozen from S on
    assert f.loc[("base", "0.1"), "All actors frozen first at"] == "150"
    assert f.loc[("base", "0.1"), "Un-froze after all froze"] == "no"
    assert f.loc[("base", "0.1"), "Actors frozen at the end"] == "5/5"
    assert f.loc[("redo [redo]", "0.1"), "Un-froze after all froze"] == "yes, at 250"
    assert f.loc[("redo [redo]", "0.1"), "Actors frozen at the end"] == "0/5"
    assert f.loc[("redo [redo]", "0.01"), "Un-froze after all froze"] == "no"  # the negative control
    assert f.loc[("redo [redo]", "0.01"), "All actors frozen first at"] == "200"
    d = table.data.set_index(["result_set", "actor_lr"])
    runs = groups[1].runs.set_index("actor_lr")
    assert d.loc[("redo [redo]", 0.1), "reward_last10"] == runs.loc[0.1, "reward_last10"]
    eps = groups[1].eps[groups[1].eps["actor_lr"] == 0.1].sort_values("episode")
    assert d.loc[("redo [redo]", 0.1), "reward_last10"] == pytest.approx(eps["reward"].iloc[-40:].mean())
    assert d.loc[("redo [redo]", 0.1), "final_saturation_ratio"] == runs.loc[0.1, "final_saturation_ratio"]
    assert list(table.frame["Actor LR"]) == ["0.01", "0.01", "0.1", "0.1"]  # per configuration, then set


def test_report_with_and_without_plasticity_columns(remedy_groups, plasticity_sweep, tmp_path):
    from gradasym.report import build_report

    base, redo, _ = remedy_groups
    html = build_report(base, compare=[redo], out_dir=tmp_path / "old").read_text()
    # recorded without the plasticity columns: the report builds, has no Plasticity section and says why
    assert "id='plasticity'" not in html and "no Plasticity section" in html and "no plasticity columns" in html
    assert not list((tmp_path / "old" / "tables").glob("table_plasticity*"))
    assert (tmp_path / "old" / "tables" / "table_remedies_unfreezing.csv").is_file()
    assert "Which remedies un-freeze the actors" in (tmp_path / "old" / "report.md").read_text()
    assert not (tmp_path / "old" / "errors.log").exists()

    out = tmp_path / "new"
    page = build_report(plasticity_sweep, out_dir=out).read_text()
    assert "id='plasticity'" in page and "href='#plasticity'" in page and "no Plasticity section" not in page
    for name in ("table_plasticity_lead_times", "table_plasticity_correlations", "table_plasticity_critic"):
        assert (out / "tables" / f"{name}.csv").is_file() and (out / "tables" / f"{name}.md").is_file()
        assert f"id='{name}'" in page
    assert (out / "figures" / "fig18_lead_times.png").is_file() and (out / "figures" / "fig17_plasticity.png").is_file()
    assert page.index("id='table_plasticity_lead_times'") < page.index("id='fig18_lead_times'") < page.index(
        "id='figures'")  # in the Plasticity section, not among the other figures
    assert "table_remedies_unfreezing" not in page  # nothing compared
    assert "Plasticity: earliest announcement of the freeze by" in page  # the summary's line
    assert not (out / "errors.log").exists()



def test_fig18_draws_every_run_that_announced_and_counts_the_others(group):
    import dataclasses

    from gradasym.report.figures import fig_lead_times, figure_caption

    flat = dataclasses.replace(group, track=group.track.assign(**{"actor_dormant_tau0.025": 0.3}))
    fig = fig_lead_times(flat)
    ax = fig.axes[0]
    points = [c.get_offsets() for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert len(points) == 5  # one row per instrument
    xs = sorted(float(x) for x in points[3][:, 0])  # the actors' effective rank (fourth instrument)
    assert xs == [21, 22, 25, 27, 28, 30]
    assert len(points[2]) == 0  # the flat dormant fraction announced nothing: no point ...
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("τ-dormant" in t and "0/6 announced, 6 did not" in t for t in labels)  # ... but counted
    assert any("effective rank" in t and "6/6 announced" in t and "did not" not in t for t in labels)
    assert "not drawn" in figure_caption(fig) and "order-statistic" in figure_caption(fig)
