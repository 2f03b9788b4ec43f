"""SaturationMonitorCallback on Stable-Baselines3 (skipped where SB3 is not installed)."""

from __future__ import annotations

import importlib
import json
import math
import sys

import pytest
import torch
from torch import nn

import gradasym.integrations.sb3 as sb3_integration


def test_module_imports_without_sb3(monkeypatch):
    for name in ("stable_baselines3", "stable_baselines3.common", "stable_baselines3.common.callbacks"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    mod = importlib.reload(sb3_integration)
    try:
        assert "DEFAULT_LOGGER_KEYS" in dir(mod)
        with pytest.raises(ImportError, match="pip install"):
            mod.SaturationMonitorCallback  # noqa: B018
    finally:
        monkeypatch.undo()
        importlib.reload(sb3_integration)


def _td3(lr, seed=0, algo="TD3", **kw):
    sb3 = pytest.importorskip("stable_baselines3")
    pytest.importorskip("gymnasium")
    cls = getattr(sb3, algo)
    return cls(
        "MlpPolicy", "Pendulum-v1", learning_starts=100, learning_rate=lr, seed=seed,
        policy_kwargs=dict(net_arch=[64, 64]), device="cpu", **kw,
    )  # fmt: skip


def _finite(x):
    return isinstance(x, float) and math.isfinite(x)


def test_td3_records_rows_and_saves(tmp_path):
    pd = pytest.importorskip("pandas")
    model = _td3(1e-3)
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    path = tmp_path / "tracking.parquet"
    cb = SaturationMonitorCallback(log_freq=50, save_path=path)
    model.learn(600, callback=cb)
    df = cb.dataframe()
    # 500 gradient steps (600 - 100 warm-up), actor every 2nd: a row at 50, 100, ..., 500
    assert df["step"].tolist() == list(range(50, 501, 50))
    last = cb.rows[-1]
    for k in ("actor_grad_norm", "critic_grad_norm", "rho", "preact_std", "saturation_ratio"):
        assert all(_finite(float(v)) for v in df[k]), k
    assert (df["actor_grad_norm"] > 0).all() and (df["critic_grad_norm"] > 0).all() and (df["rho"] > 0).all()
    assert df["rho"].tolist() == pytest.approx((df["actor_grad_norm"] / df["critic_grad_norm"]).tolist())
    assert ((df["saturation_ratio"] >= 0) & (df["saturation_ratio"] <= 1)).all()
    # TD3 actor: Linear-ReLU-Linear-ReLU-Linear-Tanh; twin critic: 2 x 3 Linear layers
    assert {"actor_grad_norm_l2", "critic_grad_norm_l5", "saturation_dim0", "actor_dead_relu_l1",
            "critic_dead_relu_l1", "num_timesteps"} <= set(df.columns)  # fmt: skip
    assert "actor_grad_norm_l3" not in df.columns
    assert isinstance(cb._pre.module, nn.Tanh) and cb._pre.capture == "input"
    assert last["num_timesteps"] == 600
    # the file on disk is the same table
    pd.testing.assert_frame_equal(pd.read_parquet(path), df)
    # the SB3 logger got the key scalars
    assert model.logger.name_to_value["gradasym/rho"] == pytest.approx(last["rho"])
    s = cb.summary()
    assert s["per_agent_stop_step"] == [None] and s["critic_stop_step"] is None
    assert s["max_abs_preactivation"] >= df["preact_max_abs"].max()
    # hooks are removed at the end of training
    assert not model.actor.optimizer._optimizer_step_pre_hooks
    assert not model.critic.optimizer._optimizer_step_pre_hooks


def test_td3_huge_actor_lr_saturates_and_freezes():
    from_lr, events = {}, {}
    for lr in (1e-3, 1.0):
        model = _td3(lr)
        from gradasym.integrations.sb3 import SaturationMonitorCallback

        seen: list = []
        cb = SaturationMonitorCallback(log_freq=50, record_to_logger=False, on_event=seen.append)
        model.learn(600, callback=cb)
        from_lr[lr] = (cb.dataframe(), cb.monitor)
        events[lr] = seen
    low, high = from_lr[1e-3][0], from_lr[1.0][0]
    sat_low = low["saturation_ratio"].iloc[-3:].mean()
    sat_high = high["saturation_ratio"].iloc[-3:].mean()
    assert sat_high >= 0.95 and sat_high > sat_low + 0.2
    assert high["preact_max_abs"].iloc[-1] > 100 * low["preact_max_abs"].iloc[-1]
    # the paper's pattern: the saturated actor's gradient dies and its weights freeze
    mon_high, mon_low = from_lr[1.0][1], from_lr[1e-3][1]
    assert mon_high.actor_stop_episode[0] is not None and mon_high.all_frozen_now
    assert mon_high.grad_death_episode[0] is not None
    assert mon_low.actor_stop_episode == [None] and mon_low.grad_death_episode == [None]
    assert mon_high.critic_stop_episode is None
    # the monitor spoke up once per event, at the step the summary records (gradient steps, unit "step")
    steps = {e["event"]: e["step"] for e in events[1.0]}
    assert len(steps) == len(events[1.0]) and events[1.0] == mon_high.events and events[1e-3] == []
    assert steps["actor_frozen"] == mon_high.actor_stop_episode[0] == mon_high.summary()["stopping_step"]
    assert steps["all_frozen"] == steps["actor_frozen"] and "critic_frozen" not in steps
    assert steps["grad_death"] <= steps["actor_frozen"] and events[1.0][0]["message"].startswith("step ")


def test_sac_and_second_learn_call():
    model = _td3(3e-4, algo="SAC")
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback(log_freq=40, save_path=None)
    model.learn(220, callback=cb)
    model.learn(140, callback=cb, reset_num_timesteps=False)  # hooks re-attached once, no duplicates
    df = cb.dataframe()
    assert df["step"].tolist() == list(range(40, 261, 40))
    assert isinstance(cb._pre.module, nn.Linear) and cb._pre.capture == "output"  # SAC: actor.mu (mean)
    assert (df["actor_grad_norm"] > 0).all() and (df["rho"] > 0).all()
    assert all(math.isfinite(v) for v in df["preact_mean"])
    assert {"actor_dead_relu_l0", "critic_dead_relu_l0"} <= set(df.columns)
    assert cb.monitor.n_updates == 260  # SAC steps the actor at every gradient step


def test_rejects_algorithms_without_actor_and_critic():
    sb3 = pytest.importorskip("stable_baselines3")
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    model = sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, device="cpu")
    with pytest.raises(TypeError, match="TD3, DDPG, SAC"):
        model.learn(64, callback=SaturationMonitorCallback())


def _hooks_attached(model) -> int:
    """Optimiser step hooks, module forward hooks and instance wrappers left on ``model``."""
    n = 0
    for net in (model.actor, model.critic):
        n += len(net.optimizer._optimizer_step_pre_hooks) + len(net.optimizer._optimizer_step_post_hooks)
        n += sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
    dist = getattr(model.actor, "action_dist", None)
    return n + int(dist is not None and "log_prob_from_params" in vars(dist))


def _crash_after(n_calls):
    from stable_baselines3.common.callbacks import BaseCallback

    class Crash(BaseCallback):
        def _on_step(self) -> bool:
            if self.n_calls >= n_calls:
                raise RuntimeError("boom")
            return True

    return Crash()


@pytest.mark.parametrize("algo", ["TD3", "SAC"])
def test_close_after_a_crash_removes_every_hook(algo):
    model = _td3(1e-3, algo=algo)
    from stable_baselines3.common.callbacks import CallbackList

    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback(log_freq=20, record_to_logger=False)
    cb.close()  # before any training: nothing to remove, no error
    with pytest.raises(RuntimeError, match="boom"):
        model.learn(300, callback=CallbackList([cb, _crash_after(200)]))
    assert cb.attached and _hooks_attached(model) > 0  # SB3 skipped _on_training_end
    s = cb.summary()
    # the crash came at env step 200, before its gradient step: 99 gradient steps, rows at 20..80
    assert s["gradient_steps"] == 99 and s["rows"] == 4 and s["diverged"] is False
    assert json.loads(json.dumps(s)) == s  # plain JSON values (no NaN here: pre-activations seen)
    cb.close()
    assert not cb.attached and _hooks_attached(model) == 0
    cb.close()  # idempotent
    assert cb.summary() == s
    # the model trains on, unobserved, and the callback can be attached again
    model.learn(50, reset_num_timesteps=False)
    assert cb.summary()["gradient_steps"] == 99


def test_context_manager_saves_and_detaches_on_failure(tmp_path):
    pd = pytest.importorskip("pandas")
    model = _td3(1e-3, algo="SAC")
    from stable_baselines3.common.callbacks import CallbackList

    from gradasym.integrations.sb3 import SaturationMonitorCallback

    path = tmp_path / "tracking.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with SaturationMonitorCallback(log_freq=25, save_path=path, record_to_logger=False) as cb:
            model.learn(400, callback=CallbackList([cb, _crash_after(250)]))
    assert _hooks_attached(model) == 0 and not cb.attached
    df = pd.read_parquet(path)
    assert df["step"].tolist() == [25, 50, 75, 100, 125]  # 149 gradient steps before the crash


def test_sac_sampled_pre_tanh_and_log_std_columns():
    model = _td3(3e-4, algo="SAC")
    from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN

    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback(log_freq=50, record_to_logger=False)
    model.learn(300, callback=cb)
    df = cb.dataframe()
    cols = ["sampled_max_abs", "sampled_mean_abs", "sampled_saturation_ratio", "sampled_dead_output_frac",
            "sampled_squash_grad_mean", "log_std_mean", "log_std_min", "log_std_max"]  # fmt: skip
    assert set(cols) <= set(df.columns) and len(df) == 4
    assert df[cols].notna().all().all()
    assert (df["log_std_min"] <= df["log_std_mean"]).all() and (df["log_std_mean"] <= df["log_std_max"]).all()
    assert (df["log_std_min"] >= LOG_STD_MIN).all() and (df["log_std_max"] <= LOG_STD_MAX).all()
    assert df["sampled_saturation_ratio"].between(0, 1).all()
    # the sampled value is not the mean (mean + std * noise, std = exp(log_std) ~ 1 early on)
    assert (df["sampled_max_abs"] != df["preact_max_abs"]).all()
    # TD3 rows have no such columns
    td3 = SaturationMonitorCallback(log_freq=50, record_to_logger=False)
    _td3(1e-3).learn(200, callback=td3)
    assert not any(c.startswith(("sampled_", "log_std")) for c in td3.dataframe().columns)


def test_sac_sampled_columns_match_the_training_sample():
    model = _td3(3e-4, algo="SAC")
    from gradasym.integrations.sb3 import SaturationMonitorCallback
    from gradasym.monitor import preact_summary

    cb = SaturationMonitorCallback(log_freq=10, record_to_logger=False)
    seen = {}
    real_post = None

    def spy_actor_step(optimizer, args, kwargs):
        sampled = cb._actor.get("sampled")
        seen[cb._grad_steps] = sampled
        real_post(optimizer, args, kwargs)

    model.learn(100, callback=cb)
    real_post = cb._actor_post_step
    cb._actor_post_step = spy_actor_step  # learn's wiring registers the instance attribute
    model.learn(30, callback=cb, reset_num_timesteps=False)
    row = cb.rows[-1]
    sampled = seen[row["step"]]
    g, log_std = sampled["gaussian"], sampled["log_std"]
    assert g.shape == (256, 1) and log_std.shape == (256, 1)  # the training batch (batch_size 256)
    assert row["sampled_max_abs"] == preact_summary(g)["max_abs"] == float(g.abs().max())
    assert row["log_std_max"] == pytest.approx(float(log_std.max()))
    assert row["sampled_saturation_ratio"] == float((g.abs() > math.atanh(0.9)).double().mean())


@pytest.mark.parametrize("algo", ["TD3", "SAC"])
def test_monitor_does_not_change_training(algo):
    trained = []
    for with_cb in (False, True):
        model = _td3(1e-3, algo=algo)
        from gradasym.integrations.sb3 import SaturationMonitorCallback

        cb = SaturationMonitorCallback(log_freq=7, record_to_logger=False) if with_cb else None
        model.learn(250, callback=cb)
        trained.append([p.detach().clone() for p in model.policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*trained))


def _callback_class():
    pytest.importorskip("stable_baselines3")
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    return SaturationMonitorCallback


@pytest.mark.parametrize("kw, exc, match", [
    (dict(log_freq="100"), TypeError, "log_freq must be an int >= 1, got str '100'"),
    (dict(log_freq=0), ValueError, "log_freq must be an int >= 1, got 0"),
    (dict(log_freq=2.5), TypeError, "log_freq must be an int"),
    (dict(log_freq=True), TypeError, "log_freq must be an int"),
    (dict(save_path=3), TypeError, "save_path must be a str or Path"),
    (dict(save_path=""), ValueError, "save_path must name a file"),
    (dict(monitor="x"), TypeError, "monitor must be a gradasym.monitor.ActorCriticMonitor"),
    (dict(preact_module=3), TypeError, "preact_module must be an nn.Module"),
    (dict(hidden_types="relu"), TypeError, "hidden_types must be an nn.Module class or a tuple"),
    (dict(hidden_types=(nn.ReLU, "tanh")), TypeError, "hidden_types must be"),
    (dict(hidden_types=(int,)), TypeError, "hidden_types must be"),
    (dict(logger_keys="rho"), TypeError, "logger_keys must be a list or tuple of column names"),
    (dict(logger_keys=["rho", 3]), TypeError, "logger_keys must be a list or tuple"),
    (dict(logger_keys=["rho", "rhoo"]), ValueError, r"logger_keys: unknown column\(s\) 'rhoo' \(known: step, episode, "),
    (dict(record_to_logger="yes"), TypeError, "record_to_logger must be a bool"),
    (dict(verbose=-1), ValueError, "verbose must be an int >= 0"),
    (dict(squash=None), TypeError, "squash must be a str"),
    (dict(squash="relu"), ValueError, "squash must be one of"),
    (dict(saturation_threshold="0.9"), TypeError, "saturation_threshold must be a number"),
    (dict(saturation_threshold=1.5), ValueError, "saturation_threshold must be in"),
    (dict(freeze_tolerance=float("nan")), ValueError, "freeze_tolerance must be finite"),
    (dict(grad_death_threshold=-1.0), ValueError, "grad_death_threshold must be a finite number >= 0"),
])
def test_callback_arguments_are_checked_at_construction(kw, exc, match):
    cls = _callback_class()
    with pytest.raises(exc, match=match) as info:
        cls(**kw)
    assert "\n" not in str(info.value)


def test_callback_save_path_directory_refused_at_construction(tmp_path):
    cls = _callback_class()
    with pytest.raises(ValueError, match="save_path .* is a directory, expected a file name"):
        cls(save_path=tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        cls(save_path=tmp_path / "f" / "t.parquet")
    assert cls(save_path=tmp_path / "new" / "t.csv").save_path == tmp_path / "new" / "t.csv"


def test_callback_accepts_valid_forms():
    from gradasym.monitor import ActorCriticMonitor

    cls = _callback_class()
    cb = cls(hidden_types=nn.ReLU, logger_keys=["rho", "critic_grad_norm_l0", "sampled_max_abs"],
             monitor=ActorCriticMonitor(None), log_freq=1)
    assert cb.hidden_types == (nn.ReLU,) and cb.logger_keys == ("rho", "critic_grad_norm_l0", "sampled_max_abs")
    assert cls().logger_keys == sb3_integration.DEFAULT_LOGGER_KEYS


def test_callback_preact_module_is_checked_when_the_model_is_known():
    cls = _callback_class()
    import stable_baselines3 as sb3

    model = sb3.TD3("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=0, device="cpu",
                    policy_kwargs=dict(net_arch=[16, 16]))
    with pytest.raises(ValueError, match="preact_module 'nope' is no module of model.actor \\(its modules: "):
        model.learn(80, callback=cls(preact_module="nope"))
    assert model.num_timesteps == 0
    other = _td3(1e-3)
    cb = cls(preact_module=other.actor.mu)
    with pytest.raises(ValueError, match="is not a module of this model's actor"):
        model.learn(80, callback=cb)
    assert not cb.attached
    by_name = cls(preact_module="mu", log_freq=1, record_to_logger=False)
    model.learn(80, callback=by_name)
    assert by_name.rows and by_name._pre.module is model.actor.mu[-1]  # the final Tanh, as by default


# ----------------------------------------------------------------------------- plasticity (issue 20)
def test_td3_rows_carry_the_plasticity_columns_and_logger_keys():
    model = _td3(1e-3)
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback(log_freq=50, logger_keys=("rho", "actor_dormant_tau0.1", "critic_effective_rank",
                                                             "actor_dist_init_l1"))
    model.learn(300, callback=cb)
    df = cb.dataframe()
    # TD3 actor: two hidden ReLU layers; critic: the first Q-network's two
    for col in ("actor_dormant_tau0_l1", "critic_dormant_tau0.025_l1", "actor_effective_rank", "critic_stable_rank",
                "actor_param_norm_l2", "critic_dist_init"):
        assert col in df.columns and df[col].notna().all(), col
    assert (df["actor_dist_init"].diff().iloc[1:] != 0).any()  # the actor moves away from its first weights
    assert ((df["actor_effective_rank"] >= 1) & (df["actor_effective_rank"] <= 64)).all()
    last = cb.rows[-1]
    assert model.logger.name_to_value["gradasym/critic_effective_rank"] == pytest.approx(last["critic_effective_rank"])
    with pytest.raises(ValueError, match="unknown column"):
        SaturationMonitorCallback(logger_keys=("actor_dormant_l1",))


def _remedy_model(algo="TD3"):
    model = _td3(1e-3, algo=algo)
    model.learn(150)  # past learning_starts: moments exist
    return model


def test_redo_callback_recycles_dormant_units_of_a_tiny_sb3_model():
    model = _remedy_model()
    from gradasym.integrations.sb3 import PlasticityRemedyCallback
    from gradasym.nn_remedies import fresh_linear

    mu = model.actor.mu  # Linear(3, 64) ReLU Linear(64, 64) ReLU Linear(64, 1) Tanh
    with torch.no_grad():  # units 3 and 7 of the first hidden layer: dead on every input
        mu[0].weight[[3, 7]] = 0.0
        mu[0].bias[[3, 7]] = -1.0
    cb = PlasticityRemedyCallback(redo_period=1, redo_tau=0.0, networks=("actor",), seed=3)
    cb.init_callback(model)
    obs = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    with torch.enable_grad():
        model.actor(obs)  # a training forward: the hooks keep its hidden activations
    h0 = torch.relu(mu[0](obs)).detach()
    h1 = torch.relu(mu[2](h0)).detach()
    dormant0 = (h0.abs().mean(0) == 0).nonzero().flatten().tolist()  # 3, 7 and any unit dead on this batch
    dormant1 = (h1.abs().mean(0) == 0).nonzero().flatten().tolist()
    assert {3, 7} <= set(dormant0)
    before = {k: v.detach().clone() for k, v in model.actor.state_dict().items()}
    opt_state = {id(p): {k: v.clone() for k, v in model.actor.optimizer.state[p].items()} for p in mu.parameters()}
    cb._after_critic_step(model.critic.optimizer, (), {})
    assert cb.applied == [{"step": 1, "redo_actor_units": len(dormant0) + len(dormant1), "redo_critic_units": 0,
                           "shrink_perturb": 0}]
    gen = torch.Generator().manual_seed(3)
    fw0, fb0 = fresh_linear(mu[0], gen)  # the draws ReDo made, in its order
    w0, b0, w1 = mu[0].weight.detach(), mu[0].bias.detach(), mu[2].weight.detach()
    assert torch.equal(w0[dormant0], fw0[dormant0]) and torch.equal(b0[dormant0], fb0[dormant0])  # fresh incoming
    keep = [i for i in range(64) if i not in dormant0]
    assert torch.equal(w0[keep], before["mu.0.weight"][keep])  # every other unit's weights untouched
    rows1 = [i for i in range(64) if i not in dormant1]
    assert (w1[rows1][:, dormant0] == 0).all()  # outgoing weights zero
    assert torch.equal(w1[rows1][:, keep], before["mu.2.weight"][rows1][:, keep])
    st_out, st_in = model.actor.optimizer.state[mu[2].weight], model.actor.optimizer.state[mu[0].weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert (st_out[key][:, dormant0] == 0).all() and (st_in[key][dormant0] == 0).all()
        assert torch.equal(st_in[key][keep], opt_state[id(mu[0].weight)][key][keep])
    cb.close()
    assert not cb._handles and not cb._hooks
    # through learn: applied after every 4th critic step, hooks removed at the end
    cb4 = PlasticityRemedyCallback(redo_period=4, networks=("actor", "critic"))
    model.learn(8, callback=cb4, reset_num_timesteps=False)
    assert [r["step"] for r in cb4.applied] == [4, 8] and not cb4._handles


def test_shrink_perturb_callback_is_lambda_theta_plus_sigma_fresh():
    model = _remedy_model("SAC")
    from gradasym.integrations.sb3 import PlasticityRemedyCallback
    from gradasym.nn_remedies import fresh_linear

    cb = PlasticityRemedyCallback(shrink_perturb_period=1, shrink_perturb_lambda=0.5, shrink_perturb_sigma=0.25,
                                  networks=("critic",), seed=9)
    cb.init_callback(model)
    lins = [m for m in model.critic.modules() if isinstance(m, torch.nn.Linear)]
    before = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in lins]
    gen = torch.Generator().manual_seed(9)
    cb._after_critic_step(model.critic.optimizer, (), {})  # one gradient step's hook
    for m, (w, b) in zip(lins, before):
        fw, fb = fresh_linear(m, gen)  # the same draws, in the same order
        torch.testing.assert_close(m.weight.detach(), 0.5 * w + 0.25 * fw, rtol=0, atol=1e-6)
        torch.testing.assert_close(m.bias.detach(), 0.5 * b + 0.25 * fb, rtol=0, atol=1e-6)
    assert cb.applied == [{"step": 1, "redo_actor_units": 0, "redo_critic_units": 0, "shrink_perturb": 1}]
    cb.close()
    with pytest.raises(ValueError, match="networks"):
        PlasticityRemedyCallback(networks=("policy",))
