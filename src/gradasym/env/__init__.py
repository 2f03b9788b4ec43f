"""MEC task-offloading environment: the vectorised core and an optional PettingZoo wrapper.

``MECParallelEnv`` (``gradasym.env.pettingzoo``) needs the ``pettingzoo`` extra and is
imported lazily, so ``import gradasym.env`` works without it.
"""

from __future__ import annotations

from typing import Any

from gradasym.env.mec import STATE_FIELDS, ActionError, MECEnv, MECEnvVec, check_env_config

__all__ = ["ActionError", "MECEnv", "MECEnvVec", "MECParallelEnv", "STATE_FIELDS", "check_env_config"]


def __getattr__(name: str) -> Any:
    if name == "MECParallelEnv":
        from gradasym.env.pettingzoo import MECParallelEnv

        return MECParallelEnv
    raise AttributeError(f"module 'gradasym.env' has no attribute {name!r}")
