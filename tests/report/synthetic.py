"""Synthetic result folders in the format of ``docs/architecture.md`` (run + sweep).

The report is tested against these instead of real training runs: small, fast,
deterministic, and with known stopping episodes so that tables can be checked
number by number. The shapes imitate the paper: high actor learning rates stop
early with exploding pre-activations and saturation near 1, low ones keep
learning; the critic never stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

PAPER_GRID = (0.0001, 0.001, 0.01, 0.1)

#: The paper's Table 3 divided by 10 (None = never stops), for 200-episode runs.
SCALED_TABLE3: dict[tuple[float, float], int | None] = {
    (0.0001, 0.0001): None, (0.0001, 0.001): None, (0.0001, 0.01): None, (0.0001, 0.1): 70,
    (0.001, 0.0001): None, (0.001, 0.001): None, (0.001, 0.01): None, (0.001, 0.1): 76,
    (0.01, 0.0001): 23, (0.01, 0.001): 23, (0.01, 0.01): 23, (0.01, 0.1): 25,
    (0.1, 0.0001): 22, (0.1, 0.001): 22, (0.1, 0.01): 18, (0.1, 0.1): 16,
}

#: Per-seed offsets added to a configuration's stopping episode (mean offset 0).
SEED_OFFSETS: dict[int, int] = {0: -2, 1: 0, 2: 2, 3: 0}

#: Max |pre-activation| by actor_lr (about the paper's Table 4).
PREACT_SCALE = {0.0001: 3.0, 0.001: 50.0, 0.01: 5.2e3, 0.1: 1.07e6}

N_LAYERS = 3


def run_id(actor_lr: float, critic_lr: float, seed: int, preset: str = "") -> str:
    """The contract's run id ``alr{a}_clr{c}[_{preset}]_s{seed}``."""
    mid = f"_{preset}" if preset else ""
    return f"alr{actor_lr:g}_clr{critic_lr:g}{mid}_s{seed}"


@dataclass
class RunSpec:
    """What to write for one synthetic run."""

    actor_lr: float
    critic_lr: float
    seed: int
    episodes: int = 200
    stop_episode: int | None = None
    status: str = "finished"          # finished / running / failed
    episodes_run: int | None = None   # default: all (or stop + patience + 1)
    presets: tuple[str, ...] = ()
    n_agents: int = 5
    log_interval: int = 10
    early_stop_patience: int | None = None
    improves: bool = False            # reward trend upwards (viable) or flat
    write_summary: bool = True
    write_tracking: bool = True
    write_agents: bool = True
    write_episodes: bool = True
    write_config: bool = True
    error: str | None = None
    dead_grads: bool = False          # actor gradients exactly 0 from the stop episode on (float32 underflow)
    plasticity: bool = False          # tracking gets the plasticity columns (plasticity_columns)
    unfreeze_episode: int | None = None  # actors_frozen drops to 0 from this episode on (a remedy un-froze them)
    critic_frozen_end: bool = False   # the critic's last update left it unchanged
    extra: dict = field(default_factory=dict)


def _episodes_run(spec: RunSpec) -> int:
    if spec.episodes_run is not None:
        return spec.episodes_run
    if spec.stop_episode is not None and spec.early_stop_patience is not None:
        return min(spec.episodes, spec.stop_episode + spec.early_stop_patience + 1)
    return spec.episodes


def _config(spec: RunSpec) -> dict:
    return {
        "env": {"n_agents": spec.n_agents, "steps_per_episode": 10, "mode": "H2"},
        "agent": {"actor_lr": spec.actor_lr, "critic_lr": spec.critic_lr, "actor_hidden": [64, 32],
                  "critic_hidden": [512, 128], "actor_update": "sequential"},
        "run": {"episodes": spec.episodes, "seed": spec.seed, "log_interval": spec.log_interval,
                "early_stop": spec.early_stop_patience is not None,
                "early_stop_patience": spec.early_stop_patience or 100},
        "presets": list(spec.presets),
        "version": "0.1.0-synthetic",
    }


def _rewards(spec: RunSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    ep = np.arange(1, n + 1)
    trend = 60.0 * ep / spec.episodes if spec.improves else 0.0
    return -200.0 + trend + rng.normal(0.0, 5.0, n)


def _per_agent_stops(spec: RunSpec) -> list[int | None]:
    if spec.stop_episode is None:
        return [None] * spec.n_agents
    return [max(1, spec.stop_episode - 3 * i) for i in range(spec.n_agents)][::-1]


def episodes_frame(spec: RunSpec, rng: np.random.Generator) -> pd.DataFrame:
    """``episodes.parquet`` content for ``spec``."""
    n = _episodes_run(spec)
    ep = np.arange(1, n + 1)
    stops = _per_agent_stops(spec)
    stopped = np.array([sum(s is not None and s <= e for s in stops) for e in ep])
    frozen = stopped.copy()
    if spec.unfreeze_episode is not None:
        frozen[ep >= spec.unfreeze_episode] = 0
    critic_frozen = np.zeros(n, bool)
    critic_frozen[-1:] = spec.critic_frozen_end
    return pd.DataFrame({
        "episode": ep, "reward": _rewards(spec, n, rng), "epsilon": np.linspace(1, 0.5, n),
        "constraint_exceeded_frac": rng.uniform(0, 1, n), "energy_penalty_frac": rng.uniform(0, 0.2, n),
        "time_penalty_frac": rng.uniform(0, 0.2, n), "offload_frac": rng.uniform(0, 1, n),
        "updated": ep >= 2, "critic_loss": rng.uniform(1, 10, n), "actor_loss": rng.uniform(-10, 0, n),
        "actors_stopped": stopped, "actors_frozen": frozen, "critic_frozen": critic_frozen,
        "seconds": np.full(n, 0.01),
    })


def tracking_frame(spec: RunSpec, rng: np.random.Generator) -> pd.DataFrame:
    """``tracking.parquet`` content: one row every ``log_interval`` episodes."""
    n = _episodes_run(spec)
    ep = np.arange(spec.log_interval, n + 1, spec.log_interval)
    stop = spec.stop_episode or spec.episodes
    frac = np.clip(ep / stop, 0, 1.5)
    zmax = PREACT_SCALE.get(spec.actor_lr, 3.0) * np.minimum(1.0, 0.05 + frac)
    decay = 8.0 if spec.stop_episode else 1.0
    actor = 1e-3 * np.exp(-decay * np.clip(frac, 0, 1)) * (1 + 0.1 * rng.random(len(ep))) + 1e-14
    critic = 10.0 * (1 + 0.1 * rng.random(len(ep)))
    sat = np.clip(0.95 * frac if spec.stop_episode else 0.05 * frac, 0, 0.97)
    if spec.dead_grads and spec.stop_episode is not None:
        actor = np.where(ep >= spec.stop_episode, 0.0, actor)
    cols = {"episode": ep, "actor_grad_norm": actor, "critic_grad_norm": critic, "rho": actor / critic}
    for j in range(N_LAYERS):
        cols[f"actor_grad_norm_l{j}"] = actor * (0.5 ** j)
        cols[f"critic_grad_norm_l{j}"] = critic * (2.0 ** -j)
    cols.update(preact_mean=0.02 * zmax * rng.standard_normal(len(ep)), preact_std=0.5 * zmax,
                preact_min=-zmax, preact_max=zmax, preact_max_abs=zmax, saturation_ratio=sat)
    for d in range(3):
        cols[f"saturation_dim{d}"] = sat
    for j in range(2):
        cols[f"actor_dead_relu_l{j}"] = np.full(len(ep), 0.1)
        cols[f"actor_hidden_mean_l{j}"] = np.full(len(ep), 0.5)
        cols[f"critic_dead_relu_l{j}"] = np.full(len(ep), 0.2)
        cols[f"critic_hidden_mean_l{j}"] = np.full(len(ep), 1.0)
    stops = _per_agent_stops(spec)
    cols["actors_stopped"] = [sum(s is not None and s <= e for s in stops) for e in ep]
    cols["eval_reward"] = np.full(len(ep), np.nan)
    if spec.plasticity:
        cols.update(plasticity_columns(ep, spec.stop_episode))
    return pd.DataFrame(cols)


#: Lead times built into :func:`plasticity_columns` (episodes before the stop at which each steps).
DORMANT_LEAD, RANK_LEAD = 60, 30


def plasticity_columns(ep: np.ndarray, stop: int | None) -> dict[str, np.ndarray]:
    """The monitor's plasticity columns with known shapes: the actors' τ-dormant fraction steps from 0.1
    to 0.7 at ``stop - DORMANT_LEAD``, their effective rank from 30 to 5 at ``stop - RANK_LEAD`` (never
    for a run that does not stop); the critic's dormant fraction is ``0.05 + ep / 1000`` and its
    effective rank ``100 - ep / 10`` (both keep moving)."""
    ep = np.asarray(ep, dtype=float)
    s = np.inf if stop is None else float(stop)
    dormant = np.where(ep >= s - DORMANT_LEAD, 0.7, 0.1)
    cols = {"actor_dormant_tau0": dormant / 2, "actor_dormant_tau0.025": dormant, "actor_dormant_tau0.1": dormant,
            "actor_effective_rank": np.where(ep >= s - RANK_LEAD, 5.0, 30.0),
            "actor_stable_rank": np.full(len(ep), 8.0),
            "critic_dormant_tau0": np.zeros(len(ep)), "critic_dormant_tau0.025": 0.05 + ep / 1000,
            "critic_dormant_tau0.1": 0.1 + ep / 1000, "critic_effective_rank": 100 - ep / 10,
            "critic_stable_rank": np.full(len(ep), 50.0)}
    for j in range(2):
        cols[f"actor_dormant_tau0.025_l{j}"] = dormant
        cols[f"critic_dormant_tau0.025_l{j}"] = cols["critic_dormant_tau0.025"]
    return cols


def agents_frame(spec: RunSpec, tracking: pd.DataFrame) -> pd.DataFrame:
    """``tracking_agents.parquet`` content: one row per (log episode, agent)."""
    rows = [{"episode": int(e), "agent": a, "grad_norm": float(g) / spec.n_agents,
             "saturation_ratio": float(s), "preact_max_abs": float(z)}
            for e, g, s, z in tracking[["episode", "actor_grad_norm", "saturation_ratio", "preact_max_abs"]].values
            for a in range(spec.n_agents)]
    return pd.DataFrame(rows)


def _grad_death(spec: RunSpec, n: int) -> list[int | None]:
    """Per agent: episode from which its gradient stayed dead (``dead_grads`` runs: its stop episode)."""
    if not spec.dead_grads:
        return [None] * spec.n_agents
    return [s if s is not None and s <= n else None for s in _per_agent_stops(spec)]


def summary_dict(spec: RunSpec, episodes: pd.DataFrame, tracking: pd.DataFrame) -> dict:
    """``summary.json`` content consistent with the tables."""
    n = len(episodes)
    k = max(1, int(round(0.1 * n)))
    early = spec.stop_episode is not None and spec.early_stop_patience is not None and n < spec.episodes
    return {
        "status": spec.status, "error": spec.error, "actor_lr": spec.actor_lr, "critic_lr": spec.critic_lr,
        "seed": spec.seed, "presets": list(spec.presets), "actor_update": "sequential",
        "episodes_requested": spec.episodes, "episodes_run": n,
        "stopping_episode": spec.stop_episode if spec.stop_episode is not None and spec.stop_episode <= n else None,
        "per_agent_stop_episode": [s if s is not None and s <= n else None for s in _per_agent_stops(spec)],
        "per_agent_grad_death_episode": _grad_death(spec, n),
        "all_frozen_at_end": spec.stop_episode is not None, "critic_stopped": False, "critic_stop_episode": None,
        "max_abs_preactivation": float(tracking["preact_max_abs"].max()) if len(tracking) else None,
        "final_saturation_ratio": float(tracking["saturation_ratio"].iloc[-1]) if len(tracking) else None,
        "final_rho": float(tracking["rho"].iloc[-1]) if len(tracking) else None,
        "reward_first10": float(episodes["reward"].iloc[:k].mean()),
        "reward_last10": float(episodes["reward"].iloc[-k:].mean()),
        "seconds_total": 0.01 * n, "seconds_per_episode": 0.01, "early_stopped": early,
        "version": "0.1.0-synthetic", **spec.extra,
    }


def write_run(run_dir: Path, spec: RunSpec) -> Path:
    """Write one synthetic run folder; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1000 + spec.seed)
    episodes = episodes_frame(spec, rng)
    tracking = tracking_frame(spec, rng)
    if spec.write_config:
        (run_dir / "config.json").write_text(json.dumps(_config(spec), indent=2))
    if spec.write_episodes:
        episodes.to_parquet(run_dir / "episodes.parquet", index=False)
    if spec.write_tracking:
        tracking.to_parquet(run_dir / "tracking.parquet", index=False)
    if spec.write_agents and spec.write_tracking:
        agents_frame(spec, tracking).to_parquet(run_dir / "tracking_agents.parquet", index=False)
    if spec.write_summary:
        (run_dir / "summary.json").write_text(json.dumps(summary_dict(spec, episodes, tracking), indent=2))
    return run_dir


def write_sweep(root: Path, *, actor_lrs: Iterable[float] = PAPER_GRID, critic_lrs: Iterable[float] = PAPER_GRID,
                seeds: Iterable[int] = (0, 1, 2), preset: str = "",
                stops: dict[tuple[float, float], int | None] | None = None,
                customize: Callable[[RunSpec], RunSpec | None] | None = None,
                pending: Iterable[str] = (), write_summary_table: bool = True, **defaults) -> Path:
    """Write a sweep folder (``sweep.json``, ``runs/``, ``summary.parquet``/``.csv``).

    ``stops`` maps a configuration to its stopping episode (default
    :data:`SCALED_TABLE3`), shifted per seed by :data:`SEED_OFFSETS`.
    ``customize(spec)`` may edit a spec or return None to skip writing that run
    (it then stays listed in ``sweep.json``: a pending run). ``pending`` adds
    extra run ids to ``sweep.json`` only.
    """
    from gradasym.report.load import write_sweep_summary

    stops = SCALED_TABLE3 if stops is None else stops
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for a in actor_lrs:
        for c in critic_lrs:
            for s in seeds:
                base = stops.get((a, c))
                spec = RunSpec(a, c, s, stop_episode=None if base is None else base + SEED_OFFSETS.get(s, 0),
                               presets=(preset,) if preset else (), improves=(a, c) == (0.0001, 0.001), **defaults)
                rid = run_id(a, c, s, preset)
                ids.append(rid)
                if customize is not None:
                    spec = customize(spec)
                if spec is not None:
                    write_run(root / "runs" / rid, spec)
    meta = {"base": _config(RunSpec(0.0001, 0.001, 0, presets=(preset,) if preset else ())),
            "axes": {"agent.actor_lr": list(actor_lrs), "agent.critic_lr": list(critic_lrs)},
            "seeds": list(seeds), "presets": [preset] if preset else [], "run_ids": ids + list(pending)}
    (root / "sweep.json").write_text(json.dumps(meta, indent=2))
    if write_summary_table:
        write_sweep_summary(root)
    return root
