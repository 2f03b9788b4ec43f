"""One Stable-Baselines3 run (TD3, DDPG, SAC) into the standard run folder.

``run_sb3(cfg, out_dir, resume=, progress=, show_progress=)`` has the signature of
:func:`gradasym.algos.ccm_madrl.runner.run_experiment`. It builds the real SB3 agent (with
:mod:`gradasym.algos.sb3_lr`'s separate learning rates) on the Gymnasium task,
attaches :class:`gradasym.integrations.sb3.SaturationMonitorCallback`, trains for
``run.steps`` environment steps and writes, atomically (``docs/algorithms.md``):

* ``config.json``: ``SB3Config.to_dict()`` (with ``algo``) plus ``version``;
* ``episodes.parquet``: one row per finished episode: ``episode`` (1-based),
  ``step`` (environment steps when it ended), ``return``, ``length``, ``seconds``;
* ``tracking.parquet``: the monitor's rows, keyed by ``gradient_step`` (and ``step``,
  the environment steps at that row);
* ``eval.parquet``: one row per deterministic evaluation (``run.eval_interval``);
* ``checkpoint.pt`` (+ ``checkpoint.prev.pt``): see :func:`checkpoint_state`;
* ``model.zip``: the trained agent as SB3 saves it (``TD3.load("model.zip")``), once finished;
* ``summary.json``: see :func:`summary`.

The folder rules of :mod:`gradasym.runfolder` apply as for CCM-MADRL runs (one
writer via ``.run.lock``, the stored config checked, temporary files of
interrupted writes removed, a full disk reported in one line).

Checkpoints and resume. SB3 learns in chunks of ``run.checkpoint_interval``
environment steps (``learn(..., reset_num_timesteps=False)`` one after the other, the
same chunks whether or not the run is interrupted); between two chunks the agent is
in a consistent state and the runner writes ``checkpoint.pt``: the networks and
optimiser states, SB3's counters and last observation, the filled part of the
replay buffer, the generators (torch, numpy and Python global ones, the action
space's), the monitor and the tables so far. The environment's state is restored by
replay: :class:`EpisodeStart` records the generator state before the current
episode's reset and the actions since, and a resumed run resets and steps a fresh
environment through them (checked against the stored observation). Everything in
the checkpoint is tensors or plain Python values (``torch.load(weights_only=True)``
reads it). A killed and resumed run gives the same tables as an uninterrupted one
(tested), except the wall-clock ``seconds`` columns.

Determinism: the model seed (SB3's ``seed``: networks, warm-up actions, action noise,
SB3's seeding of the global ``random``/numpy/torch generators) and the environment
seeds (training resets: stream ``env``; evaluation: ``eval_env``) are derived from
``run.seed`` with :mod:`gradasym.seeding`. The same config and thread count give the
same numbers on the same machine and library versions; SB3 seeds global generators,
so other code using them in the same process changes the run.
"""

from __future__ import annotations

import io
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

from .. import __version__
from ..config import ConfigError
from ..errors import failure_text
from ..integrations.sb3 import SaturationMonitorCallback
from ..io import read_json, write_bytes, write_json, write_table
from ..process import configure_process
from ..provenance import collect as collect_provenance
from ..runfolder import DiskFullError, RunFolder, RunFolderError, disk_full_guard
from ..schemas import IDENTITY_KEY, run_identity, table_metadata
from ..seeding import seed_sequence
from ..tensorboard import require as require_tensorboard
from .sb3_config import SB3AgentConfig, SB3Config, SB3EnvConfig
from .sb3_lr import CLASSES

ProgressFn = Callable[[dict[str, Any]], None]

#: Names for ``policy_kwargs["activation_fn"]`` (JSON cannot hold a class).
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU,
                                           "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}

#: Units of the summary's counters (also stored in summary.json under "units").
UNITS: dict[str, str] = {
    "steps_run": "environment steps", "steps_requested": "environment steps",
    "gradient_steps": "gradient steps", "actor_updates": "actor optimiser steps",
    "stopping_step": "gradient steps", "grad_death_step": "gradient steps",
    "critic_stop_step": "gradient steps", "diverged_step": "gradient steps",
    "actor_diverged_step": "gradient steps", "critic_diverged_step": "gradient steps",
    "seconds_per_step": "seconds per environment step",
    "final_return": "mean episode return over the last 10% of episodes",
    "final_eval_return": "mean return of the last evaluation's deterministic episodes",
    "final_eval_step": "environment steps",
}

#: Fields that may differ between a stored run and its resumption: threads depend on the
#: number of workers; TensorBoard only writes; ``run.steps`` may be raised to extend a run.
_RESUMABLE_FIELDS = {("run", "threads"), ("run", "tensorboard"), ("run", "steps"), ("run", "device")}

#: Version of the checkpoint's layout (``checkpoint_state``).
CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.zip"
EVAL_FILE = "eval.parquet"
_CHECKPOINT_KEYS = ("format", "config", "sb3", "policy", "optimizers", "replay", "rng", "env", "eval_env",
                    "monitor", "episode_rows", "eval_rows", "seconds")


def derived_seed(seed: int, stream: str) -> int:
    """A 31-bit seed for stream ``stream`` of run seed ``seed`` (what SB3 and Gymnasium accept)."""
    return int(seed_sequence(seed, stream).generate_state(1)[0] % (2**31))


# ------------------------------------------------------------------ building blocks
def _episode_start_class() -> type:
    import gymnasium as gym  # noqa: PLC0415

    class EpisodeStart(gym.Wrapper):
        """Records what the current episode's state follows from: the seed of its reset, or the
        environment's generator state just before it, and the actions since (``replay`` redoes
        them on a fresh environment). Exact for tasks whose reset draws only from
        ``env.np_random`` and whose step is deterministic given the action (Gymnasium's
        classic-control and MuJoCo tasks)."""

        def __init__(self, env: Any) -> None:
            super().__init__(env)
            self.start: dict[str, Any] = {"seed": None, "rng": None}
            self.actions: list[np.ndarray] = []

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
            rng = None if seed is not None else _bit_state(self.unwrapped.np_random)
            self.start, self.actions = {"seed": seed, "rng": rng}, []
            return self.env.reset(seed=seed, options=options)

        def step(self, action: Any) -> Any:
            self.actions.append(np.array(action, copy=True))
            return self.env.step(action)

        def state(self) -> dict[str, Any]:
            acts = np.stack(self.actions) if self.actions else np.zeros((0, *self.action_space.shape), np.float32)
            return {**self.start, "actions": torch.from_numpy(acts)}

        def replay(self, state: dict[str, Any]) -> Any:
            """Reset and step through ``state`` (from :meth:`state`); the last observation."""
            if state["seed"] is None:
                self.unwrapped.np_random.bit_generator.state = state["rng"]
            obs, _ = self.reset(seed=state["seed"])
            for a in state["actions"].numpy():
                obs, *_ = self.step(a)
            return obs

    return EpisodeStart


def _bit_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def make_env(env_cfg: SB3EnvConfig) -> Any:
    """The task (``env`` section) in SB3's ``Monitor`` (episode returns), :class:`EpisodeStart`
    and a one-env ``DummyVecEnv``."""
    import gymnasium as gym  # noqa: PLC0415
    from stable_baselines3.common.monitor import Monitor  # noqa: PLC0415
    from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: PLC0415

    kwargs = {} if env_cfg.max_episode_steps is None else {"max_episode_steps": env_cfg.max_episode_steps}
    start = _episode_start_class()
    return DummyVecEnv([lambda: start(Monitor(gym.make(env_cfg.id, **kwargs)))])


def make_model(algo: str, a: SB3AgentConfig, seed: int, env: Any, device: str = "cpu") -> Any:
    """The SB3 ``algo`` agent (``agent`` section, run seed, ``run.device``) with separate learning rates.

    SB3's complaints about the hyperparameters become ConfigErrors.
    """
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise  # noqa: PLC0415

    kwargs = a.sb3_kwargs()
    if "policy_kwargs" in kwargs:
        pk = dict(kwargs["policy_kwargs"])
        if isinstance(pk.get("activation_fn"), str):
            name = pk["activation_fn"].lower()
            if name not in ACTIVATIONS:
                raise ConfigError(f"agent.policy_kwargs: activation_fn '{name}' unknown (known: {', '.join(ACTIVATIONS)})")
            pk["activation_fn"] = ACTIVATIONS[name]
        kwargs["policy_kwargs"] = pk
    if a.action_noise != "none":
        n = int(np.prod(env.action_space.shape))
        cls = NormalActionNoise if a.action_noise == "normal" else OrnsteinUhlenbeckActionNoise
        kwargs["action_noise"] = cls(mean=np.zeros(n), sigma=a.action_noise_std * np.ones(n))
    try:
        model = CLASSES[algo]("MlpPolicy", env, learning_rate=a.actor_lr, seed=derived_seed(seed, "sb3"),
                              device=device, verbose=0, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"Stable-Baselines3 {algo.upper()} rejected the configuration: {exc}") from None
    model.set_learning_rates(a.actor_lr, a.critic_lr, a.ent_coef_lr)
    model.env.seed(derived_seed(seed, "env"))  # resets use the env stream, not the model seed
    return model


def make_logger(tensorboard_dir: Path | None, purge_step: int | None = None) -> Any:
    """SB3's logger: no output, or TensorBoard event files in ``tensorboard_dir`` (``purge_step``:
    TensorBoard hides the steps from there on that an earlier process wrote)."""
    from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat  # noqa: PLC0415

    if tensorboard_dir is None:
        return Logger(folder=None, output_formats=[])
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - the tensorboard extra
    fmt = TensorBoardOutputFormat.__new__(TensorBoardOutputFormat)  # its __init__ cannot purge
    fmt.writer = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge_step)
    fmt._is_closed = False
    return Logger(folder=str(tensorboard_dir), output_formats=[fmt])


class EpisodeRecorder(BaseCallback):
    """Collects one row per finished episode (from ``Monitor``'s ``info["episode"]``) and reports progress."""

    def __init__(self, total: int, report: Callable[["EpisodeRecorder"], None] | None = None) -> None:
        super().__init__(0)
        self.total = total
        self.report = report
        self.rows: list[dict[str, Any]] = []
        self._t_last = time.perf_counter()
        self.t_start = self._t_last

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is None:
                continue
            now = time.perf_counter()
            self.rows.append({"episode": len(self.rows) + 1, "step": int(self.num_timesteps),
                              "return": float(ep["r"]), "length": int(ep["l"]), "seconds": now - self._t_last})
            self._t_last = now
            if self.report is not None:
                self.report(self)
        return True


class Evaluator(BaseCallback):
    """Deterministic evaluation every ``run.eval_interval`` environment steps on its own
    environment (seed stream ``eval_env``: the first evaluation's first reset is seeded, later
    resets continue its generator). It only reads the policy (no generator of training is
    used), so evaluating does not change the training numbers."""

    def __init__(self, cfg: SB3Config) -> None:
        import gymnasium as gym  # noqa: PLC0415

        super().__init__(0)
        self.interval, self.episodes = cfg.run.eval_interval, cfg.run.eval_episodes
        kwargs = {} if cfg.env.max_episode_steps is None else {"max_episode_steps": cfg.env.max_episode_steps}
        self.env = gym.make(cfg.env.id, **kwargs)
        self.seed: int | None = derived_seed(cfg.run.seed, "eval_env")  # None once used
        self.rows: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        if self.interval and self.num_timesteps % self.interval == 0:
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        returns = []
        for _ in range(self.episodes):
            obs, _ = self.env.reset(seed=self.seed)
            self.seed, total, done = None, 0.0, False
            while not done:
                action, _ = self.model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = self.env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        row = {"step": int(self.num_timesteps), "gradient_step": int(self.model._n_updates),
               "eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
               "eval_return_min": float(np.min(returns)), "eval_return_max": float(np.max(returns)),
               "episodes": len(returns), "seconds": time.perf_counter() - t0}
        self.rows.append(row)
        return row

    def state(self) -> dict[str, Any]:
        used = self.seed is None
        return {"seed": self.seed, "rng": _bit_state(self.env.unwrapped.np_random) if used else None}

    def load(self, state: dict[str, Any]) -> None:
        from gymnasium.utils.seeding import np_random  # noqa: PLC0415

        self.seed = state["seed"]
        if state["rng"] is not None:
            rng, _ = np_random(0)
            rng.bit_generator.state = state["rng"]
            self.env.unwrapped.np_random = rng

    def close(self) -> None:
        self.env.close()


# ------------------------------------------------------------------ the summary
def summary(cfg: SB3Config, model: Any, monitor_cb: Any, recorder: EpisodeRecorder | None,
            status: str, error: str | None, seconds: float, eval_rows: list[dict[str, Any]] | None = None,
            episode_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's ``summary.json`` (keys in ``docs/algorithms.md``; counters named by their unit)."""
    mon = monitor_cb.summary() if monitor_cb is not None else {}
    rows = episode_rows if episode_rows is not None else (recorder.rows if recorder else [])
    returns = [r["return"] for r in rows]
    k = max(1, len(returns) // 10)
    steps_run = int(model.num_timesteps) if model is not None else 0
    death = mon.get("per_agent_grad_death_step") or [None]
    last_eval = (eval_rows or [{}])[-1]
    return {
        "status": status, "error": error, "algo": cfg.algo, "env": cfg.env.id,
        "actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr,
        "ent_coef_lr": (cfg.agent.ent_coef_lr or cfg.agent.actor_lr) if cfg.algo == "sac" else None,
        "seed": cfg.run.seed, "model_seed": derived_seed(cfg.run.seed, "sb3"),
        "env_seed": derived_seed(cfg.run.seed, "env"),
        "steps_requested": cfg.run.steps, "steps_run": steps_run,
        "gradient_steps": int(model._n_updates) if model is not None else 0,
        "actor_updates": monitor_cb.monitor.n_updates if monitor_cb is not None else 0,
        "stopping_step": mon.get("stopping_step"),
        "grad_death_step": death[0],
        "critic_stopped": bool(mon.get("critic_stopped", False)),
        "critic_stop_step": mon.get("critic_stop_step"),
        "all_frozen_at_end": bool(mon.get("all_frozen_at_end", False)),
        "diverged": bool(mon.get("diverged", False)), "diverged_step": mon.get("diverged_step"),
        "actor_diverged_step": mon.get("actor_diverged_step"), "critic_diverged_step": mon.get("critic_diverged_step"),
        "max_abs_preactivation": mon.get("max_abs_preactivation"),
        "final_saturation_ratio": mon.get("final_saturation_ratio"),
        "final_rho": mon.get("final_rho"),
        "episodes_run": len(returns),
        "return_first10": float(np.mean(returns[:k])) if returns else None,
        "final_return": float(np.mean(returns[-k:])) if returns else None,
        "final_eval_return": last_eval.get("eval_return"), "final_eval_step": last_eval.get("step"),
        "events": [event_line(e) for e in monitor_cb.monitor.events] if monitor_cb is not None else [],
        "seconds_total": seconds,
        "seconds_per_step": seconds / steps_run if steps_run else None,
        "units": UNITS, "version": __version__, IDENTITY_KEY: run_identity(_config_record(cfg)),
        "provenance": collect_provenance(),  # code commit, machine, library versions
    }


def _config_record(cfg: SB3Config) -> dict[str, Any]:
    """``config.json``'s content."""
    return {**cfg.to_dict(), "version": __version__}


def _tracking_rows(monitor_cb: Any) -> list[dict[str, Any]]:
    """The callback's rows with their counters named by unit (``gradient_step``, ``step``)."""
    rows = []
    for row in (monitor_cb.rows if monitor_cb is not None else []):
        row = dict(row)
        gradient_step, step = row.pop("step"), row.pop("num_timesteps", None)
        rows.append({"gradient_step": gradient_step, "step": step, **row})
    return rows


# ------------------------------------------------------------------ checkpoints
def _np_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).copy())


def checkpoint_state(cfg: SB3Config, run: "_Run") -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain Python values (``weights_only``-loadable)."""
    model = run.model
    buf = model.replay_buffer
    size = buf.buffer_size if buf.full else buf.pos
    fields = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
    replay = {"pos": int(buf.pos), "full": bool(buf.full),
              **{f: None if getattr(buf, f, None) is None else _np_tensor(getattr(buf, f)[:size]) for f in fields}}
    noise = model.action_noise
    np_state = np.random.get_state()
    ent = getattr(model, "ent_coef_optimizer", None)
    log_ent = getattr(model, "log_ent_coef", None)
    return {
        "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
        "sb3": {"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
                "episode_num": int(model._episode_num), "last_obs": _np_tensor(model._last_obs),
                "last_episode_starts": _np_tensor(model._last_episode_starts),
                "ep_info_buffer": [dict(e) for e in model.ep_info_buffer],
                "ep_success_buffer": list(model.ep_success_buffer),
                "progress_remaining": float(model._current_progress_remaining),
                "noise_prev": _np_tensor(noise.noise_prev) if hasattr(noise, "noise_prev") else None,
                "log_ent_coef": log_ent.detach().cpu().clone() if log_ent is not None else None},
        "policy": {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()},
        "optimizers": {"actor": model.actor.optimizer.state_dict(), "critic": model.critic.optimizer.state_dict(),
                       "ent_coef": ent.state_dict() if ent is not None else None},
        "replay": replay,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *(x.item() if hasattr(x, "item") else x
                                                              for x in np_state[2:])],
                "action_space": _bit_state(model.action_space.np_random)},
        "env": model.env.envs[0].state(),
        "eval_env": run.evaluator.state() if run.evaluator is not None else None,
        "monitor": run.monitor_cb.state_dict(),
        "episode_rows": [dict(r) for r in run.recorder.rows],
        "eval_rows": [dict(r) for r in run.evaluator.rows] if run.evaluator is not None else [],
        "seconds": run.seconds(),
    }


def _check_checkpoint(state: Any) -> None:
    """``RunFolder.load_checkpoint``'s ``validate``: an SB3 checkpoint of this layout."""
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError("not a gradasym checkpoint (no stored configuration)")
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a Stable-Baselines3 checkpoint of format {CHECKPOINT_FORMAT} "
                         f"(missing {', '.join(missing) or 'nothing'}; format {state.get('format')!r})")


def load_checkpoint_state(run: "_Run", state: dict[str, Any]) -> None:
    """Restore :func:`checkpoint_state` into a freshly built run (same config): the environment is
    replayed and checked against the stored observation; the generators are set last."""
    model, s = run.model, state["sb3"]
    model.policy.load_state_dict(state["policy"])
    model.actor.optimizer.load_state_dict(state["optimizers"]["actor"])
    model.critic.optimizer.load_state_dict(state["optimizers"]["critic"])
    if state["optimizers"]["ent_coef"] is not None:
        with torch.no_grad():
            model.log_ent_coef.copy_(s["log_ent_coef"])
        model.ent_coef_optimizer.load_state_dict(state["optimizers"]["ent_coef"])
    model.num_timesteps, model._n_updates, model._episode_num = s["num_timesteps"], s["n_updates"], s["episode_num"]
    model._last_obs = s["last_obs"].numpy().copy()
    model._last_episode_starts = s["last_episode_starts"].numpy().copy()
    model._current_progress_remaining = s["progress_remaining"]
    model.ep_info_buffer = deque(s["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(s["ep_success_buffer"], maxlen=model._stats_window_size)
    if s["noise_prev"] is not None:
        model.action_noise.noise_prev = s["noise_prev"].numpy().copy()
    buf, rb = model.replay_buffer, state["replay"]
    for name, value in rb.items():
        if isinstance(value, torch.Tensor):
            getattr(buf, name)[: len(value)] = value.numpy()
    buf.pos, buf.full = rb["pos"], rb["full"]
    obs = model.env.envs[0].replay(state["env"])
    model.env._reset_seeds()  # the first reset's seed is in the replayed state, not pending
    if not np.array_equal(np.asarray(obs, dtype=model._last_obs.dtype), model._last_obs[0]):
        raise RunFolderError(f"{run.cfg.env.id}: replaying the current episode did not give the stored observation, "
                             "so this environment cannot be resumed identically; restart the run in another folder")
    if run.evaluator is not None and state["eval_env"] is not None:
        run.evaluator.load(state["eval_env"])
        run.evaluator.rows = [dict(r) for r in state["eval_rows"]]
    run.monitor_cb.load_state_dict(state["monitor"])
    run.recorder.rows = [dict(r) for r in state["episode_rows"]]
    run.seconds_before = float(state["seconds"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    model.action_space.np_random.bit_generator.state = rng["action_space"]


def _as_tuple(x: Any) -> Any:
    """``random.getstate()`` back from its stored form (lists where tuples were, after a round trip)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ------------------------------------------------------------------ the run
class _Run:
    """The pieces of one SB3 run: model, callbacks, evaluator, SB3's logger."""

    def __init__(self, cfg: SB3Config, folder: RunFolder, env: Any, report: Callable[[EpisodeRecorder], None],
                 on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.cfg = cfg
        self.model = make_model(cfg.algo, cfg.agent, cfg.run.seed, env, device=cfg.run.device)  # ConfigError first
        self.monitor_cb = SaturationMonitorCallback(
            log_freq=cfg.run.log_interval, squash="tanh", saturation_threshold=cfg.run.saturation_threshold,
            freeze_tolerance=cfg.run.freeze_tolerance, grad_death_threshold=cfg.run.grad_death_threshold,
            record_to_logger=False, on_event=on_event)
        self.recorder = EpisodeRecorder(cfg.run.steps, report)
        self.evaluator = Evaluator(cfg) if cfg.run.eval_interval else None
        self.seconds_before = 0.0
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    @property
    def callbacks(self) -> list[Any]:
        return [self.monitor_cb, self.recorder] + ([self.evaluator] if self.evaluator is not None else [])

    def close(self) -> None:
        self.monitor_cb.close()  # hooks off, also on errors
        if self.evaluator is not None:
            self.evaluator.close()


def _open(folder: RunFolder, cfg: SB3Config) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(checkpoint state, None)`` to resume, ``(None, summary)`` of an old finished run without a
    checkpoint, or ``(None, None)`` to start from scratch (the stored config checked)."""
    wanted = cfg.to_dict()
    stored = folder.read_config()
    folder.check_config(wanted, stored, folder.config_path, _RESUMABLE_FIELDS)
    folder.check_files(stored, "delete the run folder to train it again, or use another folder")
    loaded = folder.load_checkpoint(validate=_check_checkpoint, warn=_warn)
    if loaded is not None:
        state, path = loaded
        folder.check_config(wanted, state["config"], path, _RESUMABLE_FIELDS)
        done = int(state["sb3"]["num_timesteps"])
        if done > cfg.run.steps:
            raise ConfigError(f"{folder.path} has trained {done} environment steps already, more than run.steps = "
                              f"{cfg.run.steps}; a run cannot be shortened: ask for at least {done}, or use another --out")
        finished = _read_summary(folder)
        if done == cfg.run.steps and finished.get("status") == "finished" and finished.get("steps_run") == done:
            return None, finished  # nothing to do
        return state, None
    done = _read_summary(folder)
    if done.get("status") == "finished":  # written before SB3 runs had checkpoints
        return None, done
    return None, None  # started but no checkpoint yet: nothing to keep, start again


def _read_summary(folder: RunFolder) -> dict[str, Any]:
    """``summary.json`` ({} when absent or unreadable: it is rewritten)."""
    try:
        return folder.read_summary() or {}
    except RunFolderError:
        _warn(f"{folder.summary_path} is unreadable; it is rewritten")
        return {}


def run_sb3(cfg: SB3Config, out_dir: str | Path, resume: bool = True, progress: ProgressFn | None = None,
            show_progress: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return its ``summary.json`` dict.

    With ``resume`` a folder holding a checkpoint of the same config continues from it
    (``run.steps`` may be raised to extend a run, never lowered); a finished run returns
    its summary. Without ``resume`` an existing run folder is an error, so nothing is
    overwritten. The folder rules of :mod:`gradasym.runfolder` apply (one writer,
    stored-config check, temporary files of interrupted writes removed, a bad newest
    checkpoint falls back to ``checkpoint.prev.pt``, a full disk is one clear line).
    """
    cfg.validate()
    if cfg.run.tensorboard:
        require_tensorboard()
    folder = RunFolder(out_dir)
    folder.check_usable()  # a file, a sweep, foreign files: refused before any work
    if folder.holds_run() and not resume:
        raise ConfigError(f"{folder.path} already holds a run; pass --resume to continue it or choose another --out")
    with disk_full_guard(), folder.lock():
        folder.clean_temp_files()
        state = None
        if folder.holds_run():
            state, finished = _open(folder, cfg)
            if finished is not None:
                return finished
        configure_process(cfg.run.threads)
        return _train(cfg, folder, state, progress, show_progress)


def _train(cfg: SB3Config, folder: RunFolder, state: dict[str, Any] | None, progress: ProgressFn | None,
           show_progress: bool) -> dict[str, Any]:
    """Build (and restore) the agent, train chunk by chunk, write the folder (the folder is locked)."""
    out = folder.path
    env = make_env(cfg.env)
    run: _Run | None = None
    board = None

    def write(status: str, error: str | None = None, checkpoint: bool = False) -> dict[str, Any]:
        assert run is not None
        steps = int(run.model.num_timesteps)
        with disk_full_guard(f"environment step {steps}"):
            if board is not None:
                board.write(run)
            if checkpoint:
                folder.save_checkpoint(checkpoint_state(cfg, run))
            if status == "finished":
                buffer = io.BytesIO()
                run.model.save(buffer)
                write_bytes(out / MODEL_FILE, buffer)
            meta = table_metadata(_config_record(cfg))  # the run's identity (gradasym.schemas)
            write_table(out / "episodes.parquet", _episode_frame(run.recorder.rows), meta)
            write_table(out / "tracking.parquet", _tracking_rows(run.monitor_cb), meta)
            if run.evaluator is not None:
                write_table(out / EVAL_FILE, _eval_frame(run.evaluator.rows), meta)
            s = summary(cfg, run.model, run.monitor_cb, run.recorder, status, error, run.seconds(),
                        run.evaluator.rows if run.evaluator is not None else None)
            write_json(folder.summary_path, s)
        return s

    try:
        with _ProgressBar(cfg) if show_progress else _NoBar() as bar:
            run = _Run(cfg, folder, env, _reporter(cfg, lambda: run, progress, bar), bar.event)
            if state is not None:
                load_checkpoint_state(run, state)
                del state
            folder.write_config(_config_record(cfg))
            board = _open_board(cfg, out, run)
            run.t0 = time.perf_counter()
            bar.start(int(run.model.num_timesteps))
            write("running")  # a run killed before its first checkpoint starts again from scratch
            interval = cfg.run.checkpoint_interval
            while run.model.num_timesteps < cfg.run.steps:
                target = min(cfg.run.steps, (run.model.num_timesteps // interval + 1) * interval)
                run.model.learn(total_timesteps=target - run.model.num_timesteps, callback=run.callbacks,
                                reset_num_timesteps=False, progress_bar=False)
                if run.model.num_timesteps < cfg.run.steps:
                    write("running", checkpoint=True)
            bar.finish(int(run.model.num_timesteps))
            return write("finished", checkpoint=True)  # before the TensorBoard writer closes
    except (ConfigError, DiskFullError):
        raise  # nothing (more) can be written; the last checkpoint is intact
    except KeyboardInterrupt:
        raise  # the last checkpoint stays valid; a rerun with resume continues from it
    except Exception as exc:
        if run is not None and folder.config_path.exists():
            try:  # the tables so far (past the last checkpoint, which stays as it was) and the error
                write("failed", failure_text(exc))
            except OSError:
                pass  # the original error matters more than the summary
        raise
    finally:
        if run is not None:
            run.close()
        if board is not None:
            board.close()
        env.close()


def _warn(text: str) -> None:
    print(f"gradasym: warning: {text}", file=sys.stderr, flush=True)


def _episode_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame(rows, columns=["episode", "step", "return", "length", "seconds"])


EVAL_COLUMNS = ["step", "gradient_step", "eval_return", "eval_return_std", "eval_return_min", "eval_return_max",
                "episodes", "seconds"]


def _eval_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


# ------------------------------------------------------------------ TensorBoard
class _Board:
    """``run.tensorboard``: SB3's own scalars (its logger: every 4 episodes and at every checkpoint) and,
    written before every checkpoint,
    the monitor's rows (``tracking/<column>``), the episodes (``episode/return``, ``episode/length``)
    and evaluations (``eval/return``), all at the environment step, into ``RUN/tensorboard/``.
    ``written.json`` records the last step written; a resumed run purges the steps after its
    checkpoint (as CCM-MADRL runs do, ``gradasym.tensorboard``)."""

    def __init__(self, out: Path, run: _Run) -> None:
        from ..tensorboard import DIRNAME, MARKER  # noqa: PLC0415

        self.dir, self.marker = out / DIRNAME, out / DIRNAME / MARKER
        done = int(run.model.num_timesteps)
        has_events = self.dir.is_dir() and any(self.dir.glob("events.out.tfevents.*"))
        mark = read_json(self.marker) if has_events and self.marker.exists() else None
        last = int(mark["step"]) if isinstance(mark, dict) and "step" in mark else 0
        self.written = min(last, done)
        self.dir.mkdir(parents=True, exist_ok=True)
        run.model.set_logger(make_logger(self.dir, purge_step=self.written + 1 if has_events else None))
        self.writer = run.model.logger.output_formats[0].writer
        self.logger = run.model.logger

    def write(self, run: _Run) -> None:
        from ..tensorboard import _scalars  # noqa: PLC0415

        last, add = self.written, self.writer.add_scalar
        if run.model.ep_info_buffer:  # SB3's scalars recorded since its last dump (it dumps every 4 episodes)
            run.model.dump_logs()
        for row in _tracking_rows(run.monitor_cb):
            if row["step"] is not None and row["step"] > last:
                for tag, v in _scalars({k: v for k, v in row.items() if k not in ("step", "gradient_step")}, "tracking"):
                    add(tag, v, global_step=int(row["step"]))
        for row in run.recorder.rows:
            if row["step"] > last:
                add("episode/return", row["return"], global_step=row["step"])
                add("episode/length", row["length"], global_step=row["step"])
        for row in (run.evaluator.rows if run.evaluator is not None else []):
            if row["step"] > last:
                add("eval/return", row["eval_return"], global_step=row["step"])
        self.writer.flush()
        self.written = max(last, int(run.model.num_timesteps))
        write_json(self.marker, {"step": self.written})

    def close(self) -> None:
        self.logger.close()


def _open_board(cfg: SB3Config, out: Path, run: _Run) -> _Board | None:
    if not cfg.run.tensorboard:
        run.model.set_logger(make_logger(None))
        return None
    return _Board(out, run)


def _reporter(cfg: SB3Config, get_run: Callable[[], Any], progress: ProgressFn | None,
              bar: Any) -> Callable[[EpisodeRecorder], None]:
    """Progress after every episode: ``done``/``total`` in environment steps (``docs/algorithms.md``)."""
    def report(rec: EpisodeRecorder) -> None:
        run = get_run()
        mon = run.monitor_cb.monitor
        done = int(rec.num_timesteps)
        info = {"done": done, "total": cfg.run.steps, "unit": "environment steps",
                "return": rec.rows[-1]["return"], "saturation_ratio": mon.last_saturation_ratio,
                "actors_stopped": int(mon.all_stopped_episode is not None),
                "stopping_step": mon.all_stopped_episode,
                "seconds_per_unit": (time.perf_counter() - rec.t_start) / max(1, done),
                "events": [event_line(e) for e in mon.events]}
        bar.advance(info)
        if progress is not None:
            progress(info)
    return report


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    """A monitor event with its message in an SB3 run's units (the monitor counts gradient steps)."""
    return {**event, "message": f"gradient step {event['step']}: {event.get('text', event['message'])}"}


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None: ...

    def start(self, done: int) -> None: ...

    def advance(self, info: dict[str, Any]) -> None: ...

    def finish(self, done: int) -> None: ...

    def event(self, event: dict[str, Any]) -> None: ...


class _ProgressBar(_NoBar):
    """A rich bar over environment steps: last return, saturation, actor stopped; monitor events as lines."""

    def __init__(self, cfg: SB3Config) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: PLC0415

        self.progress = Progress(
            TextColumn("[bold]env step {task.completed:>8.0f}/{task.total:.0f}"), BarColumn(),
            TextColumn("return {task.fields[ret]:>9}"), TextColumn("sat {task.fields[sat]:>5}"),
            TextColumn("actor stopped {task.fields[stopped]}"), TimeElapsedColumn(), TimeRemainingColumn())
        self.task = self.progress.add_task("run", total=cfg.run.steps, ret="-", sat="-", stopped="no")

    def __enter__(self) -> "_ProgressBar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start(self, done: int) -> None:
        self.progress.update(self.task, completed=done)

    def finish(self, done: int) -> None:
        """The steps after the last finished episode count too."""
        self.progress.update(self.task, completed=done)

    def event(self, event: dict[str, Any]) -> None:
        self.progress.console.print(f"gradasym: {event_line(event)['message']}", soft_wrap=True, markup=False,
                                    highlight=False)  # one line, as written

    def advance(self, info: dict[str, Any]) -> None:
        sat = info["saturation_ratio"]
        self.progress.update(self.task, completed=info["done"], ret=f"{info['return']:.1f}",
                             sat="-" if sat is None or sat != sat else f"{sat:.2f}",
                             stopped="no" if info["stopping_step"] is None else f"at {info['stopping_step']}")
