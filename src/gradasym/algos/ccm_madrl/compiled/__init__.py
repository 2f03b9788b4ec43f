"""The compiled engine: the faithful CCM-MADRL training step as numba kernels on the CPU.

``run.engine`` (``docs/configuration.md``) picks how a run computes its training:

* ``"torch"`` -- the tensor code of :class:`gradasym.algos.ccm_madrl.agent.CCMMADRL` (the
  reference, the GPU path and the path for every option);
* ``"compiled"`` -- :class:`gradasym.algos.ccm_madrl.compiled.engine.CompiledEngine`: the
  critic update, the N sequential actor passes, acting with the master's selection and the
  insertion priorities as compiled loops (numba, nopython, one thread, float32 or float64)
  working in place on the agent's own tensors, so checkpoints are the same files;
* ``"auto"`` (default) -- compiled wherever :func:`compiled_unsupported` finds nothing
  against it, otherwise torch.

:func:`compiled_unsupported` is the one place that decides what the compiled engine covers.
This module is cheap to import (no numba, no torch); :func:`prepare_numba` sets numba's
cache folder before numba is first imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENGINES = ("auto", "compiled", "torch")


def compiled_unsupported(cfg: Any) -> str | None:
    """Why the compiled engine cannot run ``cfg`` (a :class:`gradasym.config.Config`), or None.

    Covered: deterministic actors with two hidden layers (any sizes), ``relu`` or ``linear``
    hidden activations, ``tanh`` / ``softsign`` / ``scaled-sigmoid`` outputs, no LayerNorm,
    a critic with two hidden layers, the sequential actor update, ``tracking = "clean"``,
    ``device = "cpu"``; gradient clipping, reward scaling, the pre-activation penalty,
    delayed actor updates and soft target updates (any ``tau``); the periodic plasticity remedies
    (ReDo, Shrink & Perturb, reset-last: they act on the agent's tensors between updates), not
    ``agent.crelu`` or ``agent.weight_decay``."""
    return agent_unsupported(cfg.agent, cfg.run.tracking, cfg.run.device)


def agent_unsupported(a: Any, tracking: str, device: str) -> str | None:
    """:func:`compiled_unsupported` from an agent's own sections (``AgentConfig``, ``run.tracking``,
    ``run.device``)."""
    if str(device) != "cpu":
        return f"run.device = {str(device)!r} (the compiled engine runs on the CPU)"
    if a.actor_update != "sequential":
        return f"agent.actor_update = {a.actor_update!r} (the compiled engine runs the faithful sequential update)"
    if tracking != "clean":
        return f"run.tracking = {tracking!r} (the original's accumulated gradients need autograd)"
    if a.policy != "deterministic":
        return f"agent.policy = {a.policy!r} (stochastic policies)"
    if a.actor_norm != "none":
        return f"agent.actor_norm = {a.actor_norm!r} (LayerNorm / input normalisation)"
    if len(a.actor_hidden) != 2:
        return f"agent.actor_hidden = {list(a.actor_hidden)} (the compiled actors have two hidden layers)"
    if len(a.critic_hidden) != 2:
        return f"agent.critic_hidden = {list(a.critic_hidden)} (the compiled critic has two hidden layers)"
    if a.entropy_coef:
        return "agent.entropy_coef > 0 (entropy terms of stochastic policies)"
    from gradasym.algos.ccm_madrl.remedies import torch_engine_only  # noqa: PLC0415

    only_torch = torch_engine_only(a)
    if only_torch:
        return f"{', '.join(only_torch)} (CReLU actors / decoupled weight decay: the torch engine's)"
    return None


def resolve_engine(cfg: Any) -> str:
    """The engine a run of ``cfg`` uses: ``"compiled"`` or ``"torch"`` (``run.engine = "auto"``:
    compiled wherever it is supported). ``run.engine = "compiled"`` on a configuration it does
    not cover raises :class:`gradasym.config.ConfigError` naming the reason."""
    from gradasym.config import ConfigError  # noqa: PLC0415

    wanted = cfg.run.engine
    if wanted not in ENGINES:
        raise ConfigError(f"run.engine = {wanted!r}: expected one of {', '.join(map(repr, ENGINES))}")
    if wanted == "torch":
        return "torch"
    reason = compiled_unsupported(cfg)
    if reason is None:
        return "compiled"
    if wanted == "compiled":
        raise ConfigError(f"run.engine = 'compiled' does not support {reason}; use run.engine = 'auto' or 'torch'")
    return "torch"


def numba_cache_dir() -> Path:
    """Where numba keeps the compiled kernels: ``$NUMBA_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/gradasym/numba`` (``~/.cache/gradasym/numba``), so that the cache works when
    the package itself is installed read-only."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradasym" / "numba"


def prepare_numba() -> None:
    """Point numba's cache at :func:`numba_cache_dir` (before numba compiles anything; numba
    reads ``NUMBA_CACHE_DIR`` when it is imported, so an already imported numba is told too)."""
    path = numba_cache_dir()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(path))
    import sys  # noqa: PLC0415

    if "numba" in sys.modules:
        import numba  # noqa: PLC0415

        if not numba.config.CACHE_DIR:
            numba.config.CACHE_DIR = str(path)
