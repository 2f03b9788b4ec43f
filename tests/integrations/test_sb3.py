"""SaturationMonitorCallback on Stable-Baselines3 (skipped where SB3 is not installed)."""

from __future__ import annotations

import importlib
import math
import sys

import pytest
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
    assert df["episode"].tolist() == list(range(50, 501, 50))
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
    assert s["per_agent_stop_episode"] == [None] and s["critic_stop_episode"] is None
    assert s["max_abs_preactivation"] >= df["preact_max_abs"].max()
    # hooks are removed at the end of training
    assert not model.actor.optimizer._optimizer_step_pre_hooks
    assert not model.critic.optimizer._optimizer_step_pre_hooks


def test_td3_huge_actor_lr_saturates_and_freezes():
    from_lr = {}
    for lr in (1e-3, 1.0):
        model = _td3(lr)
        from gradasym.integrations.sb3 import SaturationMonitorCallback

        cb = SaturationMonitorCallback(log_freq=50, record_to_logger=False)
        model.learn(600, callback=cb)
        from_lr[lr] = (cb.dataframe(), cb.monitor)
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


def test_sac_and_second_learn_call():
    model = _td3(3e-4, algo="SAC")
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback(log_freq=40, save_path=None)
    model.learn(220, callback=cb)
    model.learn(140, callback=cb, reset_num_timesteps=False)  # hooks re-attached once, no duplicates
    df = cb.dataframe()
    assert df["episode"].tolist() == list(range(40, 261, 40))
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
