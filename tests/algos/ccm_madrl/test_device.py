"""``run.device``: the agent's tensors live on one device, the environment side stays numpy
on the CPU, checkpoints are device-independent, and a device torch cannot see is a clear
error before anything starts.

Without a GPU the device plumbing is still checked: :class:`DeviceGuard` watches a short
training (single runs with every code path, checkpoint and resume) and fails
on any tensor that the device-holding modules create without naming its device (a factory
without ``device=`` or with ``device=None``, ``torch.from_numpy``), and on any ``.numpy()``
or ``np.asarray`` of a tensor that was not moved with ``.cpu()`` first -- the ways a tensor
ends up on the CPU, or a GPU tensor meets numpy, while the agent works on a GPU. An agent
built on PyTorch's data-less ``meta`` device must hold its networks and optimiser state
there, and ``run.device`` (``cuda:1`` with two GPUs pretended) must reach the agent and
SB3's constructor. The ``cuda`` parameters skip here.
"""

from __future__ import annotations

import functools
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import gradasym.algos.ccm_madrl.agent
import gradasym.algos.ccm_madrl.critic
import gradasym.algos.ccm_madrl.layers
import gradasym.algos.ccm_madrl.networks
import gradasym.algos.ccm_madrl.optim
import gradasym.algos.ccm_madrl.policies
import gradasym.algos.ccm_madrl.runner
from gradasym.cli import main
from gradasym.config import ConfigError, check_device, load_config
from gradasym.algos.ccm_madrl.replay import ReplayBatch
from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.algos.ccm_madrl.runner import Trainer

from devices import DEVICES, needs_gpu

# the modules that hold or create the agent's tensors (the replay storage and the monitor's
# own bookkeeping are CPU by design and not watched)
GUARDED = frozenset(str(Path(m.__file__).resolve()) for m in (
    gradasym.algos.ccm_madrl.agent, gradasym.algos.ccm_madrl.critic, gradasym.algos.ccm_madrl.layers,
    gradasym.algos.ccm_madrl.networks, gradasym.algos.ccm_madrl.optim, gradasym.algos.ccm_madrl.policies, gradasym.algos.ccm_madrl.runner))
TORCH_DIR = str(Path(torch.__file__).resolve().parent)
FACTORIES = frozenset({
    torch.arange, torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.as_tensor, torch.randn,
    torch.rand, torch.randint, torch.randperm, torch.eye, torch.linspace, torch.empty_strided, torch.scalar_tensor,
})


@functools.lru_cache(maxsize=None)
def _resolved(filename: str) -> str:
    return str(Path(filename).resolve())


class DeviceGuard(TorchFunctionMode):
    """Records, as ``file:line: what``, every tensor factory called from a ``guarded`` file
    without a device (no ``device=``, or ``device=None``; ``torch.as_tensor`` of a tensor keeps
    its device and is fine), every ``torch.from_numpy`` there (always a CPU tensor; it does not
    pass through torch function modes, so the guard replaces it while active), and every
    ``Tensor.numpy()`` or ``np.asarray(tensor)`` there on a tensor that is not the result of a
    ``.cpu()`` call."""

    def __init__(self, guarded: frozenset[str] = GUARDED) -> None:
        super().__init__()
        self.guarded = guarded
        self.found: list[str] = []
        self._moved: dict[int, weakref.ref] = {}  # id -> tensor returned by .cpu()
        self._from_numpy = torch.from_numpy

    def __enter__(self):
        real = self._from_numpy

        def from_numpy(array):
            where = self._caller()
            if where:
                self.found.append(f"{where}: torch.from_numpy (a CPU tensor)")
            return real(array)

        torch.from_numpy = from_numpy
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        return super().__exit__(*exc)

    def _caller(self) -> str | None:
        """``file:line`` of the first frame outside torch above the guard's own two frames, if
        it is in a guarded file."""
        frame = sys._getframe(2)
        while frame is not None and _resolved(frame.f_code.co_filename).startswith(TORCH_DIR):
            frame = frame.f_back
        if frame is None or _resolved(frame.f_code.co_filename) not in self.guarded:
            return None
        return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if func in FACTORIES and kwargs.get("device") is None:
            if not (func is torch.as_tensor and args and torch.is_tensor(args[0])):
                where = self._caller()
                if where:
                    self.found.append(f"{where}: torch.{name} without device=")
        elif name == "cpu" and torch.is_tensor(out):
            self._moved[id(out)] = weakref.ref(out)
        elif name in ("numpy", "__array__") and args and torch.is_tensor(args[0]):
            ref = self._moved.get(id(args[0]))
            if ref is None or ref() is not args[0]:
                where = self._caller()
                if where:
                    self.found.append(f"{where}: .numpy() without .cpu()")
        return out


def _leak(device_named: bool) -> np.ndarray:
    """A helper 'module' for the guard's self-test: factories and conversions to numpy."""
    if device_named:
        t = torch.arange(3, device="cpu")
        torch.as_tensor(np.zeros(2), device="cpu")
        np.asarray(t.cpu())
        return t.double().cpu().numpy()
    t = torch.arange(3)
    torch.zeros(2, device=None)
    torch.from_numpy(np.zeros(2))
    np.asarray(t)
    return t.double().numpy()


def test_the_guard_catches_unnamed_devices() -> None:
    guard = DeviceGuard(guarded=frozenset({str(Path(__file__).resolve())}))
    with guard:
        _leak(device_named=True)
    assert guard.found == []
    with guard:
        _leak(device_named=False)
    assert [f.split(": ", 1)[1] for f in guard.found] == [
        "torch.arange without device=", "torch.zeros without device=", "torch.from_numpy (a CPU tensor)",
        ".numpy() without .cpu()", ".numpy() without .cpu()"]
    assert torch.from_numpy is guard._from_numpy  # restored on exit


SMALL = {
    "env.n_agents": 4, "env.k_channel": 2, "env.n_units": 2, "agent.batch_size": 8,
    "agent.memory_capacity": 200, "agent.critic_hidden": [32, 16], "agent.eps_decay": 2.0,  # greedy master soon
    "run.log_interval": 1, "run.eval_interval": 2, "run.threads": 1,
    "run.engine": "torch",  # the device plumbing is the torch engine's (the compiled engine is CPU only)
}
VARIANTS = {  # every code path of the single-run trainer
    "sequential": ([], {}),
    "simultaneous": ([], {"agent.actor_update": "simultaneous"}),
    "original": ([], {"run.tracking": "original"}),
    "original-simultaneous": ([], {"run.tracking": "original", "agent.actor_update": "simultaneous"}),
    "layernorm": (["layernorm"], {}),
    "fullnorm": (["fullnorm"], {}),
    "squashed-gaussian": (["squashed-gaussian"], {}),
    "beta+reward-norm": (["beta-policy", "reward-norm"], {}),
    "clip+delay+penalty": (["gradclip", "td3-delay", "preact-penalty"], {}),
}


def small_cfg(presets=(), **overrides):
    return load_config(presets=list(presets), overrides={**SMALL, **overrides})


def _train(cfg, episodes: int) -> Trainer:
    trainer = Trainer(cfg)
    for _ in range(episodes):
        trainer.run_episode()
    return trainer


def test_every_tensor_of_the_agent_names_its_device() -> None:
    """Single runs (every variant, with greedy master, evaluation, checkpoint and resume) under
    the guard."""
    guard = DeviceGuard()
    with guard:
        for presets, overrides in VARIANTS.values():
            cfg = small_cfg(presets, **overrides)
            trainer = _train(cfg, 4)
            resumed = Trainer(cfg)
            resumed.load_state_dict(trainer.state_dict())
            resumed.run_episode()
    assert guard.found == [], "\n".join(sorted(set(guard.found)))


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(tree) if torch.is_tensor(t)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_agent_is_built_on_its_device(variant) -> None:
    """Without a GPU, on PyTorch's data-less ``meta`` device (a device other than the CPU that
    every machine has; nothing can be trained there): a newly built agent holds its networks,
    their targets and the actors' Adam moments there, takes numbers in there, and keeps the
    environment side (replay storage, running statistics) on the CPU."""
    presets, overrides = VARIANTS[variant]
    agent = CCMMADRL(small_cfg(presets, **overrides), seed=0, device="meta")
    held = [*agent.actors.parameters(), *agent.critic.parameters(), *agent.target_actors.parameters(),
            *agent.target_critic.parameters(), *agent.actor_optim.exp_avg, *agent.actor_optim.exp_avg_sq]
    assert held and {t.device.type for t in held} == {"meta"}
    assert agent.as_tensor(np.zeros((4, 7))).device.type == "meta"
    stats = [rms for rms in (agent.obs_rms, agent.reward_rms) if rms is not None]
    assert agent.replay.states.device.type == "cpu" and all(r.mean.device.type == "cpu" for r in stats)


@pytest.mark.parametrize("variant", ["sequential", "simultaneous", "fullnorm", "squashed-gaussian"])
@pytest.mark.parametrize("device", DEVICES)
def test_agent_state_lives_on_its_device(device, variant) -> None:
    presets, overrides = VARIANTS[variant]
    trainer = _train(small_cfg(presets, **overrides, **{"run.device": device}), 3)
    agent, kind = trainer.agent, torch.device(device).type
    assert agent.device.type == kind
    adam = [v for st in agent.critic_optim.state.values() for k, v in st.items() if k != "step"]
    on_device = [*agent.actors.parameters(), *agent.critic.parameters(), *agent.target_actors.parameters(),
                 *agent.target_critic.parameters(), *agent.actor_optim.exp_avg, *agent.actor_optim.exp_avg_sq, *adam]
    assert adam and all(t.device.type == kind for t in on_device)
    # torch.optim.Adam keeps its step count on the CPU (not capturable)
    assert all(st["step"].device.type == "cpu" for st in agent.critic_optim.state.values())
    upd = agent.update()
    grads = [*upd.actor_grads.values(), *upd.critic_grads.values(), upd.preact, *upd.actor_hidden, *upd.critic_hidden]
    assert all(t.device.type == kind for t in grads)
    assert isinstance(upd.td_errors, np.ndarray) and isinstance(upd.actor_losses, np.ndarray)
    step = agent.act(trainer.states, trainer.episodes_done)
    assert isinstance(step.actions, np.ndarray) and isinstance(step.env_actions, np.ndarray)
    # the environment side and the replay storage stay on the CPU; checkpoints are CPU-only
    assert agent.replay.states.device.type == "cpu"
    assert all(t.device.type == "cpu" for t in _tensors(trainer.state_dict()))


@pytest.mark.parametrize("device", DEVICES)
def test_replay_batch_moves_to_a_device(device) -> None:
    t = torch.arange(6.0).view(2, 3)
    batch = ReplayBatch(t, t, t, t[:, 0], t, t[:, 0], t[:, 0], np.array([0, 1]))
    moved = batch.to(device)
    assert all(getattr(moved, f).device.type == torch.device(device).type for f in ("states", "weights", "dones"))
    assert torch.equal(moved.states.cpu(), t) and moved.indices is batch.indices
    if device == "cpu":  # nothing is copied where the tensors are already
        assert moved.states is t


@needs_gpu
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_the_other_device(tmp_path, first, then) -> None:
    from gradasym.algos.ccm_madrl.runner import run_experiment

    out = tmp_path / "run"
    run_experiment(small_cfg(**{"run.device": first, "run.episodes": 3, "run.keep_replay": True}), out)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert all(t.device.type == "cpu" for t in _tensors(ckpt))
    summary = run_experiment(small_cfg(**{"run.device": then, "run.episodes": 5}), out)
    assert summary["status"] == "finished" and summary["episodes_run"] == 5


# ------------------------------------------------------------------ config and CLI
def test_device_names_are_checked(monkeypatch) -> None:
    check_device("cpu")
    with pytest.raises(ConfigError, match=r"expected \"cpu\", \"cuda\" or \"cuda:N\""):
        check_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="torch sees no GPU on this machine") as err:
            check_device(name)
        assert "\n" not in str(err.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("cuda", "cuda:0", "cuda:1"):
        check_device(name)
    with pytest.raises(ConfigError, match=r"torch sees 2 GPU\(s\) on this machine \(cuda:0 to cuda:1\)"):
        check_device("cuda:2")
    assert load_config(overrides={"run.device": "cuda:1"}).run.device == "cuda:1"


@pytest.mark.parametrize("command", [["run"], ["sweep", "--seeds", "1"], ["reproduce"], ["run", "--algo", "td3"]])
def test_device_flag_without_a_gpu_is_a_one_line_error(tmp_path, capsys, monkeypatch, command) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also where a GPU is visible
    rc = main([*command, "--device", "cuda", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "run.device='cuda': torch sees no GPU" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_sb3_models_are_built_on_run_device(tmp_path, device) -> None:
    """Stable-Baselines3 gets ``run.device`` (its own device handling does the rest)."""
    pytest.importorskip("stable_baselines3")
    from gradasym import algos
    from gradasym.algos import sb3_runner

    cfg = algos.get("td3").load_config(overrides={"run.device": device, "run.steps": 300, "agent.learning_starts": 100,
                                                  "agent.policy_kwargs": '{"net_arch": [8, 8]}'})
    models = []
    real = sb3_runner.make_model
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sb3_runner, "make_model", lambda *a, **kw: models.append(real(*a, **kw)) or models[-1])
        summary = sb3_runner.run_sb3(cfg, tmp_path / "td3", resume=False)
    assert summary["status"] == "finished" and summary["gradient_steps"] > 0
    assert models[0].device.type == torch.device(device).type
    assert all(p.device.type == torch.device(device).type for p in models[0].policy.parameters())


class _Built(Exception):
    """Raised by :func:`_device_spy` once it has seen the device (nothing is built on it)."""


def _device_spy(monkeypatch, seen: list):
    """A stand-in constructor that records its ``device=`` and stops; ``check_device`` made to
    accept ``cuda:1`` (two GPUs pretended: nothing reaches a GPU, the spy stops first)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def spy(*args, **kw):
        seen.append(kw.get("device"))
        raise _Built

    return spy


def test_run_device_reaches_the_agent(monkeypatch) -> None:
    """The plumbing without a GPU: ``run.device`` is what the trainer hands the agent, whose device every other module follows;
    the ``cpu`` default alone could not tell it from a hard-coded CPU."""
    seen: list = []
    monkeypatch.setattr(gradasym.algos.ccm_madrl.runner, "CCMMADRL", _device_spy(monkeypatch, seen))
    with pytest.raises(_Built):
        Trainer(small_cfg(**{"run.device": "cuda:1"}))
    assert seen == ["cuda:1"]


def test_run_device_reaches_sb3(tmp_path, monkeypatch) -> None:
    """The same for Stable-Baselines3: ``run.device`` reaches SB3's constructor."""
    pytest.importorskip("stable_baselines3")
    from gradasym import algos
    from gradasym.algos import sb3_runner

    seen: list = []
    monkeypatch.setitem(sb3_runner.CLASSES, "td3", _device_spy(monkeypatch, seen))
    cfg = algos.get("td3").load_config(overrides={"run.device": "cuda:1", "run.steps": 300})
    with pytest.raises(_Built):
        sb3_runner.run_sb3(cfg, tmp_path / "td3", resume=False)
    assert seen == ["cuda:1"]
