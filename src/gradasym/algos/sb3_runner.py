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
* ``summary.json``: see :func:`summary`.

The folder rules of :mod:`gradasym.runfolder` apply as for CCM-MADRL runs (one
writer via ``.run.lock``, the stored config checked, temporary files of
interrupted writes removed, a full disk reported in one line).

No checkpoint: SB3 cannot continue a run bit-identically (replay buffer, RNG states
of numpy/torch/random, the environment), so an unfinished folder is refused with a
clear message instead of being resumed. A run that raises is written with
``status="failed"`` and its error, and the monitor's hooks are always removed.

Determinism: the model seed (SB3's ``seed``: networks, warm-up actions, action noise,
SB3's seeding of the global ``random``/numpy/torch generators) and the environment
seed (its resets) are derived from ``run.seed`` with :mod:`gradasym.seeding`. The same
config and thread count give the same numbers on the same machine and library
versions; SB3 seeds global generators, so other code using them in the same process
changes the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

from .. import __version__
from ..config import ConfigError
from ..errors import failure_text
from ..integrations.sb3 import SaturationMonitorCallback
from ..io import write_json, write_table
from ..process import configure_process
from ..provenance import collect as collect_provenance
from ..runfolder import DiskFullError, RunFolder, disk_full_guard
from ..schemas import IDENTITY_KEY, run_identity, table_metadata
from ..seeding import seed_sequence
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
}

#: Fields that may differ between a stored run and a rerun (threads depend on the number of workers).
_RESUMABLE_FIELDS = {("run", "threads")}

CANNOT_RESUME = ("Stable-Baselines3 runs cannot resume (the replay buffer and random states are not "
                 "checkpointed); rerun without --resume into a new folder")


def derived_seed(seed: int, stream: str) -> int:
    """A 31-bit seed for stream ``stream`` of run seed ``seed`` (what SB3 and Gymnasium accept)."""
    return int(seed_sequence(seed, stream).generate_state(1)[0] % (2**31))


# ------------------------------------------------------------------ building blocks
def make_env(env_cfg: SB3EnvConfig) -> Any:
    """The task (``env`` section) in SB3's ``Monitor`` (episode returns) and a one-env ``DummyVecEnv``."""
    import gymnasium as gym  # noqa: PLC0415
    from stable_baselines3.common.monitor import Monitor  # noqa: PLC0415
    from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: PLC0415

    kwargs = {} if env_cfg.max_episode_steps is None else {"max_episode_steps": env_cfg.max_episode_steps}
    return DummyVecEnv([lambda: Monitor(gym.make(env_cfg.id, **kwargs))])


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


# ------------------------------------------------------------------ the summary
def summary(cfg: SB3Config, model: Any, monitor_cb: Any, recorder: EpisodeRecorder | None,
            status: str, error: str | None, seconds: float) -> dict[str, Any]:
    """The run's ``summary.json`` (keys in ``docs/algorithms.md``; counters named by their unit)."""
    mon = monitor_cb.summary() if monitor_cb is not None else {}
    returns = [r["return"] for r in (recorder.rows if recorder else [])]
    k = max(1, len(returns) // 10)
    steps_run = int(model.num_timesteps) if model is not None else 0
    death = mon.get("per_agent_grad_death_episode") or [None]
    return {
        "status": status, "error": error, "algo": cfg.algo, "env": cfg.env.id,
        "actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr,
        "ent_coef_lr": (cfg.agent.ent_coef_lr or cfg.agent.actor_lr) if cfg.algo == "sac" else None,
        "seed": cfg.run.seed, "model_seed": derived_seed(cfg.run.seed, "sb3"),
        "env_seed": derived_seed(cfg.run.seed, "env"),
        "steps_requested": cfg.run.steps, "steps_run": steps_run,
        "gradient_steps": int(model._n_updates) if model is not None else 0,
        "actor_updates": monitor_cb.monitor.n_updates if monitor_cb is not None else 0,
        "stopping_step": mon.get("stopping_episode"),
        "grad_death_step": death[0],
        "critic_stopped": bool(mon.get("critic_stopped", False)),
        "critic_stop_step": mon.get("critic_stop_episode"),
        "all_frozen_at_end": bool(mon.get("all_frozen_at_end", False)),
        "diverged": bool(mon.get("diverged", False)), "diverged_step": mon.get("diverged_step"),
        "actor_diverged_step": mon.get("actor_diverged_step"), "critic_diverged_step": mon.get("critic_diverged_step"),
        "max_abs_preactivation": mon.get("max_abs_preactivation"),
        "final_saturation_ratio": mon.get("final_saturation_ratio"),
        "final_rho": mon.get("final_rho"),
        "episodes_run": len(returns),
        "return_first10": float(np.mean(returns[:k])) if returns else None,
        "final_return": float(np.mean(returns[-k:])) if returns else None,
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
        gradient_step, step = row.pop("episode"), row.pop("num_timesteps", None)
        rows.append({"gradient_step": gradient_step, "step": step, **row})
    return rows


# ------------------------------------------------------------------ the run
def _finished_or_refuse(folder: RunFolder, cfg: SB3Config) -> dict[str, Any]:
    """A finished run of the same config: its summary; an unfinished one cannot resume (ConfigError)."""
    stored = folder.read_config()
    folder.check_config(cfg.to_dict(), stored, folder.config_path, _RESUMABLE_FIELDS)
    folder.check_files(stored, "delete the run folder to train it again, or use another folder")
    done = folder.read_summary() or {}
    if done.get("status") == "finished":
        return done
    raise ConfigError(f"{folder.path} holds an unfinished {cfg.algo} run (status {done.get('status', 'unknown')}): "
                      + CANNOT_RESUME)


def run_sb3(cfg: SB3Config, out_dir: str | Path, resume: bool = True, progress: ProgressFn | None = None,
            show_progress: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return its ``summary.json`` dict.

    ``resume`` only returns the summary of a finished run of the same config; an
    unfinished folder is a :class:`ConfigError` (``CANNOT_RESUME``). Without
    ``resume`` an existing run folder is an error, so nothing is overwritten. The
    folder rules of :mod:`gradasym.runfolder` apply (one writer, stored-config check,
    temporary files of interrupted writes removed, a full disk is one clear line).
    """
    cfg.validate()
    folder = RunFolder(out_dir)
    folder.check_usable()  # a file, a sweep, foreign files: refused before any work
    if folder.holds_run() and not resume:
        raise ConfigError(f"{folder.path} already holds a run; choose another --out")
    with disk_full_guard(), folder.lock():
        folder.clean_temp_files()
        if folder.holds_run():
            return _finished_or_refuse(folder, cfg)
        configure_process(cfg.run.threads)
        return _train(cfg, folder, progress, show_progress)


def _train(cfg: SB3Config, folder: RunFolder, progress: ProgressFn | None, show_progress: bool) -> dict[str, Any]:
    """Build the agent, train, write the folder (the folder is locked and empty of runs)."""
    out = folder.path
    env = make_env(cfg.env)
    monitor_cb = recorder = model = None
    t0 = time.perf_counter()

    def write(status: str, error: str | None = None) -> dict[str, Any]:
        tracking = _tracking_rows(monitor_cb)
        with disk_full_guard(f"environment step {model.num_timesteps if model is not None else 0}"):
            meta = table_metadata(_config_record(cfg))  # the run's identity (gradasym.schemas)
            write_table(out / "episodes.parquet", _episode_frame(recorder), meta)
            write_table(out / "tracking.parquet", tracking, meta)
            s = summary(cfg, model, monitor_cb, recorder, status, error, time.perf_counter() - t0)
            write_json(folder.summary_path, s)
        return s

    try:
        # ConfigError before anything is written
        model = make_model(cfg.algo, cfg.agent, cfg.run.seed, env, device=cfg.run.device)
        folder.write_config(_config_record(cfg))
        monitor_cb = SaturationMonitorCallback(
            log_freq=cfg.run.log_interval, squash="tanh", saturation_threshold=cfg.run.saturation_threshold,
            freeze_tolerance=cfg.run.freeze_tolerance, grad_death_threshold=cfg.run.grad_death_threshold,
            record_to_logger=False)
        with _ProgressBar(cfg) if show_progress else _NoBar() as bar:
            recorder = EpisodeRecorder(cfg.run.steps, _reporter(cfg, lambda: monitor_cb, progress, bar))
            t0 = time.perf_counter()
            write("running")
            model.learn(total_timesteps=cfg.run.steps, callback=[monitor_cb, recorder], progress_bar=False)
            bar.finish(int(model.num_timesteps))
    except (ConfigError, DiskFullError):
        raise  # nothing (more) can be written
    except KeyboardInterrupt:
        if folder.config_path.exists():
            write("failed", "KeyboardInterrupt: interrupted; " + CANNOT_RESUME)
        raise
    except Exception as exc:
        if folder.config_path.exists():
            try:
                write("failed", failure_text(exc))
            except OSError:
                pass  # the original error matters more than the summary
        raise
    finally:
        if monitor_cb is not None:
            monitor_cb.close()  # hooks off, also on errors
        env.close()
    return write("finished")


def _episode_frame(recorder: EpisodeRecorder | None) -> Any:
    import pandas as pd  # noqa: PLC0415

    return pd.DataFrame(recorder.rows if recorder else [], columns=["episode", "step", "return", "length", "seconds"])


def _reporter(cfg: SB3Config, monitor: Callable[[], Any], progress: ProgressFn | None,
              bar: Any) -> Callable[[EpisodeRecorder], None]:
    """Progress after every episode: ``done``/``total`` in environment steps (``docs/algorithms.md``)."""
    def report(rec: EpisodeRecorder) -> None:
        mon = monitor().monitor
        done = int(rec.num_timesteps)
        info = {"done": done, "total": cfg.run.steps, "unit": "environment steps",
                "return": rec.rows[-1]["return"], "saturation_ratio": mon.last_saturation_ratio,
                "actors_stopped": int(mon.all_stopped_episode is not None),
                "stopping_step": mon.all_stopped_episode,
                "seconds_per_unit": (time.perf_counter() - rec.t_start) / max(1, done)}
        bar.advance(info)
        if progress is not None:
            progress(info)
    return report


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None: ...

    def advance(self, info: dict[str, Any]) -> None: ...

    def finish(self, done: int) -> None: ...


class _ProgressBar(_NoBar):
    """A rich bar over environment steps: last return, saturation, actor stopped."""

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

    def finish(self, done: int) -> None:
        """The steps after the last finished episode count too."""
        self.progress.update(self.task, completed=done)

    def advance(self, info: dict[str, Any]) -> None:
        sat = info["saturation_ratio"]
        self.progress.update(self.task, completed=info["done"], ret=f"{info['return']:.1f}",
                             sat="-" if sat is None or sat != sat else f"{sat:.2f}",
                             stopped="no" if info["stopping_step"] is None else f"at {info['stopping_step']}")
