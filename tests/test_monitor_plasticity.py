"""ActorCriticMonitor's plasticity instruments (docs/monitor.md, "Plasticity"): the columns equal the
metrics of gradasym.metrics computed per agent by hand, the initial weights survive a state_dict
round trip, and nothing is computed with plasticity=False."""

from __future__ import annotations

import math

import pytest
import torch

from gradasym.metrics import distance_from_init, dormant_fraction, effective_rank, param_norm, stable_rank
from gradasym.monitor import ActorCriticMonitor

N = 3


def _inputs(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    h0 = r(10, N, 5).relu()
    h0[:, 1, :2] = 0.0  # actor 1: two of five units of layer 0 never fire
    h1 = r(10, N, 4).relu()
    return dict(
        actor_grads={"l0.weight": r(N, 4, 5), "l0.bias": r(N, 5), "l1.weight": r(N, 5, 4), "l1.bias": r(N, 4),
                     "l2.weight": r(N, 4, 2), "l2.bias": r(N, 2)},
        critic_grads={"l0.weight": r(6, 8), "l0.bias": r(6), "l1.weight": r(1, 6), "l1.bias": r(1)},
        actor_params={"l0.weight": r(N, 4, 5), "l0.bias": r(N, 5), "l1.weight": r(N, 5, 4), "l1.bias": r(N, 4),
                      "l2.weight": r(N, 4, 2), "l2.bias": r(N, 2)},
        critic_params={"l0.weight": r(6, 8), "l0.bias": r(6), "l1.weight": r(1, 6), "l1.bias": r(1)},
        preact=r(10, N, 2),
        actor_hidden=[h0, h1],
        critic_hidden=[r(30, 6).relu()],
    )


def test_columns_equal_the_metrics_per_agent():
    mon = ActorCriticMonitor(n_agents=N)
    first = _inputs(0)
    mon.observe_params(first["actor_params"], first["critic_params"])
    inp = _inputs(1)
    mon.observe_update(5, **inp)
    row, agents = mon.log_row(), mon.agent_rows()
    h0, h1 = (h.transpose(0, 1) for h in inp["actor_hidden"])  # (N, B, H)
    for i in range(N):
        for tau in (0.0, 0.025, 0.1):
            per_unit = (dormant_fraction(h0[i], tau) * 5 + dormant_fraction(h1[i], tau) * 4) / 9
            assert agents[i][f"dormant_tau{tau:g}"] == pytest.approx(per_unit.item(), abs=1e-15)
        assert agents[i]["effective_rank"] == pytest.approx(effective_rank(h1[i]).item(), rel=1e-12)
        assert agents[i]["stable_rank"] == stable_rank(h1[i]).item()
        ps = [v[i] for v in inp["actor_params"].values()]
        ps0 = [v[i] for v in first["actor_params"].values()]
        assert agents[i]["param_norm"] == pytest.approx(param_norm(ps).item(), rel=1e-12)
        assert agents[i]["dist_init"] == pytest.approx(distance_from_init(ps, ps0).item(), rel=1e-12)
    assert agents[1]["dormant_tau0"] >= 2 / 9  # the silent units are seen
    # the tracking row: means over the actors, per layer too
    assert row["actor_dormant_tau0_l0"] == pytest.approx(dormant_fraction(h0, 0.0).mean().item(), abs=1e-15)
    assert row["actor_effective_rank"] == pytest.approx(effective_rank(h1).mean().item(), rel=1e-12)
    w1 = [inp["actor_params"]["l1.weight"], inp["actor_params"]["l1.bias"]]
    assert row["actor_param_norm_l1"] == pytest.approx(param_norm(w1, lead=1).mean().item(), rel=1e-12)
    # the critic: one network, the same instruments
    ch = inp["critic_hidden"][0]
    assert row["critic_dormant_tau0.1"] == pytest.approx(dormant_fraction(ch, 0.1).item(), abs=1e-15)
    assert row["critic_stable_rank"] == stable_rank(ch).item()
    cps, cps0 = list(inp["critic_params"].values()), list(first["critic_params"].values())
    assert row["critic_param_norm"] == pytest.approx(param_norm(cps).item(), rel=1e-12)
    assert row["critic_dist_init"] == pytest.approx(distance_from_init(cps, cps0).item(), rel=1e-12)


def test_initial_weights_are_the_first_seen_and_survive_a_state_dict_round_trip():
    mon = ActorCriticMonitor(n_agents=N)
    mon.observe_update(1, **_inputs(0))  # no observe_params: the first update's parameters are the reference
    state = mon.state_dict()
    resumed = ActorCriticMonitor(n_agents=N)
    resumed.load_state_dict(state)
    for m in (mon, resumed):
        m.observe_update(2, **_inputs(1))
    a, b = mon.log_row(), resumed.log_row()
    assert a["actor_dist_init"] > 0 and a["critic_dist_init"] > 0
    assert {k: v for k, v in a.items()} == {k: v for k, v in b.items()}
    # a state saved before the instruments existed: distances NaN, everything else as before
    old = {k: v for k, v in state.items() if k != "plasticity"}
    legacy = ActorCriticMonitor(n_agents=N)
    legacy.load_state_dict(old)
    legacy.observe_update(2, **_inputs(1))
    row = legacy.log_row()
    assert math.isnan(row["actor_dist_init"]) and math.isnan(row["critic_dist_init"])
    assert row["actor_param_norm"] == a["actor_param_norm"]


def test_plasticity_off_adds_nothing_and_bad_settings_are_refused():
    on, off = ActorCriticMonitor(n_agents=N), ActorCriticMonitor(n_agents=N, plasticity=False)
    for m in (on, off):
        m.observe_update(1, **_inputs(0))
    r_on, r_off = on.log_row(), off.log_row()
    assert set(r_off) < set(r_on) and not any("dormant" in k or "rank" in k for k in r_off)
    assert all(r_off[k] == r_on[k] or (r_off[k] != r_off[k]) for k in r_off)  # the other columns unchanged
    with pytest.raises(ValueError, match="dormant_taus"):
        ActorCriticMonitor(n_agents=N, dormant_taus=[-0.1])
    with pytest.raises(ValueError, match="rank_delta"):
        ActorCriticMonitor(n_agents=N, rank_delta=1.0)


def test_custom_taus_name_the_columns_and_missing_inputs_give_nan():
    mon = ActorCriticMonitor(n_agents=N, dormant_taus=[0.5])
    inp = _inputs(0)
    mon.observe_update(1, **inp)
    assert "actor_dormant_tau0.5_l1" in mon.log_row() and "actor_dormant_tau0_l0" not in mon.log_row()
    # an update without hidden activations or parameters (e.g. delayed actors): same columns, NaN
    mon.observe_update(2, critic_grads=inp["critic_grads"], critic_params=inp["critic_params"])
    row = mon.log_row()
    assert math.isnan(row["actor_dormant_tau0.5_l1"]) and math.isnan(row["actor_param_norm"])
    assert not math.isnan(row["critic_param_norm"])


def test_single_actor_and_non_finite_features():
    mon = ActorCriticMonitor(n_agents=None)
    g = torch.Generator().manual_seed(3)
    h = torch.randn(8, 4, generator=g).relu()
    h[0, 0] = float("nan")  # a diverged network: ranks NaN, no SVD failure
    mon.observe_update(1, actor_params={"l0.weight": torch.ones(2, 4)}, actor_hidden=[h],
                       critic_hidden=[torch.randn(8, 3, generator=g)])
    row = mon.log_row()
    assert math.isnan(row["actor_effective_rank"]) and not math.isnan(row["critic_effective_rank"])
    assert row["actor_param_norm"] == pytest.approx(math.sqrt(8))
    assert mon.agent_rows()[0]["param_norm"] == pytest.approx(math.sqrt(8))
