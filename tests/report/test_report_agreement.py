"""report/agreement.py: two result sets of one grid compared finding by finding."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradasym.report.agreement import agreement_markdown, differences, findings_agreement


def _runs(stops: dict[tuple[float, float], list[float | None]], zmax: float = 50.0, episodes: int = 2000,
          z_spread: float = 1.05) -> pd.DataFrame:
    """A runs table: per configuration one run per entry of its list (None: never stopped)."""
    rows = []
    for (alr, clr), values in stops.items():
        for seed, stop in enumerate(values):
            stopped = stop is not None
            rows.append({
                "actor_lr": alr, "critic_lr": clr, "seed": seed, "status": "finished",
                "stopped": stopped, "censored": not stopped, "stop_value": float(stop if stopped else episodes),
                "stopping_episode": stop, "episodes_requested": episodes,
                "episodes_run": (stop + 100) if stopped else episodes, "critic_stopped": False,
                "final_saturation_ratio": 0.99, "grad_death_episode": np.nan, "seconds_per_episode": 0.1,
                "final_rho": 1e-3, "max_abs_preactivation": zmax * z_spread ** (seed % 3 - 1),
                "reward_first10": -45000.0, "reward_last10": -44000.0,
            })
    return pd.DataFrame(rows)


EARLY = [161, 165, 170, 158, 162, 175, 160, 168, 171, 166]
NEVER = [None] * 10


def test_a_set_agrees_with_itself_and_with_a_slightly_moved_copy():
    old = _runs({(0.1, 0.1): EARLY, (1e-4, 1e-3): NEVER})
    new = _runs({(0.1, 0.1): [s + 2 for s in EARLY], (1e-4, 1e-3): NEVER})
    for other in (old, new):
        table = findings_agreement(old, other)
        assert len(table) == 2
        for check in ("same_category", "stopfrac_overlap", "new_median_in_old_ci", "old_median_in_new_ci",
                      "zmax_overlap"):
            assert table[check].tolist() == [True, True], check
        assert differences(table) == []
    row = findings_agreement(old, new).set_index(["actor_lr", "critic_lr"]).loc[(1e-4, 1e-3)]
    assert row["category_published"] == "No stopping"
    assert row["stopped_published"] == "0/10 [0.00, 0.28]"  # Wilson interval of 0 of 10
    assert row["median_stop_published"].startswith("≥2000")


def test_a_moved_median_a_new_category_and_a_different_z_are_named():
    """Negative control: findings that really differ must be reported, each by its check."""
    old = _runs({(0.1, 0.1): EARLY, (1e-3, 0.1): [700, 800, 900, 650, 720, 810, 760, 690, 880, 905]})
    new = _runs({(0.1, 0.1): [s + 200 for s in EARLY], (1e-3, 0.1): NEVER}, zmax=5000.0)
    table = findings_agreement(old, new).set_index(["actor_lr", "critic_lr"])
    early, late = table.loc[(0.1, 0.1)], table.loc[(1e-3, 0.1)]
    assert not early["new_median_in_old_ci"] and not early["old_median_in_new_ci"]
    assert not early["same_category"]  # 161-175 is Early (<300), 358-375 is not
    assert early["stopfrac_overlap"]  # all stopped in both
    assert not late["same_category"] and not late["stopfrac_overlap"]  # 10/10 stopped vs 0/10
    assert not early["zmax_overlap"]
    text = "\n".join(differences(findings_agreement(old, new)))
    assert "actor LR 0.1 / critic LR 0.1: category differs" in text
    assert "Wilson intervals do not overlap" in text
    assert "median stopping episode lies outside" in text
    assert "max |z| intervals do not overlap" in text


def test_a_configuration_missing_from_one_set_is_named_not_dropped():
    old = _runs({(0.1, 0.1): EARLY, (0.01, 0.1): EARLY})
    new = _runs({(0.1, 0.1): EARLY})
    table = findings_agreement(old, new)
    assert len(table) == 2
    assert differences(table) == ["actor LR 0.01 / critic LR 0.1: only in the published results"]
    md = agreement_markdown(table)
    assert md.count("\n| 0.") == 2 and "only in the published results" in md
