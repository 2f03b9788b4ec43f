"""Tests for gradasym.monitor (hand-computed expectations on tiny tensors)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from gradasym.monitor import (
    ActorCriticMonitor,
    HiddenActivationHook,
    OutputPreactHook,
    collect_grads,
    collect_params,
    group_layers,
    register_preact_hook,
    saturation_bound,
    selected_parameters,
)
from reference import through_torch_save

T = torch.tensor


def _same(a, b) -> bool:
    """Equality that treats NaN == NaN (for row comparisons)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _rows_equal(r1: dict, r2: dict) -> bool:
    return r1.keys() == r2.keys() and all(_same(r1[k], r2[k]) for k in r1)


# ----------------------------------------------------------------------------- norms


def _two_agent_grads():
    # agent 0: layer l0 = [3, 4, 0] -> 25, layer l1 = 0; agent 1: l0 = 0, l1 = [5, 12] -> 169
    actor = {
        "l0": {"weight": T([[[3.0], [4.0]], [[0.0], [0.0]]]), "bias": T([[0.0], [0.0]])},
        "l1.weight": T([[[0.0]], [[5.0]]]),
        "l1.bias": T([[0.0], [12.0]]),
    }
    critic = {
        "a.weight": T([[1.0, 2.0], [2.0, 0.0]]),  # 9
        "a.bias": T([0.0, 0.0]),
        "b.weight": T([[4.0]]),  # 16
        "b.bias": T([2.0]),  # 4
    }
    return actor, critic


def test_group_layers_formats():
    a, _ = _two_agent_grads()
    groups = group_layers(a)
    assert [name for name, _ in groups] == ["l0", "l1"]
    assert [len(ts) for _, ts in groups] == [2, 2]
    assert [n for n, _ in group_layers({"net.0.weight": T(1.0), "net.0.bias": T(1.0), "net.2.weight": T(1.0)})] == [
        "net.0",
        "net.2",
    ]
    assert [n for n, _ in group_layers([T(1.0), {"w": T(1.0), "b": T(2.0)}])] == ["0", "1"]
    assert [n for n, _ in group_layers({"w0": T(1.0), "b0": T(1.0)}, layer_of=lambda k: k[1:])] == ["0"]


def test_gradient_norms_and_rho_hand_computed():
    a, c = _two_agent_grads()
    mon = ActorCriticMonitor(n_agents=2)
    mon.observe_update(7, a, c, None, None)
    row = mon.log_row()
    assert row["episode"] == 7
    assert row["actor_grad_norm"] == pytest.approx(math.sqrt((25 + 169) / 2))
    assert row["actor_grad_norm_l0"] == pytest.approx(math.sqrt(25 / 2))
    assert row["actor_grad_norm_l1"] == pytest.approx(math.sqrt(169 / 2))
    assert row["critic_grad_norm"] == pytest.approx(math.sqrt(29))
    assert row["critic_grad_norm_l0"] == pytest.approx(3.0)
    assert row["critic_grad_norm_l1"] == pytest.approx(math.sqrt(20))
    assert row["rho"] == pytest.approx(math.sqrt(97) / math.sqrt(29))
    assert "actor_grad_norm_l2" not in row and "critic_grad_norm_l2" not in row
    agents = mon.agent_rows(7)
    assert [r["agent"] for r in agents] == [0, 1]
    assert [r["grad_norm"] for r in agents] == pytest.approx([5.0, 13.0])
    assert all(type(v) in (int, float) for v in row.values())


def test_norms_survive_tiny_and_huge_gradients():
    # float32 sum of squares would underflow to 0 / overflow to inf here
    mon = ActorCriticMonitor(n_agents=2)
    a = {"w": torch.full((2, 100), 1e-30)}
    c = {"w": torch.full((100,), 1e25)}
    mon.observe_update(1, a, c, None, None)
    row = mon.log_row()
    assert row["actor_grad_norm"] == pytest.approx(1e-29, rel=1e-5, abs=0)
    assert row["critic_grad_norm"] == pytest.approx(1e26, rel=1e-5, abs=0)
    assert row["rho"] == pytest.approx(1e-55, rel=1e-5, abs=0)
    assert mon.agent_rows()[0]["grad_norm"] == pytest.approx(1e-29, rel=1e-5, abs=0)


def test_rho_edge_cases():
    mon = ActorCriticMonitor(n_agents=None)
    mon.observe_update(1, {"w": T([1.0])}, {"w": T([0.0])}, None, None)
    assert mon.log_row()["rho"] == math.inf
    mon.observe_update(2, {"w": T([0.0])}, {"w": T([0.0])}, None, None)
    assert math.isnan(mon.log_row()["rho"])
    mon.observe_update(3, {"w": T([1.0])}, None, None, None)
    row = mon.log_row()
    assert math.isnan(row["rho"]) and math.isnan(row["critic_grad_norm"])


def test_single_actor_norms():
    mon = ActorCriticMonitor()  # n_agents=None: plain tensors, no agent dim
    mon.observe_update(1, {"fc.weight": T([[3.0, 0.0]]), "fc.bias": T([4.0])}, {"q.weight": T([[0.5]])}, None, None)
    row = mon.log_row()
    assert row["actor_grad_norm"] == pytest.approx(5.0)
    assert row["rho"] == pytest.approx(10.0)
    assert [r["grad_norm"] for r in mon.agent_rows()] == pytest.approx([5.0])


def test_wrong_agent_dim_raises():
    mon = ActorCriticMonitor(n_agents=3)
    with pytest.raises(ValueError):
        mon.observe_update(1, {"w": torch.zeros(2, 4)}, None, None, None)
    with pytest.raises(ValueError):  # shapes are checked even when the statistics are deferred
        mon.observe_update(1, {"w": torch.zeros(3, 4)}, None, None, None, preact=torch.zeros(5, 2, 3), log=False)
    with pytest.raises(ValueError):
        mon.observe_update(1, None, None, None, None, actor_hidden=[torch.zeros(5, 2, 3)], log=False)
    mon.observe_update(1, None, None, None, None, preact=torch.zeros(5, 3, 2), critic_hidden=[torch.zeros(5, 2, 3)])


# ----------------------------------------------------------------------------- pre-activations


# z[b, agent, dim]; saturated under tanh/0.9 (|z| > 1.4722): 2, -3, 1.5, 5, -10
Z = T(
    [
        [[0.0, 2.0], [-3.0, 1.0]],
        [[1.5, -1.4], [5.0, -10.0]],
    ]
)


def test_preact_stats_hand_computed():
    mon = ActorCriticMonitor(n_agents=2)
    mon.observe_update(10, None, None, None, None, preact=Z)
    row = mon.log_row()
    vals = [0.0, 2.0, -3.0, 1.0, 1.5, -1.4, 5.0, -10.0]
    assert row["preact_mean"] == pytest.approx(-4.9 / 8)
    assert row["preact_std"] == pytest.approx(statistics.pstdev(vals))
    assert row["preact_min"] == -10.0 and row["preact_max"] == 5.0 and row["preact_max_abs"] == 10.0
    assert row["saturation_ratio"] == pytest.approx(5 / 8)
    assert row["saturation_dim0"] == pytest.approx(3 / 4)  # 0, -3, 1.5, 5
    assert row["saturation_dim1"] == pytest.approx(2 / 4)  # 2, 1, -1.4, -10
    assert "saturation_dim2" not in row
    agents = mon.agent_rows()
    assert [r["saturation_ratio"] for r in agents] == pytest.approx([2 / 4, 3 / 4])
    assert [r["preact_max_abs"] for r in agents] == pytest.approx([2.0, 10.0])
    assert mon.max_abs_preactivation == 10.0
    assert mon.last_saturation_ratio == pytest.approx(5 / 8)


@pytest.mark.parametrize(
    "squash, expected",
    [("tanh", 5 / 8), ("softsign", 1 / 8), ("scaled-sigmoid", 3 / 8), ("identity", 7 / 8)],
)
def test_saturation_per_squash(squash, expected):
    mon = ActorCriticMonitor(n_agents=2, squash=squash)
    mon.observe_update(1, None, None, None, None, preact=Z)
    assert mon.log_row()["saturation_ratio"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "squash, fn",
    [
        ("tanh", torch.tanh),
        ("softsign", lambda z: z / (1 + z.abs())),
        ("scaled-sigmoid", lambda z: 2 * torch.sigmoid(z) - 1),
        ("identity", lambda z: z),
    ],
)
def test_saturation_bound_matches_squash(squash, fn):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, dtype=torch.float64, generator=g) * 10
    for t in (0.5, 0.9, 0.99):
        b = saturation_bound(squash, t)
        assert torch.equal(z.abs() > b, fn(z).abs() > t)


def test_invalid_squash_and_threshold():
    with pytest.raises(ValueError):
        ActorCriticMonitor(squash="relu")
    with pytest.raises(ValueError):
        ActorCriticMonitor(saturation_threshold=1.0)


def test_single_actor_preact_any_leading_shape():
    mon = ActorCriticMonitor()
    mon.observe_update(1, None, None, None, None, preact=T([[[0.0, 3.0]], [[2.0, 0.1]]]))  # (2, 1, 2)
    row = mon.log_row()
    assert row["saturation_ratio"] == pytest.approx(0.5)
    assert row["saturation_dim0"] == pytest.approx(0.5) and row["saturation_dim1"] == pytest.approx(0.5)


def test_max_abs_preactivation_is_running_max_even_without_logging():
    mon = ActorCriticMonitor(n_agents=1)
    assert math.isnan(mon.max_abs_preactivation)
    mon.observe_update(1, None, None, None, None, preact=T([[[1.0, -7.0]]]), log=False)
    mon.observe_update(2, None, None, None, None, preact=T([[[2.0, 0.0]]]), log=False)
    assert mon.max_abs_preactivation == 7.0
    assert mon.last_saturation_ratio == pytest.approx(0.5)  # of the last update
    mon.observe_update(3, None, None, None, None, preact=None)
    assert mon.last_saturation_ratio == pytest.approx(0.5)  # last update *with* a preact
    assert math.isnan(mon.log_row()["saturation_ratio"])  # but the row of update 3 has none
    assert "saturation_dim1" in mon.log_row()  # columns stay stable


# ----------------------------------------------------------------------------- hidden activations


def test_hidden_stats_dead_relu():
    # actor hidden (B=3, N=2, H=2): agent 0 unit 0 never > 0 (dead, includes a negative
    # value as a pre-ReLU hook would see), agent 0 unit 1 and agent 1 both units alive
    ah = T(
        [
            [[0.0, 1.0], [2.0, 0.0]],
            [[-1.0, 0.0], [0.0, 3.0]],
            [[0.0, 0.0], [0.0, 0.0]],
        ]
    )
    ch = T([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, -5.0, 4.0]])  # units 0 and 2 dead -> 0.5
    mon = ActorCriticMonitor(n_agents=2)
    mon.observe_update(1, None, None, None, None, actor_hidden=[ah, ah * 0], critic_hidden={"h0": ch})
    row = mon.log_row()
    assert row["actor_dead_relu_l0"] == pytest.approx(0.25)  # (1/2 + 0/2) / 2
    assert row["actor_hidden_mean_l0"] == pytest.approx(5.0 / 12)
    assert row["actor_dead_relu_l1"] == pytest.approx(1.0)
    assert row["actor_hidden_mean_l1"] == pytest.approx(0.0)
    assert row["critic_dead_relu_l0"] == pytest.approx(0.5)
    assert row["critic_hidden_mean_l0"] == pytest.approx(2.0 / 8)
    assert "critic_dead_relu_l1" not in row


# ----------------------------------------------------------------------------- freeze detection


def _params(vals):
    """Three agents, two tensors each, agent i's values from vals[i]."""
    v = torch.as_tensor(vals, dtype=torch.float32)
    return {"l0.weight": v[:, None, None].repeat(1, 2, 2).clone(), "l0.bias": v[:, None].repeat(1, 2).clone()}


def test_freeze_detection_sequence():
    mon = ActorCriticMonitor(n_agents=3)
    seq = [
        (1, [0, 0, 0]),  # first call: snapshot only
        (2, [0, 1, 1]),  # agent 0 unchanged -> stop 2
        (3, [5, 2, 2]),  # agent 0 moves again: stop stays 2
        (4, [6, 2, 3]),  # agent 1 unchanged -> stop 4
        (5, [7, 3, 3]),  # agent 2 unchanged -> stop 5 -> all stopped at max = 5
        (6, [8, 4, 4]),  # everyone moves: nothing cleared
    ]
    seen = {}
    for step, vals in seq:
        mon.observe_update(step, None, None, _params(vals), None)
        seen[step] = (mon.actor_stop_episode, mon.all_stopped_episode, mon.frozen_now, mon.n_stopped)
    assert seen[1] == ([None, None, None], None, [False, False, False], 0)
    assert seen[2] == ([2, None, None], None, [True, False, False], 1)
    assert seen[3] == ([2, None, None], None, [False, False, False], 1)
    assert seen[4] == ([2, 4, None], None, [False, True, False], 2)
    assert seen[5] == ([2, 4, 5], 5, [False, False, True], 3)
    assert seen[6] == ([2, 4, 5], 5, [False, False, False], 3)
    assert mon.log_row()["actors_stopped"] == 3
    assert not mon.all_frozen_now


def test_first_call_never_stops_and_all_frozen_now():
    mon = ActorCriticMonitor(n_agents=3)
    p = _params([1, 2, 3])
    mon.observe_update(1, None, None, p, None)
    assert mon.actor_stop_episode == [None, None, None] and not mon.all_frozen_now
    mon.observe_update(2, None, None, p, None)
    assert mon.actor_stop_episode == [2, 2, 2] and mon.all_stopped_episode == 2
    assert mon.all_frozen_now and mon.n_frozen_now == 3


def test_snapshot_is_a_copy_in_place_updates_detected():
    # the caller passes the live parameter tensors, updated in place by the optimiser
    mon = ActorCriticMonitor(n_agents=3)
    p = _params([1, 2, 3])
    mon.observe_update(1, None, None, p, None)
    with torch.no_grad():
        p["l0.bias"][1, 0] += 1.0  # only agent 1, one element
    mon.observe_update(2, None, None, p, None)
    assert mon.actor_stop_episode == [2, None, 2]


def test_freeze_tolerance():
    exact = ActorCriticMonitor(n_agents=3)
    tol = ActorCriticMonitor(n_agents=3, freeze_tolerance=1e-3)
    for mon in (exact, tol):
        mon.observe_update(1, None, None, _params([0.0, 0.0, 0.0]), None)
        mon.observe_update(2, None, None, _params([1e-4, 2e-3, 0.0]), None)
    assert exact.actor_stop_episode == [None, None, 2]
    assert tol.actor_stop_episode == [2, None, 2]
    tol.observe_update(3, None, None, _params([8e-4, 0.0, 0.0]), None)  # agent 0: 7e-4 from step 2
    assert tol.frozen_now == [True, False, True]


def test_nan_parameters_count_as_changed():
    mon = ActorCriticMonitor(n_agents=3)
    p = _params([1.0, float("nan"), 3.0])
    mon.observe_update(1, None, None, p, None)
    mon.observe_update(2, None, None, p, None)
    assert mon.actor_stop_episode == [2, None, 2]  # torch.equal semantics: NaN != NaN


def test_none_actor_means_not_updated():
    # delayed actor updates: pass None and the next comparison uses the last snapshot
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(1, None, None, _params([0, 0, 0]), None)
    mon.observe_update(2, None, None, None, None)
    assert mon.actor_stop_episode == [None, None, None]
    mon.observe_update(3, None, None, _params([1, 0, 1]), None)
    assert mon.actor_stop_episode == [None, 3, None]


def test_structure_change_raises():
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(1, None, None, _params([0, 0, 0]), None)
    with pytest.raises(ValueError):
        mon.observe_update(2, None, None, {"w": torch.zeros(3, 5)}, None)


def test_critic_freeze():
    mon = ActorCriticMonitor(n_agents=None)
    c = {"q.weight": torch.ones(4, 3), "q.bias": torch.zeros(4)}
    mon.observe_update(1, None, None, None, c)
    assert mon.critic_stop_episode is None and not mon.critic_frozen_now
    c2 = {"q.weight": torch.ones(4, 3), "q.bias": torch.tensor([0.0, 0.0, 0.0, 1.0])}
    mon.observe_update(2, None, None, None, c2)
    assert mon.critic_stop_episode is None and not mon.critic_frozen_now
    mon.observe_update(3, None, None, None, c2)
    assert mon.critic_stop_episode == 3 and mon.critic_frozen_now
    mon.observe_update(4, None, None, None, c)
    assert mon.critic_stop_episode == 3 and not mon.critic_frozen_now
    mon.observe_update(5, None, None, None, c)  # frozen again: the first stop is kept
    assert mon.critic_stop_episode == 3 and mon.critic_frozen_now
    # tolerance applies to the critic too
    tol = ActorCriticMonitor(freeze_tolerance=0.5)
    tol.observe_update(1, None, None, None, c)
    tol.observe_update(2, None, None, None, {"q.weight": torch.ones(4, 3) + 0.1, "q.bias": torch.zeros(4)})
    assert tol.critic_stop_episode == 2
    # always compared with the previous update (not with an older snapshot): slow drift stays frozen
    tol.observe_update(3, None, None, None, {"q.weight": torch.ones(4, 3) + 0.5, "q.bias": torch.zeros(4)})
    assert tol.critic_frozen_now
    tol.observe_update(4, None, None, None, {"q.weight": torch.ones(4, 3) + 0.9, "q.bias": torch.zeros(4)})
    assert tol.critic_frozen_now
    tol.observe_update(5, None, None, None, {"q.weight": torch.ones(4, 3) + 1.5, "q.bias": torch.zeros(4)})
    assert not tol.critic_frozen_now and tol.critic_stop_episode == 2


def test_single_actor_freeze():
    mon = ActorCriticMonitor()
    w = torch.ones(2, 2)
    mon.observe_update(1, None, None, {"w": w}, None)
    mon.observe_update(2, None, None, {"w": w + 1}, None)
    mon.observe_update(3, None, None, {"w": w + 1}, None)
    assert mon.actor_stop_episode == [3] and mon.all_stopped_episode == 3 and mon.all_frozen_now


# ----------------------------------------------------------------------------- gradient death


def _grads(norms):
    """Per-agent gradient with the given norms (two tensors, the norm split 3:4)."""
    n = torch.as_tensor(norms, dtype=torch.float64)
    return {"l0.weight": (0.6 * n)[:, None], "l0.bias": (0.8 * n)[:, None]}


def test_grad_death_drop_rise_drop():
    mon = ActorCriticMonitor(n_agents=2, grad_death_threshold=1e-12)
    history = {}
    for step, norms in enumerate([[1.0, 1.0], [0.0, 1.0], [1e-13, 1.0], [1.0, 1.0], [0.0, 1e-3], [1e-20, 0.0]], 1):
        mon.observe_update(step, _grads(norms), None, None, None, log=False)
        history[step] = mon.grad_death_episode
    assert history == {
        1: [None, None],
        2: [2, None],
        3: [2, None],  # stays below: still from 2
        4: [None, None],  # rose above: reset
        5: [5, None],  # dies again: the final run starts at 5
        6: [5, 6],
    }


def test_grad_death_threshold_zero_means_exactly_zero():
    mon = ActorCriticMonitor(n_agents=2, grad_death_threshold=0.0)
    mon.observe_update(1, _grads([1e-30, 0.0]), None, None, None)
    assert mon.grad_death_episode == [None, 1]


# ----------------------------------------------------------------------------- lazy logging


def _full_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(
        actor_grads={"l0.weight": r(3, 4, 5), "l0.bias": r(3, 5), "l1.weight": r(3, 5, 2), "l1.bias": r(3, 2)},
        critic_grads={"l0.weight": r(6, 8), "l0.bias": r(6), "l1.weight": r(1, 6), "l1.bias": r(1)},
        actor_params={"l0.weight": r(3, 4, 5), "l0.bias": r(3, 5), "l1.weight": r(3, 5, 2), "l1.bias": r(3, 2)},
        critic_params={"l0.weight": r(6, 8), "l0.bias": r(6), "l1.weight": r(1, 6), "l1.bias": r(1)},
        preact=r(10, 3, 2) * 3,
        actor_hidden=[r(10, 3, 5).relu()],
        critic_hidden=[r(30, 6).relu()],
    )


def test_log_false_then_log_row_equals_eager():
    lazy, eager = ActorCriticMonitor(n_agents=3), ActorCriticMonitor(n_agents=3)
    for step in range(1, 4):
        inp = _full_inputs(step)
        lazy.observe_update(step, **inp, log=False)
        eager.observe_update(step, **inp, log=True)
    assert _rows_equal(lazy.log_row(), eager.log_row())
    assert lazy.agent_rows() == eager.agent_rows()


def test_log_row_columns():
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(10, **_full_inputs(0))
    row = mon.log_row(10)
    expected = {
        "episode", "actor_grad_norm", "critic_grad_norm", "rho",
        "actor_grad_norm_l0", "actor_grad_norm_l1", "critic_grad_norm_l0", "critic_grad_norm_l1",
        "preact_mean", "preact_std", "preact_min", "preact_max", "preact_max_abs",
        "saturation_ratio", "saturation_dim0", "saturation_dim1",
        "dead_output_frac", "squash_grad_mean", "dead_output_dim0", "dead_output_dim1",
        "actor_dead_relu_l0", "actor_hidden_mean_l0", "critic_dead_relu_l0", "critic_hidden_mean_l0",
        "actors_stopped", "actors_diverged", "critic_diverged",
    }  # fmt: skip
    # the plasticity instruments (docs/monitor.md, "Plasticity"): one hidden layer, two weight layers each
    for net in ("actor", "critic"):
        for tag in ("tau0", "tau0.025", "tau0.1"):
            expected |= {f"{net}_dormant_{tag}", f"{net}_dormant_{tag}_l0"}
        expected |= {f"{net}_effective_rank", f"{net}_stable_rank"}
        for name in ("param_norm", "dist_init"):
            expected |= {f"{net}_{name}", f"{net}_{name}_l0", f"{net}_{name}_l1"}
    assert set(row) == expected
    ints = ("episode", "actors_stopped", "actors_diverged", "critic_diverged")
    assert all(type(row[k]) is int for k in ints)
    assert all(type(v) is float for k, v in row.items() if k not in ints)
    agent_cols = {"episode", "agent", "grad_norm", "saturation_ratio", "preact_max_abs", "dead_output_frac",
                  "squash_grad_mean", "diverged", "dormant_tau0", "dormant_tau0.025", "dormant_tau0.1",
                  "effective_rank", "stable_rank", "param_norm", "dist_init"}  # fmt: skip
    assert all(set(r) == agent_cols for r in mon.agent_rows())


# ----------------------------------------------------------------------------- state dict


def test_state_dict_round_trip_continues_identically():
    def inputs(step):
        inp = _full_inputs(step)
        if step >= 3:  # agent 1 frozen, agent 2's gradient dead from step 3
            inp["actor_params"] = _full_inputs(2)["actor_params"]
            inp["actor_params"]["l0.weight"][0] += step
            inp["actor_params"]["l0.weight"][2] += step
            inp["actor_grads"]["l0.weight"][2] = 0
            inp["actor_grads"]["l0.bias"][2] = 0
            inp["actor_grads"]["l1.weight"][2] = 0
            inp["actor_grads"]["l1.bias"][2] = 0
        return inp

    a = ActorCriticMonitor(n_agents=3, freeze_tolerance=1e-9, squash="softsign", saturation_threshold=0.6)
    for step in range(1, 5):
        a.observe_update(step, **inputs(step), log=step % 2 == 0)
    b = ActorCriticMonitor(n_agents=3)  # the stored config is restored
    b.load_state_dict(through_torch_save(a.state_dict()))  # plain data: safe-loadable
    assert b.squash == "softsign" and b.freeze_tolerance == 1e-9
    assert _rows_equal(a.log_row(), b.log_row())
    for step in range(5, 8):
        a.observe_update(step, **inputs(step))
        b.observe_update(step, **inputs(step))
        assert _rows_equal(a.log_row(), b.log_row())
        assert a.agent_rows() == b.agent_rows()
    for attr in (
        "actor_stop_episode", "grad_death_episode", "all_stopped_episode", "critic_stop_episode",
        "frozen_now", "max_abs_preactivation", "last_saturation_ratio", "n_updates",
    ):  # fmt: skip
        assert getattr(a, attr) == getattr(b, attr), attr
    # step 3's params equal step 2's for agent 1 (step 2 used the same generator seed)
    assert a.actor_stop_episode == [None, 3, None] and a.grad_death_episode == [None, None, 3]
    assert a.summary() == b.summary()


def test_load_state_dict_rejects_other_n_agents():
    a = ActorCriticMonitor(n_agents=3)
    with pytest.raises(ValueError):
        ActorCriticMonitor(n_agents=2).load_state_dict(a.state_dict())


# ----------------------------------------------------------------------------- nn.Module helpers


def _actor():
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2), nn.Tanh())


def _critic():
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))


def test_hooks_capture_preact_and_hidden():
    torch.manual_seed(0)
    actor = _actor()
    pre = register_preact_hook(actor)
    hid = HiddenActivationHook(actor)
    x = torch.randn(4, 3)
    actor(x)
    assert torch.allclose(pre.value, actor[:5](x))
    assert len(hid.values) == 2 and hid.values[0].shape == (4, 16) and hid.values[1].shape == (4, 8)
    assert torch.equal(hid.values[1], actor[:4](x))
    # a Linear is hooked on its output
    lin = register_preact_hook(actor[4])
    actor(x)
    assert torch.allclose(lin.value, pre.value)
    # training_only ignores no-grad forwards
    tr = register_preact_hook(actor, training_only=True)
    actor(x)
    before = tr.value
    with torch.no_grad():
        actor(torch.randn(7, 3))
    assert tr.value is before and pre.value.shape == (7, 2)
    pre.remove()
    actor(x)
    assert pre.value.shape == (7, 2)  # removed: no longer updated


def test_collect_grads_and_params():
    torch.manual_seed(0)
    critic = _critic()
    critic(torch.randn(6, 5)).pow(2).mean().backward()
    g = collect_grads(critic)
    assert list(g) == ["0", "2"] and set(g["0"]) == {"weight", "bias"}
    assert torch.equal(g["0"]["weight"], critic[0].weight.grad)
    assert g["0"]["weight"] is not critic[0].weight.grad  # a clone
    p = collect_params(critic)
    assert p["2"]["bias"].data_ptr() == critic[2].bias.data_ptr()  # a reference
    critic[2].bias.grad = None
    assert torch.equal(collect_grads(critic)["2"]["bias"], torch.zeros(1))
    only = collect_grads(critic, params=[critic[2].weight])
    assert list(only) == ["2"] and list(only["2"]) == ["weight"]


def test_real_modules_end_to_end():
    torch.manual_seed(0)
    actor, critic = _actor(), _critic()
    pre = register_preact_hook(actor, training_only=True)
    hid = HiddenActivationHook(actor, training_only=True)
    chid = HiddenActivationHook(critic, training_only=True)
    a_opt = torch.optim.SGD(actor.parameters(), lr=0.0)  # actor never moves -> frozen
    c_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    mon = ActorCriticMonitor(n_agents=None)
    for step in range(1, 6):
        s = torch.randn(32, 3)
        target = torch.randn(32, 1)
        with torch.no_grad():
            a = actor(s)  # acting-like forward, ignored by training_only hooks
        c_opt.zero_grad()
        critic_loss = (critic(torch.cat([s, a], 1)) - target).pow(2).mean()
        critic_loss.backward()
        critic_grads, critic_hidden = collect_grads(critic), chid.values
        c_opt.step()
        a_opt.zero_grad()
        actor_loss = -critic(torch.cat([s, actor(s)], 1)).mean()
        actor_loss.backward()  # also adds to the critic's .grad: collected before
        actor_grads = collect_grads(actor)
        a_opt.step()
        mon.observe_update(
            step, actor_grads, critic_grads, collect_params(actor), collect_params(critic),
            preact=pre.value, actor_hidden=hid.values, critic_hidden=critic_hidden,
        )  # fmt: skip
        row = mon.log_row()
        own_actor = math.sqrt(sum(float(g.pow(2).sum()) for layer in actor_grads.values() for g in layer.values()))
        assert row["actor_grad_norm"] == pytest.approx(own_actor, rel=1e-6)
        assert row["actor_grad_norm"] > 0 and row["critic_grad_norm"] > 0 and row["rho"] > 0
        assert pre.value.shape == (32, 2)
        with torch.no_grad():
            z = actor[:5](s)
        assert row["preact_max_abs"] == pytest.approx(float(z.abs().max()))
    assert mon.actor_stop_episode == [2] and mon.all_stopped_episode == 2 and mon.all_frozen_now
    assert mon.critic_stop_episode is None and not mon.critic_frozen_now
    assert mon.grad_death_episode == [None]
    assert set(k for k in row if k.startswith("actor_dead_relu")) == {"actor_dead_relu_l0", "actor_dead_relu_l1"}
    assert "critic_dead_relu_l0" in row and "critic_grad_norm_l1" in row and "actor_grad_norm_l2" in row


def test_collected_critic_grads_exclude_actor_loss():
    torch.manual_seed(1)
    actor, critic = _actor(), _critic()
    s = torch.randn(8, 3)
    critic.zero_grad()
    critic(torch.cat([s, actor(s).detach()], 1)).pow(2).mean().backward()
    own = collect_grads(critic)
    (-critic(torch.cat([s, actor(s)], 1)).mean()).backward()  # pollutes critic .grad
    assert not torch.equal(own["0"]["weight"], critic[0].weight.grad)
    mon = ActorCriticMonitor()
    mon.observe_update(1, collect_grads(actor), own, None, None)
    expect = math.sqrt(sum(float(g.pow(2).sum()) for layer in own.values() for g in layer.values()))
    assert mon.log_row()["critic_grad_norm"] == pytest.approx(expect, rel=1e-6)


def test_observe_params_gives_the_first_update_a_reference():
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_params(_params([0, 0, 0]), {"w": torch.ones(2)})
    assert mon.n_updates == 0 and mon.actor_stop_episode == [None, None, None]
    mon.observe_update(1, None, None, _params([0, 1, 0]), {"w": torch.ones(2)})
    assert mon.actor_stop_episode == [1, None, 1] and mon.critic_stop_episode == 1
    # re-baselining never sets a stop episode
    mon.observe_params(_params([5, 5, 5]))
    mon.observe_update(2, None, None, _params([6, 5, 6]), None)
    assert mon.actor_stop_episode == [1, 2, 1]


def test_bad_call_changes_nothing_and_nan_preact_ignored_in_running_max():
    mon = ActorCriticMonitor(n_agents=2)
    mon.observe_update(1, None, None, None, None, preact=T([[[1.0], [2.0]]]))
    with pytest.raises(ValueError):
        mon.observe_update(2, None, None, None, None, preact=torch.zeros(4, 3, 1))
    assert mon.n_updates == 1 and mon.last_step == 1
    mon.observe_update(3, None, None, None, None, preact=T([[[float("nan")], [5.0]]]))
    assert mon.max_abs_preactivation == 5.0
    assert math.isnan(mon.log_row()["preact_max_abs"])  # the row shows the NaN


# ----------------------------------------------------------------------------- divergence (NaN / inf)

INF, NAN = float("inf"), float("nan")


def test_nan_inf_gradients_are_diverged_not_dead():
    # a NaN norm is not < threshold and an inf one is not 0: today's comparisons already say
    # "alive"; divergence makes it explicit, per actor, with the first step
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(1, _grads([1.0, 1.0, 1.0]), None, None, None)
    mon.observe_update(2, _grads([1.0, NAN, 1.0]), None, None, None)
    mon.observe_update(3, _grads([0.0, NAN, INF]), None, None, None)
    mon.observe_update(4, _grads([0.0, 0.0, 0.0]), None, None, None)  # diverged actors never "die"
    assert mon.actor_diverged_episode == [None, 2, 3]
    assert mon.grad_death_episode == [3, None, None]
    row = mon.log_row()
    assert row["actors_diverged"] == 2 and row["critic_diverged"] == 0
    assert [r["diverged"] for r in mon.agent_rows()] == [0, 1, 1]
    s = mon.summary()
    assert s["diverged"] is True and s["diverged_step"] == 2 and s["actor_diverged_step"] == 2
    assert s["critic_diverged_step"] is None and s["per_agent_diverged_step"] == [None, 2, 3]


def test_infinite_parameters_that_stay_put_are_diverged_not_stopped():
    # inf == inf: without the divergence rule an actor stuck at inf would count as frozen
    p = _params([1.0, INF, 3.0])
    assert torch.equal(p["l0.weight"][1], p["l0.weight"][1].clone())
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(1, None, None, p, None)
    mon.observe_update(2, None, None, _params([1.0, INF, 3.0]), None)
    assert mon.actor_stop_episode == [2, None, 2] and mon.frozen_now == [True, False, True]
    assert mon.actor_diverged_episode == [None, 1, None]
    assert mon.all_stopped_episode is None and mon.summary()["diverged_step"] == 1
    # NaN parameters: the same (and they also compare unequal)
    nan = ActorCriticMonitor(n_agents=3)
    for step in (1, 2):
        nan.observe_update(step, None, None, _params([1.0, 2.0, NAN]), None)
    assert nan.actor_stop_episode == [2, 2, None] and nan.actor_diverged_episode == [None, None, 1]


def test_critic_divergence_by_gradient_or_parameters():
    c = {"q.weight": torch.ones(2, 2), "q.bias": torch.zeros(2)}
    by_grad = ActorCriticMonitor()
    by_grad.observe_update(1, None, c, None, c)
    by_grad.observe_update(2, None, {"q.weight": torch.full((2, 2), NAN), "q.bias": torch.zeros(2)}, None, c)
    assert by_grad.critic_diverged_episode == 2
    assert by_grad.critic_stop_episode is None and not by_grad.critic_frozen_now  # unchanged but diverged
    s = by_grad.summary()
    assert s["critic_stopped"] is False and s["diverged"] is True and s["diverged_step"] == 2
    assert s["actor_diverged_step"] is None and by_grad.log_row()["critic_diverged"] == 1
    by_param = ActorCriticMonitor()
    bad = {"q.weight": torch.full((2, 2), -INF), "q.bias": torch.zeros(2)}
    for step in (1, 2, 3):
        by_param.observe_update(step, None, None, None, bad)
    assert by_param.critic_diverged_episode == 1 and by_param.critic_stop_episode is None


def test_adam_overflow_is_diverged_not_stopped():
    # a float32 gradient whose square overflows: Adam's second moment becomes inf, every later
    # step is m / inf = 0 and the weights never move again, with finite weights and gradients
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mon = ActorCriticMonitor(n_agents=None)
    mon.observe_params(collect_params(net))
    for step in range(1, 6):
        opt.zero_grad()
        net(torch.randn(4, 3)).sum().backward()
        if step == 2:
            for p in net.parameters():
                p.grad.mul_(1e25)  # finite in float32, its square is not
        before = [p.detach().clone() for p in net.parameters()]
        opt.step()
        moved = any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
        assert moved == (step < 2)  # Adam's step is exactly 0 from the overflow on
        mon.observe_update(step, collect_grads(net), None, collect_params(net), None)
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert mon.actor_diverged_episode == [2]
    assert mon.actor_stop_episode == [None] and mon.frozen_now == [False]
    assert mon.grad_death_episode == [None]


def test_large_finite_gradients_are_not_diverged():
    mon = ActorCriticMonitor(n_agents=2)
    g32 = {"w": torch.tensor([[1e18, 3.0], [1e15, 1e15]])}  # squares fit in float32 (< 3.4e38)
    g64 = {"w": torch.tensor([[1e25, 1.0], [1.0, 1.0]], dtype=torch.float64)}  # fits in float64
    mon.observe_update(1, g32, g64 | {}, None, None)
    mon.observe_update(2, g64, g32, None, None)
    assert mon.actor_diverged_episode == [None, None] and mon.critic_diverged_episode is None
    assert mon.summary()["diverged"] is False


def test_divergence_survives_state_dict():
    mon = ActorCriticMonitor(n_agents=3)
    mon.observe_update(4, _grads([1.0, NAN, 1.0]), {"c": torch.tensor([INF])}, None, None)
    other = ActorCriticMonitor(n_agents=3)
    other.load_state_dict(through_torch_save(mon.state_dict()))
    assert other.divergence_summary() == mon.divergence_summary()
    assert other.actor_diverged_episode == [None, 4, None] and other.critic_diverged_episode == 4
    old = mon.state_dict()
    del old["diverged"], old["critic_diverged"]  # a checkpoint from before divergence detection
    other.load_state_dict(old)
    assert other.divergence_summary()["diverged"] is False


# ----------------------------------------------------------------------------- dead outputs / squash derivative


def test_dead_outputs_use_the_networks_dtype():
    # 1 - tanh(z)^2 is exactly 0 in float32 for |z| = 10 or 12, never in float64
    vals = [0.0, 10.0, -12.0, 0.5]
    d05 = 1 - math.tanh(0.5) ** 2
    for dtype, dead, mean in ((torch.float32, 0.5, (1 + d05) / 4), (torch.float64, 0.0, None)):
        mon = ActorCriticMonitor()
        mon.observe_update(1, None, None, None, None, preact=torch.tensor([vals], dtype=dtype))
        row = mon.log_row()
        assert row["dead_output_frac"] == dead, dtype
        assert row["saturation_ratio"] == 0.5  # 10 and -12 both saturated in either dtype
        if mean is not None:
            assert row["squash_grad_mean"] == pytest.approx(mean, rel=1e-6)
        else:
            assert row["squash_grad_mean"] > (1 + d05) / 4  # the float64 derivatives at 10, 12 are > 0


@pytest.mark.parametrize(
    "squash, z, dead, mean",
    [
        ("softsign", [0.0, 1.0, 3.0, -3.0], 0.0, (1 + 0.25 + 1 / 16 + 1 / 16) / 4),
        # float32 sigmoid(20) rounds to 1 (derivative 0); sigmoid(-20) = 2e-9 does not (autograd's view)
        ("scaled-sigmoid", [0.0, 20.0, -20.0, 0.0], 0.25, (0.5 + 0.0 + 2 * 2.0611536e-9 + 0.5) / 4),
        ("identity", [0.0, 1e30, -5.0, 2.0], 0.0, 1.0),
    ],
)
def test_dead_outputs_other_squashes(squash, z, dead, mean):
    mon = ActorCriticMonitor(squash=squash)
    mon.observe_update(1, None, None, None, None, preact=torch.tensor([z]))
    row = mon.log_row()
    assert row["dead_output_frac"] == dead and row["squash_grad_mean"] == pytest.approx(mean, rel=1e-5)


def test_dead_outputs_per_dim_and_agent():
    # Z (float32): dead (|z| > 9.01) only the -10 of agent 1, dim 1; saturated but alive: 2, -3, 1.5, 5
    mon = ActorCriticMonitor(n_agents=2)
    mon.observe_update(1, None, None, None, None, preact=Z, log=False)
    row = mon.log_row()
    assert row["dead_output_frac"] == 1 / 8 and row["saturation_ratio"] == 5 / 8
    assert row["dead_output_dim0"] == 0.0 and row["dead_output_dim1"] == 1 / 4
    expect = [1 - math.tanh(v) ** 2 for v in (0.0, 2.0, -3.0, 1.0, 1.5, -1.4, 5.0, -10.0)]
    assert row["squash_grad_mean"] == pytest.approx(statistics.mean(expect), rel=1e-6)
    agents = mon.agent_rows()
    assert [r["dead_output_frac"] for r in agents] == [0.0, 1 / 4]
    per_agent = [statistics.mean(expect[0:2] + expect[4:6]), statistics.mean(expect[2:4] + expect[6:8])]
    assert [r["squash_grad_mean"] for r in agents] == pytest.approx(per_agent, rel=1e-6)
    # a later update without pre-activations keeps the per-dimension columns (NaN)
    mon.observe_update(2, None, None, None, None)
    row = mon.log_row()
    assert math.isnan(row["dead_output_dim1"]) and math.isnan(row["squash_grad_mean"])


def test_ccm_madrl_run_writes_the_new_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    from gradasym.config import load_config
    from gradasym.io import read_json
    from gradasym.algos.ccm_madrl.runner import run_experiment

    cfg = load_config(overrides={
        "env.n_agents": 4, "env.k_channel": 2, "env.n_units": 2, "agent.batch_size": 8,
        "agent.memory_capacity": 100, "run.log_interval": 2, "run.checkpoint_interval": 100, "run.episodes": 6,
    })  # fmt: skip
    run_experiment(cfg, tmp_path)
    tr = pd.read_parquet(tmp_path / "tracking.parquet")
    for col in ("dead_output_frac", "squash_grad_mean", "dead_output_dim0", "actors_diverged", "critic_diverged"):
        assert col in tr.columns, col
    assert tr["dead_output_frac"].between(0, 1).all() and tr["squash_grad_mean"].between(0, 1).all()
    assert (tr["squash_grad_mean"] > 0).all() and (tr["actors_diverged"] == 0).all()
    agents = pd.read_parquet(tmp_path / "tracking_agents.parquet")
    assert {"dead_output_frac", "squash_grad_mean", "diverged"} <= set(agents.columns)
    s = read_json(tmp_path / "summary.json")
    assert s["diverged"] is False and s["diverged_step"] is None
    assert s["actor_diverged_step"] is None and s["critic_diverged_step"] is None


# ----------------------------------------------------------------------------- clear errors for bad input


def test_helpers_reject_lists_strings_and_non_modules():
    net = _actor()
    for bad in ([net[0], net[2]], "actor", 3):
        for fn in (collect_grads, collect_params, register_preact_hook):
            with pytest.raises(TypeError, match="nn.Module"):
                fn(bad)
        with pytest.raises(TypeError, match="nn.Module"):
            HiddenActivationHook(bad)
    with pytest.raises(TypeError, match="not a list"):
        collect_grads([net])
    with pytest.raises(TypeError, match="sequence of modules"):
        HiddenActivationHook(layers="relu")
    with pytest.raises(TypeError, match="nn.Module"):
        HiddenActivationHook(layers=[net[1], "relu"])
    with pytest.raises(TypeError, match="nn.Module"):
        OutputPreactHook([net], "input")
    HiddenActivationHook(layers=(net[1], net[3])).remove()  # a tuple of modules is fine


def test_observe_update_rejects_wrong_kinds_and_changes_nothing():
    mon = ActorCriticMonitor(n_agents=None)
    net = _actor()
    good = collect_params(net)
    mon.observe_update(1, collect_grads(net), None, good, None)
    bad_calls = [
        dict(actor_grads="grads"),
        dict(actor_grads=[1.0, 2.0]),
        dict(critic_grads={"l0": "w"}),
        dict(actor_params=net),  # the module itself, not its tensors
        dict(critic_params=net),
        dict(preact=[[0.0, 1.0]]),
        dict(actor_hidden="relu"),
        dict(critic_hidden=[[0.0]]),
    ]
    for kw in bad_calls:
        with pytest.raises(TypeError) as e:
            mon.observe_update(2, **kw)
        assert "\n" not in str(e.value), kw
    with pytest.raises(TypeError, match="collect_params"):
        mon.observe_update(2, actor_params=net)
    assert mon.n_updates == 1 and mon.last_step == 1


def test_wrong_agent_dimension_on_the_first_update():
    for kw in (
        dict(actor_grads={"w": torch.zeros(2, 4)}),
        dict(actor_params={"w": torch.zeros(6, 5)}),  # 30 elements: reshape(3, -1) would silently work
        dict(preact=torch.zeros(5, 2, 3)),
        dict(actor_hidden=[torch.zeros(5, 4, 8)]),
    ):
        mon = ActorCriticMonitor(n_agents=3)
        with pytest.raises(ValueError, match="3"):
            mon.observe_update(1, **kw)
        assert mon.n_updates == 0
        if "actor_params" in kw:
            with pytest.raises(ValueError, match="agent dimension"):
                mon.observe_params(kw["actor_params"])


def test_gradients_and_parameters_of_different_structures():
    mon = ActorCriticMonitor(n_agents=3)
    g = {"l0.weight": torch.zeros(3, 4, 5), "l0.bias": torch.zeros(3, 5)}
    with pytest.raises(ValueError, match="different structures"):  # one tensor missing
        mon.observe_update(1, g, None, {"l0.weight": torch.zeros(3, 4, 5)}, None)
    with pytest.raises(ValueError, match="different structures"):  # a different shape
        mon.observe_update(1, g, None, {"l0.weight": torch.zeros(3, 4, 5), "l0.bias": torch.zeros(3, 4)}, None)
    with pytest.raises(ValueError, match="critic gradients and parameters"):
        mon.observe_update(1, None, {"w": torch.zeros(2, 2)}, None, {"w": torch.zeros(2, 3)})
    assert mon.n_updates == 0
    # the same tensors in another grouping or order are accepted
    mon.observe_update(1, {"l0": [torch.zeros(3, 5), torch.zeros(3, 4, 5)]}, None, g, None)
    # and a later structure change of the parameters is refused before anything is recorded
    with pytest.raises(ValueError, match="changed structure"):
        mon.observe_update(2, None, None, {"l0.weight": torch.zeros(3, 4, 6), "l0.bias": torch.zeros(3, 5)}, None)
    assert mon.n_updates == 1


def test_finite_parameters_whose_sum_overflows_are_not_diverged():
    big = torch.tensor([3e38, 3e38, -1.0])  # float32: the sum overflows, every element is finite
    assert not torch.isfinite(big.sum())
    mon = ActorCriticMonitor(n_agents=2)
    for step in (1, 2):
        mon.observe_update(step, None, {"w": torch.ones(3)}, {"w": torch.stack([big, big + 1])}, {"w": big})
    assert mon.actor_diverged_episode == [None, None] and mon.critic_diverged_episode is None
    assert mon.actor_stop_episode == [2, 2] and mon.critic_stop_episode == 2  # unchanged, finite: stopped
    mon.observe_update(3, None, None, {"w": torch.stack([big, torch.tensor([1.0, INF, 0.0])])}, None)
    assert mon.actor_diverged_episode == [None, 3]


def test_selected_parameters_walks_once():
    torch.manual_seed(0)
    critic = _critic()
    critic(torch.randn(6, 5)).pow(2).mean().backward()
    named = selected_parameters(critic, [critic[2].weight, critic[0].bias])
    assert [n for n, _ in named] == ["0.bias", "2.weight"]
    g, p = collect_grads(None, named=named), collect_params(None, named=named)
    ref_g = collect_grads(critic, [critic[2].weight, critic[0].bias])
    assert list(g) == list(ref_g) == ["0", "2"] and torch.equal(g["2"]["weight"], ref_g["2"]["weight"])
    assert p["0"]["bias"].data_ptr() == critic[0].bias.data_ptr()
    with pytest.raises(TypeError, match="nn.Module"):
        selected_parameters([critic])


def test_single_actor_fast_freeze_check_equals_the_mask_path():
    # n_agents=None (torch.equal, early exit) against n_agents=1 (elementwise mask) on one sequence:
    # unchanged, only the second tensor changed, only the first, NaN, unchanged again
    w, b = torch.ones(3, 2), torch.zeros(2)
    seq = [(w, b), (w, b), (w, b + 1), (w + 1, b + 1), (w + 1, b + 1), (w * NAN, b), (w * NAN, b), (w, b), (w, b)]
    fast, mask = ActorCriticMonitor(), ActorCriticMonitor(n_agents=1)
    for step, (pw, pb) in enumerate(seq, 1):
        fast.observe_update(step, None, None, {"l.weight": pw, "l.bias": pb}, None)
        mask.observe_update(step, None, None, {"l.weight": pw[None], "l.bias": pb[None]}, None)
        assert fast.frozen_now == mask.frozen_now, step
    assert fast.actor_stop_episode == mask.actor_stop_episode == [2]
    assert fast.actor_diverged_episode == mask.actor_diverged_episode == [6]
    assert fast.frozen_now == [False]  # unchanged at 9, but diverged since 6


# ----------------------------------------------------------------------------- input validation


def _state_equal(a, b) -> bool:
    """Deep equality of two state_dict()s (tensors: same dtype, shape and values, NaN == NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(((a == b) | (a.isnan() & b.isnan())).all()) if a.is_floating_point() else torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b))
    return _same(a, b)


def _real_update():
    torch.manual_seed(0)
    actor, critic = _actor(), _critic()
    critic(torch.randn(4, 5)).pow(2).mean().backward()
    pre = register_preact_hook(actor)
    actor(torch.randn(4, 3)).sum().backward()
    grads, params = (collect_grads(actor), collect_grads(critic)), (collect_params(actor), collect_params(critic))
    return actor, critic, *grads, *params, pre.value


def test_refused_calls_leave_the_state_unchanged():
    actor, critic, g, cg, p, cp, z = _real_update()
    mon = ActorCriticMonitor(n_agents=None)
    mon.observe_update(1, g, cg, p, cp, preact=z)
    before = mon.state_dict()
    int_cg = {k: {n: t.to(torch.int64) for n, t in v.items()} for k, v in cg.items()}
    half_p = {k: {n: t.to(torch.int32) for n, t in v.items()} for k, v in p.items()}
    refused = [
        (TypeError, "preact: expected floating-point", dict(preact=torch.ones(4, 2, dtype=torch.bool))),
        (TypeError, "preact: expected floating-point", dict(preact=torch.ones(4, 2, dtype=torch.int64))),
        (TypeError, "critic_grads: expected floating-point", dict(critic_grads=int_cg)),
        (TypeError, "actor_grads: expected floating-point", dict(actor_grads=[torch.ones(3, dtype=torch.complex64)])),
        (TypeError, "actor_params: expected floating-point", dict(actor_params=half_p)),
        (TypeError, "actor_hidden: expected floating-point", dict(actor_hidden=[torch.ones(4, 16, dtype=torch.bool)])),
        (TypeError, "critic_hidden: expected floating-point",
         dict(critic_hidden=[torch.ones(4, 16, dtype=torch.int8)])),
        (ValueError, "critic_grads: no tensors", dict(critic_grads={})),
        (ValueError, "actor_grads: no tensors", dict(actor_grads=[])),
        (ValueError, "critic_params: no tensors", dict(critic_params={})),
        (ValueError, "actor_params: no tensors", dict(actor_params={"0": {"weight": None}})),
        (ValueError, "must have at least one dimension", dict(preact=torch.tensor(1.0))),
    ]
    for exc, msg, kw in refused:
        args = dict(actor_grads=g, critic_grads=cg, actor_params=p, critic_params=cp, preact=z) | kw
        with pytest.raises(exc, match=msg) as e:
            mon.observe_update(2, **args)
        assert "\n" not in str(e.value), kw
        assert _state_equal(mon.state_dict(), before), kw
    for step in ("abc", "2", 2.5, None, True, [2]):
        with pytest.raises(TypeError, match="^step: expected an integer"):
            mon.observe_update(step, g, cg, p, cp)
        assert _state_equal(mon.state_dict(), before), step
    for bad in (dict(actor_params={}), dict(critic_params=[]), dict(critic_params=[torch.ones(2, dtype=torch.long)])):
        with pytest.raises((TypeError, ValueError)):
            mon.observe_params(**bad)
        assert _state_equal(mon.state_dict(), before), bad
    assert mon.n_updates == 1 and mon.last_step == 1


def test_integral_steps_of_any_integer_type_are_the_same_step():
    import numpy as np

    _, _, g, cg, p, cp, z = _real_update()
    rows = []
    for step in (3, 3.0, np.int64(3), torch.tensor(3)):
        mon = ActorCriticMonitor(n_agents=None)
        mon.observe_update(step, g, cg, p, cp, preact=z)
        assert mon.last_step == 3 and type(mon.last_step) is int
        rows.append(mon.log_row())
    assert all(_rows_equal(rows[0], r) for r in rows[1:])


def test_collect_accepts_an_optimisers_param_groups_and_refuses_empty_selections():
    actor, critic, *_ = _real_update()
    opt = torch.optim.Adam(critic.parameters())
    full = collect_grads(critic)
    for params in (opt.param_groups, opt, opt.param_groups[0], list(critic.parameters())):
        got = collect_grads(critic, params=params)
        assert got.keys() == full.keys() and all(torch.equal(got[k][n], full[k][n]) for k in full for n in full[k])
        assert collect_params(critic, params=params).keys() == full.keys()
    assert list(selected_parameters(critic, opt.param_groups)) == list(selected_parameters(critic))
    two = torch.optim.SGD([{"params": actor.parameters()}, {"params": [critic[2].weight], "lr": 0.1}], lr=0.01)
    assert list(collect_grads(critic, params=two.param_groups)) == ["2"]  # the module's own parameters only
    for fn in (collect_grads, collect_params, selected_parameters):
        with pytest.raises(ValueError, match="no parameters of the module selected"):
            fn(actor, params=critic.parameters())
        with pytest.raises(ValueError, match="no parameters of the module selected"):
            fn(actor, params=[])
        with pytest.raises(ValueError, match="no parameters of the module selected"):
            fn(nn.ReLU())
        with pytest.raises(TypeError, match="param_groups"):
            fn(critic, params=[{"lr": 0.1}])
        with pytest.raises(TypeError, match="param_groups"):
            fn(critic, params=["0.weight"])
        with pytest.raises(TypeError, match="param_groups"):
            fn(critic, params=3)
    frozen = _critic().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        collect_grads(frozen)


def test_collect_named_must_be_name_parameter_pairs():
    _, critic, *_ = _real_update()
    pairs = selected_parameters(critic)
    assert collect_grads(None, named=pairs).keys() == collect_grads(critic).keys()
    for fn in (collect_grads, collect_params):
        for bad in (["a", "b"], [("a",)], [("a", 1.0)], "ab", {"a": critic[0].weight}, 3):
            with pytest.raises(TypeError, match=r"named= expects .*\(name, parameter\) pairs") as e:
                fn(None, named=bad)
            assert "\n" not in str(e.value)
        with pytest.raises(ValueError, match="no parameters of the module selected"):
            fn(None, named=[])


def test_load_state_dict_refuses_what_is_not_a_monitor_state():
    _, _, g, cg, p, cp, z = _real_update()
    src = ActorCriticMonitor(n_agents=None)
    src.observe_update(1, g, cg, p, cp, preact=z)
    mon = ActorCriticMonitor(n_agents=None, freeze_tolerance=1e-8)
    mon.observe_update(5, g, cg, p, cp)
    before = mon.state_dict()
    broken_cfg = src.state_dict()
    del broken_cfg["config"]["squash"]
    for bad, match in (({"a": 1}, "not an ActorCriticMonitor state .*missing config"),
                       ({"model": src.state_dict()}, "not an ActorCriticMonitor state"),
                       (broken_cfg, "missing config.squash"),
                       (src.state_dict() | {"config": 3}, "missing config")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            mon.load_state_dict(bad)
        assert _state_equal(mon.state_dict(), before)
    with pytest.raises(TypeError, match="expected a monitor state_dict"):
        mon.load_state_dict([1, 2])
    old = src.state_dict()
    del old["diverged"], old["critic_diverged"]  # states from before divergence detection still load
    mon.load_state_dict(old)
    assert mon.n_updates == 1


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(freeze_tolerance="x"), TypeError, "^freeze_tolerance must be a number, got 'x'$"),
        (dict(grad_death_threshold=None), TypeError, "^grad_death_threshold must be a number"),
        (dict(saturation_threshold="0.9"), TypeError, "^saturation_threshold must be a number"),
        (dict(freeze_tolerance=True), TypeError, "freeze_tolerance must be a number"),
        (dict(freeze_tolerance=math.nan), ValueError, "^freeze_tolerance must be a finite number >= 0 .*got nan$"),
        (dict(freeze_tolerance=math.inf), ValueError, "^freeze_tolerance must be a finite number >= 0 .*got inf$"),
        (dict(freeze_tolerance=-1e-9), ValueError, "^freeze_tolerance must be a finite number >= 0"),
        (dict(grad_death_threshold=math.nan), ValueError, "^grad_death_threshold must be a finite number >= 0"),
        (dict(grad_death_threshold=-math.inf), ValueError, "^grad_death_threshold must be a finite number >= 0"),
        (dict(saturation_threshold=math.nan), ValueError, "saturation_threshold must be in"),
        (dict(n_agents="3"), TypeError, "^n_agents must be a positive int or None"),
        (dict(n_agents=math.nan), ValueError, "^n_agents must be a positive int or None"),
        (dict(n_agents=2.5), ValueError, "^n_agents must be a positive int or None"),
        (dict(n_agents=0), ValueError, "^n_agents must be a positive int or None"),
    ],
)
def test_constructor_refuses_bad_thresholds(kw, exc, match):
    with pytest.raises(exc, match=match):
        ActorCriticMonitor(**kw)


def test_constructor_accepts_valid_numbers_of_any_type():
    import numpy as np

    mon = ActorCriticMonitor(n_agents=np.int64(2), freeze_tolerance=np.float32(1e-8), grad_death_threshold=0,
                             saturation_threshold=np.float64(0.5))  # fmt: skip
    assert mon.n_agents == 2 and isinstance(mon.freeze_tolerance, float) and mon.grad_death_threshold == 0.0
    assert ActorCriticMonitor(n_agents=3.0).n_agents == 3


# ----------------------------------------------------------------------------- events and units


def test_events_are_reported_once_as_they_happen():
    seen = []
    mon = ActorCriticMonitor(n_agents=2, on_event=seen.append)

    def params(moved):  # actor parameters with the structure of _grads; row 1 moved by ``moved``
        return {"l0.weight": torch.tensor([[1.0], [1.0 + moved]]), "l0.bias": torch.zeros(2, 1)}

    c = {"q.weight": torch.ones(2, 2)}
    mon.observe_update(1, _grads([1.0, 1.0]), None, params(0.0), c)  # snapshot only
    assert seen == [] and mon.events == []
    mon.observe_update(2, _grads([0.0, 1.0]), None, params(1.0), c)
    # actor 1 moved, actor 0 did not: first freeze and first gradient death (actor 0); the critic froze
    assert [(e["event"], e["step"]) for e in seen] == [("grad_death", 2), ("actor_frozen", 2), ("critic_frozen", 2)]
    assert seen[0]["message"] == "episode 2: actor 0 of 2 (first of 1): gradient died (norm below grad_death_threshold)"
    mon.observe_update(3, _grads([0.0, 0.0]), None, params(1.0), c)
    mon.observe_update(4, _grads([0.0, 0.0]), None, params(1.0), c)
    assert [(e["event"], e["step"]) for e in seen][3:] == [("all_frozen", 3)]  # actor 1 stopped at 3; once
    bad = {"l0.weight": torch.full((2, 1), float("nan")), "l0.bias": torch.zeros(2, 1)}
    mon.observe_update(5, _grads([1.0, 1.0]), {"q.weight": torch.full((2, 2), float("inf"))}, bad, c)
    assert [e["event"] for e in seen][4:] == ["actor_diverged", "critic_diverged"]
    assert mon.events == seen and all(e["unit"] == "episode" for e in seen)
    assert mon.all_stopped_episode == 3 and mon.critic_stop_episode == 2  # events agree with the state


def test_events_survive_state_dict_and_are_not_repeated():
    seen = []
    mon = ActorCriticMonitor(unit="step", on_event=seen.append)
    w = {"w": torch.ones(3)}
    for step in (1, 2, 3):
        mon.observe_update(step, {"w": torch.zeros(3)}, None, w, None)
    assert [(e["event"], e["step"]) for e in seen] == [("grad_death", 1), ("actor_frozen", 2), ("all_frozen", 2)]
    assert seen[1]["message"].startswith("step 2: the actor's weights froze")
    again = []
    resumed = ActorCriticMonitor(unit="step", on_event=again.append)
    resumed.load_state_dict(through_torch_save(mon.state_dict()))
    resumed.observe_update(4, {"w": torch.zeros(3)}, None, w, None)
    assert again == [] and resumed.events == mon.events
    # a state saved before events existed: the events its steps imply, without a callback
    old = mon.state_dict()
    del old["events"]
    implied = ActorCriticMonitor(unit="step", on_event=again.append)
    implied.load_state_dict(old)
    assert [(e["event"], e["step"]) for e in implied.events] == [("grad_death", 1), ("actor_frozen", 2),
                                                                  ("all_frozen", 2)]
    assert again == []


def test_unit_names_the_step_keys():
    w = {"w": torch.ones(3)}
    for unit, key in (("episode", "episode"), ("step", "step"), ("gradient step", "gradient_step")):
        mon = ActorCriticMonitor(unit=unit)
        mon.observe_update(7, {"w": torch.ones(3)}, None, w, None)
        mon.observe_update(8, {"w": torch.ones(3)}, None, w, None)
        s = mon.summary()
        assert s[f"stopping_{key}"] == 8 and s[f"per_agent_stop_{key}"] == [8]
        assert s[f"per_agent_grad_death_{key}"] == [None] and s[f"critic_stop_{key}"] is None
        assert mon.log_row()[key] == 8 and mon.agent_rows()[0][key] == 8
        assert "stopping_episode" not in s or unit == "episode"
    with pytest.raises(TypeError, match="unit must be a non-empty string"):
        ActorCriticMonitor(unit="")
    with pytest.raises(TypeError, match="on_event must be a callable"):
        ActorCriticMonitor(on_event="print")
