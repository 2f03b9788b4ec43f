"""The algorithm registry: name -> :class:`~gradasym.algos.base.Algorithm` plugin.

``gradasym run --algo NAME``, sweeps and the report look algorithms up here and use
nothing else of them (``docs/algorithms.md``)::

    from gradasym import algos
    algo = algos.get("td3")
    cfg = algo.load_config(overrides={"env.id": "Pendulum-v1", "run.steps": 2000})
    algo.runner(cfg, "results/td3", resume=False)
    algos.of(cfg) is algo                         # the plugin of a config object
    algos.config_from_dict(read_json("config.json"))   # back from a run folder

Plugin modules import their heavy dependencies (torch agents, Stable-Baselines3)
only when a run starts, so the registry is cheap to import.
"""

from __future__ import annotations

from typing import Any

from .base import AlgoConfig, Algorithm, ConfigError, Runner
from .ccm_madrl import CCMMADRLAlgorithm
from .sb3 import SB3Algorithm

__all__ = ["AlgoConfig", "Algorithm", "DEFAULT_ALGO", "Runner", "config_from_dict", "get", "names", "of",
           "name_of_dict", "to_dict"]

#: The algorithm of a config or folder that names none (every folder written before ``algo`` existed).
DEFAULT_ALGO = "ccm-madrl"

_REGISTRY: dict[str, Algorithm] = {
    "ccm-madrl": CCMMADRLAlgorithm(),
    "td3": SB3Algorithm("td3"),
    "ddpg": SB3Algorithm("ddpg"),
    "sac": SB3Algorithm("sac"),
}


def names() -> list[str]:
    """Registered algorithm names (the default first)."""
    return list(_REGISTRY)


def get(name: str | None) -> Algorithm:
    """The plugin called ``name`` (None = :data:`DEFAULT_ALGO`); unknown names are a ConfigError."""
    key = DEFAULT_ALGO if name is None else str(name).lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown algorithm '{name}' (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[key]


def of(cfg: Any) -> Algorithm:
    """The plugin a config object belongs to (its ``algo`` attribute, else CCM-MADRL's Config)."""
    name = getattr(cfg, "algo", None)
    if name is not None:
        return get(name)
    plugin = _REGISTRY[DEFAULT_ALGO]
    if isinstance(cfg, type(plugin.default_config())):
        return plugin
    raise TypeError(f"{type(cfg).__name__} is not the config of a registered algorithm")


def name_of_dict(data: dict[str, Any] | None) -> str:
    """The algorithm a stored config dict names (``"algo"``; absent = :data:`DEFAULT_ALGO`)."""
    return str((data or {}).get("algo") or DEFAULT_ALGO)


def config_from_dict(data: dict[str, Any], source: str = "config") -> AlgoConfig:
    """Rebuild a config from its stored dict (``config.json``, ``sweep.json``'s ``base_config``)."""
    return get(name_of_dict(data)).config_from_dict(data, source=source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as stored in ``config.json`` / ``sweep.json``: ``to_dict()`` plus ``"algo"``."""
    return {"algo": of(cfg).name, **{k: v for k, v in cfg.to_dict().items() if k != "algo"}}
