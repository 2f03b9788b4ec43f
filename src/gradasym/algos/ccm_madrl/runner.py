"""One training run of CCM-MADRL on the MEC environment, with full tracking.

``run_experiment`` owns the episode loop (``docs/study.md``, "The algorithm"):
act for ``steps_per_episode`` steps, store every transition, run one training
update after every episode once more than ``episodes_before_train`` episodes are
done, feed the update to the monitor, and write the run folder described in
``docs/architecture.md``. It checkpoints atomically every
``run.checkpoint_interval`` episodes and at the end, so a killed run resumes from
its last checkpoint and gives the same numbers as an uninterrupted one. The folder
rules (lock, stored-configuration check, checkpoint rotation, temporary-file
cleanup, disk-full errors) live in :mod:`gradasym.runfolder`.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gradasym import __version__
from .agent import AgentDims, CCMMADRL, epsilon
from .compiled import resolve_engine
from .remedies import Remedies
from gradasym.config import Config, ConfigError, check_memory
from gradasym.errors import failure_text
from gradasym.env.mec import MECEnv
from gradasym.io import write_json, write_table
from gradasym.monitor import ActorCriticMonitor
from gradasym.process import configure_process
from gradasym.provenance import collect as collect_provenance
from gradasym.runfolder import (MIXED, SINGLE, TRAINER_KEY, DiskFullError, RunFolder, RunFolderError, continued_trainer,
                        disk_full_guard)
from gradasym.schemas import IDENTITY_KEY, check_checkpoint, run_identity, table_metadata
from gradasym.seeding import numpy_generator
from gradasym.tensorboard import open_for_run as open_tensorboard
from gradasym.tensorboard import require as require_tensorboard

ProgressFn = Callable[[dict[str, Any]], None]

# Fields that may differ between a run and its resumption.
# The engines compute the same algorithm on the same state (a checkpoint continues on either).
_RESUMABLE_FIELDS = {("run", "episodes"), ("run", "threads"), ("run", "device"), ("run", "tensorboard"),
                     ("run", "keep_replay"), ("run", "engine")}


class Trainer:
    """The state of one run: environment(s), agent, monitor and the tables so far.

    The composition root of a CCM-MADRL run: it holds the whole :class:`Config` and hands
    each component its own part (``docs/architecture.md``, "Who receives what"): the
    environments ``cfg.env`` and their generators, the agent ``cfg.agent`` with the
    environment's :class:`~gradasym.algos.ccm_madrl.agent.AgentDims`, the seed, ``run.tracking`` and ``run.device``, the
    monitor the number of actors, the ``run`` thresholds and the agent's squash.
    ``engine`` is the resolved engine (``"compiled"`` or ``"torch"``; default: ``run.engine``
    resolved by :func:`gradasym.algos.ccm_madrl.compiled.resolve_engine`).
    """

    def __init__(self, cfg: Config, engine: str | None = None) -> None:
        self.cfg = cfg
        seed = cfg.run.seed
        self.engine = resolve_engine(cfg) if engine is None else engine
        self.env = MECEnv(cfg.env, numpy_generator(seed, "env"))
        self.eval_env = MECEnv(cfg.env, numpy_generator(seed, "eval_env")) if cfg.run.eval_interval else None
        self.agent = CCMMADRL(cfg.agent, AgentDims.of(self.env), seed, tracking=cfg.run.tracking,
                              device=cfg.run.device, engine=self.engine)
        self.monitor = ActorCriticMonitor(
            n_agents=self.agent.n_agents,
            saturation_threshold=cfg.run.saturation_threshold,
            freeze_tolerance=cfg.run.freeze_tolerance,
            grad_death_threshold=cfg.run.grad_death_threshold,
            squash=self.agent.squash,
            plasticity=cfg.run.plasticity,
            dormant_taus=cfg.run.dormant_taus,
            rank_delta=cfg.run.rank_delta,
        )
        # periodic plasticity remedies (agent.redo_period, ...; docs/presets.md), None when none is on
        self.remedies = Remedies(cfg.agent, seed) if Remedies.active(cfg.agent) else None
        self.episodes_done = 0
        self.episode_rows: list[dict] = []
        self.tracking_rows: list[dict] = []
        self.agent_rows: list[dict] = []
        self.seconds = 0.0
        self.states = self.env.reset()
        self._preact_pool: list[torch.Tensor] = []  # tracking="original" only
        # Which trainer produced the episodes (runfolder.TRAINER_KEY: checkpoint and summary); set by open_run
        self.trained_by: str | None = SINGLE
        # The monitor needs a parameter snapshot before the first update.
        self.monitor.observe_params(self.agent.actor_parameters(), self.agent.critic_parameters())

    # ------------------------------------------------------------- episode
    def run_episode(self) -> dict[str, Any]:
        """Act for one episode, then train once (paper: one update per episode)."""
        row = self.act_episode()
        t0 = time.perf_counter()
        upd = self.agent.update() if self.wants_update else None
        return self.finish_episode(row, upd, time.perf_counter() - t0)

    @property
    def wants_update(self) -> bool:
        """Whether the episode just acted is followed by a training update."""
        return self.episodes_done > self.cfg.agent.episodes_before_train and len(self.agent.replay) > 0

    def act_episode(self) -> dict[str, Any]:
        """The acting half of :meth:`run_episode`: one episode of acting and storing; returns
        the episode's row without its training and monitor fields (see :meth:`finish_episode`)."""
        cfg, agent, env = self.cfg, self.agent, self.env
        t0 = time.perf_counter()
        eps = epsilon(cfg.agent, self.episodes_done)
        reward = constrained = e_pen = t_pen = offload = 0.0
        steps = cfg.env.steps_per_episode
        original = cfg.run.tracking == "original"
        # The networks do not change during an episode, so its transitions are stored (and their
        # priorities computed) in one batched call after it, unless the agent says otherwise.
        defer = agent.can_defer_insertion
        transitions: list[tuple] = []
        for _ in range(steps):
            act = agent.act(self.states, self.episodes_done, explore=True)
            if original and act.preact is not None:
                self._preact_pool.append(act.preact.reshape(-1, *act.preact.shape[-2:]))
            next_states, rewards, done, info = env.step(act.env_actions)
            transition = (self.states, act.actions, act.x, float(rewards[0]), next_states, done)
            if defer:
                transitions.append(transition)
            else:
                agent.remember(*transition)
            self.states = next_states
            reward += float(rewards[0])
            constrained += float(act.constrained)
            e_pen += info["energy_penalty_frac"]
            t_pen += info["time_penalty_frac"]
            offload += float(np.mean(act.x))
            if done:
                self.states = env.reset()
        if transitions:
            agent.remember_many(*(np.stack(column) for column in zip(*transitions)))
        self.episodes_done += 1
        episode = self.episodes_done

        row: dict[str, Any] = {
            "episode": episode, "reward": reward, "epsilon": eps,
            "constraint_exceeded_frac": constrained / steps,
            "energy_penalty_frac": e_pen / steps, "time_penalty_frac": t_pen / steps,
            "offload_frac": offload / steps, "updated": False,
            "critic_loss": float("nan"), "actor_loss": float("nan"),
            "seconds": time.perf_counter() - t0,
        }
        return row

    def finish_episode(self, row: dict[str, Any], upd: Any, update_seconds: float = 0.0) -> dict[str, Any]:
        """The second half of :meth:`run_episode`: feed the episode's update ``upd`` (None: no
        update) to the monitor, evaluate, complete and keep the row (``update_seconds``: the
        time of the update, added to the row's ``seconds``)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        episode = self.episodes_done
        if upd is not None:  # a skipped update never counts as a freeze
            self._observe(upd, episode)
            row.update(updated=True, critic_loss=upd.critic_loss, actor_loss=upd.actor_loss)
        if self.remedies is not None:
            row.update(self._remedy(upd))
        mon = self.monitor
        row["actors_stopped"] = int(sum(s is not None for s in mon.actor_stop_episode))
        row["actors_frozen"] = int(sum(mon.frozen_now))
        row["critic_frozen"] = bool(mon.critic_frozen_now)
        row["eval_reward"] = self._evaluate() if cfg.run.eval_interval and episode % cfg.run.eval_interval == 0 else float("nan")
        row["seconds"] += update_seconds + time.perf_counter() - t0
        self.seconds += row["seconds"]
        self.episode_rows.append(row)
        return row

    def _observe(self, upd: Any, episode: int) -> None:
        cfg = self.cfg
        log = episode % cfg.run.log_interval == 0
        preact = upd.preact
        if cfg.run.tracking == "original":
            if upd.preact_pool is not None:
                self._preact_pool.append(upd.preact_pool.reshape(-1, *upd.preact_pool.shape[-2:]))
            if log:
                preact = torch.cat(self._preact_pool) if self._preact_pool else None
                self._preact_pool = []
        # actors skipped by policy_delay: no actor gradients/parameters (not a freeze)
        actor_params = self.agent.actor_parameters() if getattr(upd, "actor_updated", True) else None
        self.monitor.observe_update(
            episode, upd.actor_grads, upd.critic_grads,
            actor_params, self.agent.critic_parameters(),
            preact=preact, actor_hidden=upd.actor_hidden, critic_hidden=upd.critic_hidden, log=log,
        )
        if log:
            trow = self.monitor.log_row(episode)
            trow["eval_reward"] = float("nan")
            self.tracking_rows.append(trow)
            self.agent_rows.extend(self.monitor.agent_rows(episode))

    def _remedy(self, upd: Any) -> dict[str, Any]:
        """The periodic remedies due after update ``upd`` (None: no update, nothing due), in place on
        the agent's tensors; the monitor's freeze snapshot then restarts from the changed weights,
        so that a freeze is still "an update changed nothing", not "nothing changed since a reset".
        Returns the episode row's remedy columns."""
        assert self.remedies is not None
        if upd is None:
            return self.remedies.columns()
        cols = self.remedies.after_update(self.agent, upd)
        if cols != self.remedies.columns():  # something was applied
            self.monitor.observe_params(self.agent.actor_parameters(), self.agent.critic_parameters())
        return cols

    def _evaluate(self) -> float:
        """Mean greedy (noise-free) episode reward on the separately seeded eval environment."""
        assert self.eval_env is not None
        total = 0.0
        for _ in range(self.cfg.run.eval_episodes):
            s = self.eval_env.reset()
            for _ in range(self.cfg.env.steps_per_episode):
                act = self.agent.act(s, self.episodes_done, explore=False)
                s, r, done, _ = self.eval_env.step(act.env_actions)
                total += float(r[0])
        if self.tracking_rows and self.tracking_rows[-1]["episode"] == self.episodes_done:
            self.tracking_rows[-1]["eval_reward"] = total / self.cfg.run.eval_episodes
        return total / self.cfg.run.eval_episodes

    # -------------------------------------------------------------- status
    @property
    def stopping_episode(self) -> int | None:
        return self.monitor.all_stopped_episode

    def should_stop_early(self) -> bool:
        s = self.stopping_episode
        return bool(self.cfg.run.early_stop and s is not None
                    and self.episodes_done > s + self.cfg.run.early_stop_patience)

    def summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        cfg, mon = self.cfg, self.monitor
        rewards = [r["reward"] for r in self.episode_rows]
        k = max(1, len(rewards) // 10)
        last_track = self.tracking_rows[-1] if self.tracking_rows else {}
        return {
            "status": status, "error": error,
            "actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr,
            "seed": cfg.run.seed, "presets": list(cfg.presets), "actor_update": cfg.agent.actor_update,
            "tracking": cfg.run.tracking, TRAINER_KEY: self.trained_by, "engine": self.engine,
            "episodes_requested": cfg.run.episodes, "episodes_run": self.episodes_done,
            "stopping_episode": self.stopping_episode,
            "per_agent_stop_episode": list(mon.actor_stop_episode),
            "per_agent_grad_death_episode": list(mon.grad_death_episode),
            "all_frozen_at_end": bool(all(mon.frozen_now)) if self.episodes_done else False,
            "critic_stopped": mon.critic_stop_episode is not None,
            "critic_stop_episode": mon.critic_stop_episode,
            "max_abs_preactivation": mon.max_abs_preactivation,
            "final_saturation_ratio": last_track.get("saturation_ratio"),
            "final_rho": last_track.get("rho"),
            **mon.divergence_summary(),  # diverged, diverged_step, actor_/critic_/per_agent_diverged_step
            "events": list(mon.events),  # first gradient death, first freeze, ... with their episodes
            "reward_first10": float(np.mean(rewards[:k])) if rewards else None,
            "reward_last10": float(np.mean(rewards[-k:])) if rewards else None,
            "seconds_total": self.seconds,
            "seconds_per_episode": self.seconds / self.episodes_done if self.episodes_done else None,
            "early_stopped": self.should_stop_early(),
            "version": __version__, IDENTITY_KEY: run_identity(_config_record(cfg, self.engine)),  # gradasym.schemas
            "provenance": collect_provenance(),  # git commit, machine
        }

    # --------------------------------------------------------- persistence
    def state_dict(self, keep_replay: bool = True) -> dict[str, Any]:
        """The checkpoint; ``keep_replay=False`` leaves the replay buffer out (a finished run's
        final checkpoint, ``run.keep_replay``)."""
        return {
            "config": self.cfg.to_dict(), "episodes_done": self.episodes_done,
            "agent": self.agent.state_dict(keep_replay=keep_replay), "env": self.env.state_dict(),
            "eval_env": self.eval_env.state_dict() if self.eval_env else None,
            "monitor": self.monitor.state_dict(), "states": self.states,
            "episode_rows": self.episode_rows, "tracking_rows": self.tracking_rows,
            "agent_rows": self.agent_rows, "seconds": self.seconds,
            "preact_pool": [t.cpu() for t in self._preact_pool], TRAINER_KEY: self.trained_by,
            **({"remedies": self.remedies.state_dict()} if self.remedies is not None else {}),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.episodes_done = d["episodes_done"]
        self.agent.load_state_dict(d["agent"])
        self.env.load_state_dict(d["env"])
        if self.eval_env is not None and d["eval_env"] is not None:
            self.eval_env.load_state_dict(d["eval_env"])
        self.monitor.load_state_dict(d["monitor"])
        self.states = d["states"]
        self.episode_rows = list(d["episode_rows"])
        self.tracking_rows = list(d["tracking_rows"])
        self.agent_rows = list(d["agent_rows"])
        self.seconds = d["seconds"]
        self._preact_pool = [t.to(self.agent.device) for t in d["preact_pool"]]
        if self.remedies is not None:
            self.remedies.load_state_dict(d["remedies"])


def _config_record(cfg: Config, engine: str) -> dict[str, Any]:
    """``config.json``: the configuration, plus ``engine_used`` (what ``run.engine`` resolved to for
    the latest start or resumption; not a configuration field, so never compared on resume)."""
    return {"algo": "ccm-madrl", **cfg.to_dict(), "engine_used": engine, "version": __version__}


def write_outputs(trainer: Trainer, out: Path | RunFolder, status: str, error: str | None = None,
                  checkpoint: bool = True, keep_replay: bool = True) -> dict[str, Any]:
    """Write tables, summary and (optionally) the checkpoint, each atomically
    (``keep_replay=False``: the checkpoint without the replay buffer).

    The checkpoint goes through :meth:`RunFolder.save_checkpoint` (the previous one is
    kept as ``checkpoint.prev.pt``); a full disk raises :class:`DiskFullError` (one line).
    """
    folder = out if isinstance(out, RunFolder) else RunFolder(out)
    with disk_full_guard(f"episode {trainer.episodes_done}"):
        if checkpoint:
            folder.save_checkpoint(trainer.state_dict(keep_replay=keep_replay))
        meta = table_metadata(_config_record(trainer.cfg, trainer.engine))  # the run's identity (gradasym.schemas)
        write_table(folder.path / "episodes.parquet", trainer.episode_rows, meta)
        write_table(folder.path / "tracking.parquet", trainer.tracking_rows, meta)
        write_table(folder.path / "tracking_agents.parquet", trainer.agent_rows, meta)
        summary = trainer.summary(status, error)
        write_json(folder.summary_path, summary)
    return summary


def open_run(cfg: Config, folder: RunFolder, resume: bool) -> Trainer:
    """Prepare a locked run folder and its :class:`Trainer`: remove temporary files, check the
    configuration against ``config.json`` and the checkpoint (with ``resume``), load the
    checkpoint, write ``config.json``. ``cfg`` must be validated; the caller holds
    ``folder.lock()``. A checkpoint without its replay buffer (a finished run,
    ``run.keep_replay = false``, see :func:`finish_run`) cannot be extended, and a run
    cannot be shortened below the episodes it has trained: both refused.

    The folder records the trainer (``runfolder.TRAINER_KEY``, ``Trainer.trained_by``): a run
    that the retired batched trainer started (``BATCHED``, or ``MIXED``) continues here, with a
    warning, as ``MIXED`` (its numbers are neither trainer's); a run with nothing left to do
    keeps its record."""
    wanted = cfg.to_dict()
    folder.clean_temp_files()
    state = None
    trainer = None
    if resume:
        stored = folder.read_config()
        folder.check_config(wanted, stored, folder.config_path, _RESUMABLE_FIELDS)
        try:
            folder.read_summary()
        except RunFolderError:
            _warn(f"{folder.summary_path} is unreadable; it is rewritten from the checkpoint")
        folder.check_files(stored, warn=_warn)  # a summary or table of another run, wrong columns: refused
        if folder.checkpoint_path.exists() or folder.previous_checkpoint_path.exists():
            trainer = Trainer(cfg)  # its fresh state is the shape every checkpoint of this config has
            template = trainer.state_dict()
            loaded = folder.load_checkpoint(warn=_warn, validate=lambda s: check_checkpoint(s, template))
            del template
            if loaded is not None:
                state, path = loaded
                folder.check_config(wanted, state["config"], path, _RESUMABLE_FIELDS)
    trainer = trainer or Trainer(cfg)
    if state is not None:
        trainer.load_state_dict(state)
        stored = state.get(TRAINER_KEY)
        del state
        if trainer.episodes_done > cfg.run.episodes:  # it would be "finished" with more than it asks for
            raise ConfigError(f"{folder.path} has trained {trainer.episodes_done} episodes already, more than "
                              f"run.episodes = {cfg.run.episodes}; a run cannot be shortened: ask for at least "
                              f"{trainer.episodes_done} episodes, or use another --out")
        done = trainer.should_stop_early() or trainer.episodes_done >= cfg.run.episodes
        trainer.trained_by = stored if done else continued_trainer(stored, SINGLE)
        if not done and stored not in (None, SINGLE):
            so_far = "by both trainers" if stored == MIXED else f"by the {stored} trainer"
            _warn(f"{folder.path} was trained {so_far} so far (retired, docs/sweeps.md); going on with "
                  f"the single-run trainer, its numbers are neither's (recorded as {trainer.trained_by!r})")
        if not done and not trainer.agent.has_replay:
            raise ConfigError(f"{folder.path} holds a finished run whose final checkpoint has no replay buffer "
                              "(run.keep_replay = false), so it cannot be extended identically; "
                              "train it again with run.keep_replay = true into another folder")
    folder.write_config(_config_record(cfg, trainer.engine))
    return trainer


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = True,
    progress: ProgressFn | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Train one configuration into ``out_dir`` and return its ``summary.json`` dict.

    With ``resume`` (the default) a folder holding a checkpoint of the same
    configuration continues from it; a finished run with nothing left to do returns its
    summary. ``run.episodes`` may be raised to extend a finished run only if it kept its
    replay buffer (``run.keep_replay``; by default a finished run's final checkpoint drops
    it, see :func:`finish_run`).
    Without ``resume`` an existing run folder is an error, so nothing is overwritten.

    The folder rules of :mod:`gradasym.runfolder` apply: the configuration must match
    both ``config.json`` and the one stored in the checkpoint; another live process
    writing the folder is refused (``.run.lock``); temporary files of interrupted
    writes are removed; a bad newest checkpoint falls back to ``checkpoint.prev.pt``;
    ``config.json`` is written only once the run has started (a refused start leaves
    none behind); sizes that cannot fit in memory are refused before any allocation;
    an ``out_dir`` that is a file or holds other results (a sweep, run folders, a
    run's files without its ``config.json``) is refused (:class:`FolderKindError`,
    :meth:`RunFolder.check_usable`).
    """
    cfg.validate()
    check_memory(cfg)
    if cfg.run.tensorboard:
        require_tensorboard()  # the extra is missing: say so before anything is written
    folder = RunFolder(out_dir)
    out = folder.path
    folder.check_usable()  # a file, a sweep, foreign files: refused before any work
    if folder.holds_run() and not resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    configure_process(cfg.run.threads)
    with disk_full_guard(), folder.lock():
        trainer = open_run(cfg, folder, resume)
        if show_progress and trainer.episodes_done:  # the terminal says that a resumed run goes on, and where
            print(f"{out}: resuming from episode {trainer.episodes_done} of {cfg.run.episodes}", file=sys.stderr)
        board = open_tensorboard(cfg.run.tensorboard, out, trainer)  # None unless on; written before each checkpoint
        if trainer.should_stop_early() or trainer.episodes_done >= cfg.run.episodes:
            if board is not None:
                board.close(trainer)
            return write_outputs(trainer, folder, "finished", checkpoint=False)
        return _train(trainer, folder, board, progress, show_progress)


def _train(trainer: Trainer, folder: RunFolder, board: Any, progress: ProgressFn | None,
           show_progress: bool) -> dict[str, Any]:
    """The episode loop of :func:`run_experiment` (the folder is locked and prepared)."""
    cfg = trainer.cfg
    bar = _progress_bar(cfg.run.episodes, trainer.episodes_done, cfg.env.n_agents) if show_progress else nullcontext()
    try:
        with bar as live:
            write_outputs(trainer, folder, "running")
            while trainer.episodes_done < cfg.run.episodes and not trainer.should_stop_early():
                row = trainer.run_episode()
                info = _progress_info(trainer, row)
                if progress is not None:
                    progress(info)
                if live is not None:
                    live.advance(info)
                if trainer.episodes_done % cfg.run.checkpoint_interval == 0:
                    if board is not None:
                        board.write(trainer)
                    write_outputs(trainer, folder, "running")
    except KeyboardInterrupt:
        raise  # the last checkpoint stays valid; a rerun with resume continues from it
    except DiskFullError:
        raise  # nothing more can be written; the files of the last checkpoint are intact
    except Exception as exc:
        try:
            write_json(folder.summary_path, trainer.summary(
                "failed", failure_text(exc)))
        except OSError:
            pass  # the original error matters more than the summary
        raise
    finally:
        if board is not None:
            board.close(trainer)
    return finish_run(trainer, folder)


def finish_run(trainer: Trainer, folder: RunFolder) -> dict[str, Any]:
    """Write a run's final outputs (status ``finished``); unless ``run.keep_replay``, its final
    checkpoint leaves the replay buffer out and the rotated ``checkpoint.prev.pt`` (which still
    holds it) is removed, so that a finished folder is small (at N = 50 one ~10 MB checkpoint
    instead of two that also hold up to 36 MB of buffer each). Such a run can be read,
    reported and evaluated, but not extended (:func:`open_run` refuses)."""
    keep = trainer.cfg.run.keep_replay
    summary = write_outputs(trainer, folder, "finished", keep_replay=keep)
    if not keep:
        folder.previous_checkpoint_path.unlink(missing_ok=True)
    return summary


def _warn(text: str) -> None:
    print(f"gradasym: warning: {text}", file=sys.stderr, flush=True)


def _progress_info(trainer: Trainer, row: dict[str, Any]) -> dict[str, Any]:
    sat = trainer.tracking_rows[-1]["saturation_ratio"] if trainer.tracking_rows else float("nan")
    return {
        "episode": trainer.episodes_done, "episodes": trainer.cfg.run.episodes,
        "reward": row["reward"], "saturation_ratio": sat, "actors_stopped": row["actors_stopped"],
        "seconds_per_episode": trainer.seconds / max(1, trainer.episodes_done),
        "stopping_episode": trainer.stopping_episode,
        "events": list(trainer.monitor.events),  # the monitor's events so far (the views print new ones once)
    }


class _progress_bar:
    """A rich progress bar: episode, reward, saturation ratio, actors stopped so far."""

    def __init__(self, episodes: int, start: int, n_agents: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]episode {task.completed:>5.0f}/{task.total:.0f}"), BarColumn(),
            TextColumn("reward {task.fields[reward]:>10}"), TextColumn("sat {task.fields[sat]:>5}"),
            TextColumn("stopped {task.fields[stopped]:>3}/{task.fields[n]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self.task = self.progress.add_task(
            "run", total=episodes, completed=start, reward="-", sat="-", stopped=0, n=n_agents
        )
        self.events_shown: int | None = None  # events of a resumed run's past are not printed again

    def __enter__(self) -> "_progress_bar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def advance(self, info: dict[str, Any]) -> None:
        events = info.get("events") or []
        if self.events_shown is None:
            self.events_shown = sum(e["step"] < info["episode"] for e in events)
        for event in events[self.events_shown:]:
            self.progress.console.print(f"gradasym: {event['message']}", soft_wrap=True, markup=False,
                                        highlight=False)  # one line, as written
        self.events_shown = len(events)
        sat = info["saturation_ratio"]
        self.progress.update(
            self.task, completed=info["episode"], reward=f"{info['reward']:.0f}",
            sat="-" if sat != sat else f"{sat:.2f}", stopped=info["actors_stopped"],
        )
