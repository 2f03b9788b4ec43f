"""Stable-Baselines3 TD3, DDPG and SAC on Gymnasium tasks as :class:`~gradasym.algos.base.Algorithm` plugins.

The config is :class:`~gradasym.algos.sb3_config.SB3Config`; the runner is
:func:`gradasym.algos.sb3_runner.run_sb3` (the real SB3 agent with separate actor
and critic learning rates and the monitor attached). Runs count environment steps;
stop and gradient-death steps are gradient steps. Runs checkpoint every
``run.checkpoint_interval`` environment steps and resume from there with the same
numbers as an uninterrupted run (``docs/algorithms.md``), so ``can_resume`` is True.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .base import Algorithm, Runner
from .sb3_config import SB3Config


#: Episode returns each task can reach, for the report's intervals (``Algorithm.return_bounds``).
#: Pendulum-v1: every step's reward is -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) <= 0.
RETURN_BOUNDS: dict[str, tuple[float, float]] = {"Pendulum-v1": (-math.inf, 0.0)}


def run(cfg: SB3Config, out_dir: str | Path, resume: bool = True, progress: Any = None,
        show_progress: bool = False) -> dict[str, Any]:
    """:func:`gradasym.algos.sb3_runner.run_sb3` (imported on first use: SB3, torch)."""
    from .sb3_runner import run_sb3  # noqa: PLC0415

    return run_sb3(cfg, out_dir, resume=resume, progress=progress, show_progress=show_progress)


class SB3Algorithm(Algorithm):
    """One Stable-Baselines3 off-policy actor-critic (``"td3"``, ``"ddpg"`` or ``"sac"``)."""

    progress_unit = "environment steps"
    stop_unit = "gradient steps"
    can_resume = True
    summary_columns = ("algo", "env", "steps_run", "gradient_steps", "stopping_step", "grad_death_step",
                       "diverged", "final_return", "return_first10", "final_eval_return", "seconds_per_step")
    summary_keys = {"done": "steps_run", "total": "steps_requested", "stop": "stopping_step",
                    "grad_death": "grad_death_step", "return_first": "return_first10", "return_last": "final_return",
                    "seconds_per_unit": "seconds_per_step"}
    table_columns = {"episodes.parquet": ("episode", "return"), "tracking.parquet": ("gradient_step",)}

    def __init__(self, name: str) -> None:
        self.name = name

    def default_config(self) -> SB3Config:
        return SB3Config(algo=self.name)  # type: ignore[arg-type]

    @property
    def runner(self) -> Runner:
        return run

    def progress_total(self, cfg: SB3Config) -> int:  # type: ignore[override]
        return int(cfg.run.steps)

    def return_bounds(self, env_id: str | None) -> tuple[float, float]:
        return RETURN_BOUNDS.get(str(env_id), (-math.inf, math.inf))

    def describe(self, cfg: SB3Config) -> str:  # type: ignore[override]
        return (f"{self.name} on {cfg.env.id}: actor_lr={cfg.agent.actor_lr} critic_lr={cfg.agent.critic_lr} "
                f"seed={cfg.run.seed} steps={cfg.run.steps}")

    def run_entry(self, cfg: SB3Config) -> dict[str, Any]:  # type: ignore[override]
        return {"env": cfg.env.id, "steps": cfg.run.steps}
