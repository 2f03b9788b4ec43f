"""CCM-MADRL on the MEC environment as an :class:`~gradasym.algos.base.Algorithm`.

The config is :class:`gradasym.config.Config` (sections ``env`` = MEC, ``agent`` =
CCM-MADRL, ``run``, plus ``presets``); the runner is
:func:`gradasym.algos.ccm_madrl.runner.run_experiment` (episodes, bit-exact resume from
``checkpoint.pt``), whose ``Trainer`` hands each component its own section
(``docs/architecture.md``, "Who receives what"). The paper's tables and constants
apply to these runs only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradasym.config import Config, apply_preset, check_memory, estimate_memory, load_config
from gradasym.algos.base import Algorithm, Runner


class CCMMADRLAlgorithm(Algorithm):
    """50 client actors + 1 master critic on the MEC simulator (the paper's setting)."""

    name = "ccm-madrl"
    progress_unit = "episodes"
    stop_unit = "episodes"
    can_resume = True
    report_extras = frozenset({"paper"})
    summary_keys = {"done": "episodes_run", "total": "episodes_requested", "stop": "stopping_episode",
                    "return_first": "reward_first10", "return_last": "reward_last10",
                    "seconds_per_unit": "seconds_per_episode"}
    return_label = "reward"
    table_columns = {"episodes.parquet": ("episode", "reward"), "tracking.parquet": ("episode",),
                     "tracking_agents.parquet": ("episode", "agent")}

    def default_config(self) -> Config:
        return Config()

    def config_from_dict(self, data: dict[str, Any], source: str = "config") -> Config:
        cfg = Config()
        # config.json's engine_used records what run.engine resolved to; it is not a config field
        cfg.merge({k: v for k, v in data.items() if k not in ("algo", "version", "engine_used")}, source=source)
        return cfg

    def load_config(self, config_file: str | Path | None = None, presets: list[str] | None = None,
                    overrides: dict[str, Any] | None = None) -> Config:
        if config_file:  # a file may name its algorithm; load_config knows only Config's sections
            from gradasym.config import read_config_file  # noqa: PLC0415

            data = read_config_file(config_file)
            if "algo" in data:
                return super().load_config(config_file, presets, overrides)  # type: ignore[return-value]
        return load_config(config_file, presets=presets, overrides=overrides)

    def apply_preset(self, cfg: Config, name: str) -> None:  # type: ignore[override]
        apply_preset(cfg, name)

    def presets(self, cfg: Config) -> list[str]:  # type: ignore[override]
        return list(cfg.presets)

    @property
    def runner(self) -> Runner:
        """:func:`gradasym.algos.ccm_madrl.runner.run_experiment` (imported on first use: torch, the agent)."""
        from .runner import run_experiment  # noqa: PLC0415

        return run_experiment

    def progress_total(self, cfg: Config) -> int:  # type: ignore[override]
        return int(cfg.run.episodes)

    def n_actors(self, cfg: Config) -> int:  # type: ignore[override]
        return int(cfg.env.n_agents)

    def memory_bytes(self, cfg: Config) -> int:  # type: ignore[override]
        return int(estimate_memory(cfg)["total"])

    def check_memory(self, cfg: Config, concurrent: int = 1) -> None:  # type: ignore[override]
        check_memory(cfg, concurrent=concurrent)

    def describe(self, cfg: Config) -> str:  # type: ignore[override]
        from .compiled import resolve_engine  # noqa: PLC0415  (cheap: no numba, no torch)

        return (f"actor_lr={cfg.agent.actor_lr} critic_lr={cfg.agent.critic_lr} seed={cfg.run.seed} "
                f"actor_update={cfg.agent.actor_update} presets={cfg.presets or ['baseline']} "
                f"engine={resolve_engine(cfg)}")

    def run_entry(self, cfg: Config) -> dict[str, Any]:  # type: ignore[override]
        return {"n_agents": cfg.env.n_agents, "episodes": cfg.run.episodes}
