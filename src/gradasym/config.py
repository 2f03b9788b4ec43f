"""Typed configuration for every gradasym run.

A run is fully described by one :class:`Config` (environment, algorithm, run
control). Defaults reproduce the original CCM-MADRL setup of the paper
(``docs/study.md``); every non-faithful option is a named field so that it is
recorded in the run's ``config.json``.

Configs load from TOML or YAML files, from presets (``gradasym/presets/<name>.toml``) and
from dotted ``section.field=value`` overrides, and are validated before any
long work starts (:meth:`Config.validate` raises :class:`ConfigError` naming the
offending field). Every field is documented in ``docs/configuration.md``
(``tests/test_config.py`` fails when one is missing).
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration value is impossible or unknown; the message names it."""


@dataclass
class EnvConfig:
    """The MEC environment (``docs/study.md``, ``docs/configuration.md``); units as in the original setup."""

    n_agents: int = 50
    steps_per_episode: int = 10
    lambda_e: float = 0.5
    lambda_t: float = 0.5
    min_size: float = 1.0  # MB
    max_size: float = 50.0
    min_cycle: float = 300.0  # cycles per bit
    max_cycle: float = 737.5
    min_ddl: float = 0.1  # s
    max_ddl: float = 1.0
    min_res: float = 0.4  # GHz
    max_res: float = 1.5
    min_power: float = 1.0  # dBm
    max_power: float = 24.0
    capability_e: float = 4.0  # GHz per processing unit
    k_energy_local: float = 5e-27
    min_ene: float = 0.5  # MJ
    max_ene: float = 3.2
    harvest_rate: float = 0.001  # J per step
    min_gain: float = 5.0  # dB
    max_gain: float = 14.0
    w_bandwidth: float = 40.0  # MHz
    k_channel: int = 10
    s_e: float = 400.0  # MB
    n_units: int = 8
    mode: Literal["H2", "TOBM"] = "H2"
    # "original" reproduces the H2 unit-accumulation quirk; "fifo" is a corrected queue.
    queue: Literal["original", "fifo"] = "original"

    @property
    def constraint(self) -> int:
        """Max number of offloaded tasks per step (C in ``docs/study.md``)."""
        return self.k_channel if self.mode == "H2" else self.n_units


@dataclass
class AgentConfig:
    """CCM-MADRL hyper-parameters (``docs/study.md``) and the mitigation switches."""

    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    batch_size: int = 64
    memory_capacity: int = 10_000
    gamma: float = 0.99
    tau: float = 1.0  # 1 = hard target update
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_decay: float = 2000.0
    episodes_before_train: int = 1
    # "sequential" is the faithful default; "simultaneous" is a different (faster) algorithm.
    actor_update: Literal["sequential", "simultaneous"] = "sequential"
    # Prioritised replay.
    per_alpha: float = 0.6
    per_beta0: float = 0.4
    per_beta_increment: float = 0.001
    per_eps: float = 0.01
    # Architecture.
    actor_hidden: tuple[int, ...] = (64, 32)
    critic_hidden: tuple[int, ...] = (512, 128)
    hidden_activation: Literal["relu", "linear"] = "relu"  # actor and critic hidden layers
    output_activation: Literal["tanh", "softsign", "scaled-sigmoid"] = "tanh"
    output_init: float = 3e-3  # output layers initialised U(-output_init, output_init)
    # Mitigations (docs/presets.md); defaults = off = original setup.
    actor_norm: Literal["none", "layernorm", "fullnorm"] = "none"
    policy: Literal["deterministic", "squashed-gaussian", "beta"] = "deterministic"
    entropy_coef: float = 0.0  # SAC-style entropy bonus weight (stochastic policies)
    grad_clip: float | None = None  # max gradient norm for actors and critic
    reward_norm: bool = False
    policy_delay: int = 1  # actor (and actor target) update every k-th critic update
    preact_penalty: float = 0.0  # L2 weight on actor output pre-activations
    # Plasticity remedies (docs/presets.md, "Plasticity remedies"); a period of 0 = off.
    redo_period: int = 0  # ReDo (Sokar et al. 2023): recycle tau-dormant units every k updates
    redo_tau: float = 0.025  # a unit is recycled when its dormancy score is <= this
    redo_networks: tuple[str, ...] = ("actors", "critic")
    shrink_perturb_period: int = 0  # Shrink & Perturb (Ash & Adams 2020) every k updates
    shrink_perturb_lambda: float = 0.8  # theta <- lambda * theta + sigma * fresh init
    shrink_perturb_sigma: float = 0.2
    shrink_perturb_networks: tuple[str, ...] = ("actors", "critic")
    reset_last_period: int = 0  # re-initialise the last layers every k updates (Nikishin et al. 2022)
    reset_last_layers: int = 1  # how many of each network's last layers
    reset_last_networks: tuple[str, ...] = ("actors", "critic")
    crelu: bool = False  # actors' hidden units are CReLU [relu(x), relu(-x)] (twice the width out)
    weight_decay: float = 0.0  # decoupled (AdamW) weight decay of the actors' and the critic's optimisers


@dataclass
class RunConfig:
    """What to run and what to record."""

    episodes: int = 2000
    seed: int = 42
    early_stop: bool = True
    early_stop_patience: int = 100  # stop after episode S + patience + 1
    log_interval: int = 10
    checkpoint_interval: int = 50
    tracking: Literal["clean", "original"] = "clean"
    freeze_tolerance: float = 0.0  # 0 = exact equality; the paper's wording is 1e-8
    grad_death_threshold: float = 1e-12
    saturation_threshold: float = 0.9  # |tanh(z)| above this counts as saturated
    eval_interval: int = 0  # 0 = no periodic greedy evaluation
    eval_episodes: int = 1
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N": where the agent's tensors live (docs/configuration.md)
    # torch intra-op threads; 1 keeps a run at its quiet-machine speed next to other busy
    # processes (benchmarks/RESULTS.md, "Threads"); 0 = leave torch's default (one per core).
    threads: int = 1
    tensorboard: bool = False  # also write TensorBoard scalars to RUN/tensorboard/ (docs/tensorboard.md)
    keep_replay: bool = False  # keep the replay buffer in a finished run's final checkpoint (to extend it later)
    # ccm-madrl: how the training is computed: "compiled" (numba kernels on the CPU), "torch" (the tensor
    # code: the reference, the GPU path, every option) or "auto" (compiled wherever it covers the config)
    engine: Literal["auto", "compiled", "torch"] = "auto"
    # plasticity instruments in the tracking tables (docs/monitor.md, "Plasticity")
    plasticity: bool = True
    dormant_taus: tuple[float, ...] = (0.0, 0.025, 0.1)  # tau-dormant fractions at these thresholds
    rank_delta: float = 0.01  # delta of the stable rank srank_delta


@dataclass
class Config:
    """One fully resolved run."""

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    run: RunConfig = field(default_factory=RunConfig)
    presets: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Build a config from a (possibly partial) nested dict; unknown keys are errors."""
        cfg = cls()
        cfg.merge(data)
        return cfg

    def merge(self, data: dict[str, Any], source: str = "config") -> "Config":
        """Apply a nested dict of overrides in place (unknown keys raise ConfigError)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table/mapping at top level, got {type(data).__name__}")
        for key, value in data.items():
            if key == "presets":
                for name in preset_names(value, source):
                    if name not in self.presets:
                        self.presets.append(name)
                continue
            if key not in _SECTIONS:
                raise ConfigError(
                    f"{source}: unknown section '{key}' (expected one of {sorted(_SECTIONS)} or 'presets')"
                )
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section '{key}' must be a table/mapping")
            section = getattr(self, key)
            for fname, fvalue in value.items():
                set_field(section, key, fname, fvalue, source)
        return self

    def set(self, dotted: str, value: Any, source: str = "override") -> None:
        """Set ``section.field`` to ``value`` (strings are parsed to the field's type)."""
        if "." not in dotted:
            raise ConfigError(f"{source}: '{dotted}' must look like section.field (e.g. agent.actor_lr)")
        section_name, fname = dotted.split(".", 1)
        if section_name not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section_name}' in '{dotted}'")
        set_field(getattr(self, section_name), section_name, fname, value, source)

    # ---------------------------------------------------------- validation
    def validate(self) -> "Config":
        """Raise ConfigError for any impossible value; return self when all is well."""
        e, a, r = self.env, self.agent, self.run
        _positive_int(e.n_agents, "env.n_agents")
        _positive_int(e.steps_per_episode, "env.steps_per_episode")
        _positive_int(e.k_channel, "env.k_channel")
        _positive_int(e.n_units, "env.n_units")
        if e.n_agents < e.constraint:
            raise ConfigError(
                f"env.n_agents={e.n_agents} is smaller than the offloading constraint "
                f"({'env.k_channel' if e.mode == 'H2' else 'env.n_units'}={e.constraint}); "
                "the master's random selection draws that many distinct agents"
            )
        for lo, hi in [
            ("min_size", "max_size"), ("min_cycle", "max_cycle"), ("min_ddl", "max_ddl"),
            ("min_res", "max_res"), ("min_power", "max_power"), ("min_ene", "max_ene"),
            ("min_gain", "max_gain"),
        ]:
            vlo, vhi = getattr(e, lo), getattr(e, hi)
            _finite(vlo, f"env.{lo}")
            _finite(vhi, f"env.{hi}")
            if vlo > vhi:
                raise ConfigError(f"env.{lo}={vlo} is greater than env.{hi}={vhi}")
        if e.min_ddl > 0.9 * e.max_ddl:
            raise ConfigError(
                f"env.min_ddl={e.min_ddl} exceeds 0.9 * env.max_ddl={0.9 * e.max_ddl} "
                "(deadlines are drawn from U(min_ddl, 0.9 * max_ddl))"
            )
        for name in ["min_size", "min_cycle", "min_ddl", "min_res", "min_ene", "w_bandwidth",
                     "capability_e", "s_e"]:
            check_range(getattr(e, name), f"env.{name}", 0, low_open=True)
        for name in ["lambda_e", "lambda_t", "k_energy_local", "harvest_rate"]:
            check_range(getattr(e, name), f"env.{name}", 0)

        for name in ["actor_lr", "critic_lr"]:
            check_learning_rate(getattr(a, name), f"agent.{name}")
        _positive_int(a.batch_size, "agent.batch_size")
        _positive_int(a.memory_capacity, "agent.memory_capacity")
        if a.batch_size > a.memory_capacity:
            raise ConfigError(
                f"agent.batch_size={a.batch_size} is larger than agent.memory_capacity={a.memory_capacity}: "
                "the replay buffer could never hold one batch, so no update would ever run"
            )
        check_range(a.gamma, "agent.gamma", 0, 1)
        check_range(a.tau, "agent.tau", 0, 1, low_open=True)
        if not 0 <= a.eps_end <= a.eps_start <= 1:  # also refuses NaN
            raise ConfigError(f"need 0 <= agent.eps_end <= agent.eps_start <= 1, got {a.eps_end}, {a.eps_start}")
        check_range(a.eps_decay, "agent.eps_decay", 0, low_open=True, what="an exploration decay time in episodes")
        if a.episodes_before_train < 0:
            raise ConfigError("agent.episodes_before_train must be >= 0")
        if not a.actor_hidden or any(int(h) < 1 for h in a.actor_hidden):
            raise ConfigError(f"agent.actor_hidden must be non-empty positive sizes, got {a.actor_hidden}")
        if not a.critic_hidden or any(int(h) < 1 for h in a.critic_hidden):
            raise ConfigError(f"agent.critic_hidden must be non-empty positive sizes, got {a.critic_hidden}")
        if a.grad_clip is not None:
            check_range(a.grad_clip, "agent.grad_clip", 0, low_open=True, what="a gradient norm, or unset")
        _positive_int(a.policy_delay, "agent.policy_delay")
        check_range(a.preact_penalty, "agent.preact_penalty", 0, what="a loss weight")
        check_range(a.entropy_coef, "agent.entropy_coef", 0, what="a loss weight")
        check_range(a.output_init, "agent.output_init", 0, what="the half width of U(-output_init, output_init)")
        if a.policy != "deterministic" and a.output_activation != "tanh":
            raise ConfigError(
                f"agent.policy={a.policy!r} defines its own output squashing; "
                f"it cannot be combined with agent.output_activation={a.output_activation!r}"
            )
        check_range(a.per_alpha, "agent.per_alpha", 0, what="a priority exponent")
        check_range(a.per_beta0, "agent.per_beta0", 0, 1, what="an importance-weight exponent")
        check_range(a.per_beta_increment, "agent.per_beta_increment", 0, what="beta's growth per sampling call")
        check_range(a.per_eps, "agent.per_eps", 0, low_open=True, what="a priority offset")
        check_remedies(a)

        if r.episodes < 1:
            raise ConfigError(f"run.episodes must be >= 1, got {r.episodes}")
        if not isinstance(r.seed, int) or isinstance(r.seed, bool) or not 0 <= r.seed < 2**63:
            raise ConfigError(f"run.seed must be an integer in [0, 2**63), got {r.seed!r}")
        _positive_int(r.log_interval, "run.log_interval")
        _positive_int(r.checkpoint_interval, "run.checkpoint_interval")
        if r.early_stop_patience < 0:
            raise ConfigError("run.early_stop_patience must be >= 0")
        check_tracking_thresholds(r)
        check_plasticity_tracking(r)
        if r.eval_interval < 0 or r.eval_episodes < 1:
            raise ConfigError("run.eval_interval must be >= 0 and run.eval_episodes >= 1")
        if r.threads < 0:
            raise ConfigError("run.threads must be >= 0")
        check_device(r.device)
        check_int_sizes(self)
        if r.engine == "compiled":  # refused before any work, with the reason (docs/configuration.md)
            from gradasym.algos.ccm_madrl.compiled import resolve_engine  # noqa: PLC0415

            resolve_engine(self)
        return self


#: The largest integer a config field may hold: tables and checkpoints store integers as int64.
MAX_INT = 2**63 - 1


def check_int_sizes(cfg: Any) -> None:
    """Refuse an integer field of ``cfg``'s sections (``env``, ``agent``, ``run``; any algorithm's)
    beyond :data:`MAX_INT` (``--episodes 1e23``): it could not be stored in a table or checkpoint."""
    for section in ("env", "agent", "run"):
        part = getattr(cfg, section, None)
        if part is None or not dataclasses.is_dataclass(part):
            continue
        for f in fields(part):
            values = getattr(part, f.name)
            for v in values if isinstance(values, (tuple, list)) else (values,):
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                    raise ConfigError(f"{section}.{f.name} = {v:.3g} is too large (at most 2**63 - 1)")


def check_device(device: str) -> None:
    """``run.device``: ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` when torch sees that GPU (one
    line naming the problem otherwise, before anything is built)."""
    if device == "cpu":
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", str(device))
    if match is None:
        raise ConfigError(f"run.device={device!r}: expected \"cpu\", \"cuda\" or \"cuda:N\" (N = GPU index)")
    import torch  # noqa: PLC0415  (config stays importable without loading torch)

    if not torch.cuda.is_available():
        raise ConfigError(f"run.device={device!r}: torch sees no GPU on this machine (use run.device = \"cpu\")")
    index, count = match.group(1), torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise ConfigError(f"run.device={device!r}: torch sees {count} GPU(s) on this machine "
                          f"(cuda:0 to cuda:{count - 1})")


_SECTIONS = {"env": EnvConfig, "agent": AgentConfig, "run": RunConfig}

# ---------------------------------------------------------------- memory
#: Per-agent state and action sizes of the CCM-MADRL networks (gradasym.algos.ccm_madrl.agent STATE_DIM, ACTION_DIM).
_STATE_DIM, _ACTION_DIM = 7, 3
_FLOAT_BYTES = 4  # float32 networks and replay buffer
#: Copies of every network parameter alive during training: the parameter, its gradient,
#: the target network, two Adam moments and the monitor's parameter snapshot.
_PARAM_COPIES = 6


def _mlp_params(sizes: list[int]) -> int:
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def estimate_memory(cfg: Config) -> dict[str, int]:
    """Bytes a run of ``cfg`` needs at its peak, by component (and ``"total"``).

    A deliberately simple upper-bound model, used to refuse sizes that cannot fit
    before any allocation (:func:`check_memory`):

    * ``replay``: ``memory_capacity`` transitions of all agents (states, next states,
      actions, offloading decisions; rewards, dones and priorities);
    * ``actors``: the ensemble of ``n_agents`` MLPs ``7 -> actor_hidden -> 3``, and
    * ``critic``: the MLP ``n_agents * 10 -> critic_hidden -> 1``, each times
      :data:`_PARAM_COPIES` (parameters, gradients, target, Adam moments, monitor snapshot);
    * ``work``: the update's batch activations (the joint critic input of
      ``batch_size`` x (constraint + 2) terms, forward and backward);
    * ``checkpoint``: resuming loads a checkpoint (replay and networks) next to the
      live state.
    """
    e, a = cfg.env, cfg.agent
    n, cap, batch = int(e.n_agents), int(a.memory_capacity), int(a.batch_size)
    joint = n * (_STATE_DIM + _ACTION_DIM)
    per_transition = n * (2 * _STATE_DIM + _ACTION_DIM + 1) * _FLOAT_BYTES + 2 * _FLOAT_BYTES + 8
    replay = cap * per_transition
    hidden = [int(h) for h in a.actor_hidden]
    actor_params = n * _mlp_params([_STATE_DIM, *hidden, _ACTION_DIM])
    if getattr(a, "crelu", False):  # a CReLU layer's output is twice its width: the next layer's input doubles
        ins, outs = [_STATE_DIM] + [2 * h for h in hidden], [*hidden, _ACTION_DIM]
        actor_params = n * sum(i * o + o for i, o in zip(ins, outs))
    critic_params = _mlp_params([joint, *map(int, a.critic_hidden), 1])
    # the plasticity instruments keep one more copy: the initial parameters (distance from init)
    copies = _PARAM_COPIES + (1 if getattr(cfg.run, "plasticity", False) else 0)
    actors = actor_params * _FLOAT_BYTES * copies
    critic = critic_params * _FLOAT_BYTES * copies
    widest = max([joint, *map(int, a.critic_hidden), *map(int, a.actor_hidden)])
    work = 3 * batch * (e.constraint + 2) * widest * _FLOAT_BYTES
    checkpoint = replay + (actor_params + critic_params) * _FLOAT_BYTES * 4
    parts = {"replay": replay, "actors": actors, "critic": critic, "work": work, "checkpoint": checkpoint}
    parts["total"] = sum(parts.values())
    return parts


def available_memory() -> int | None:
    """Bytes of memory this process can still use: ``MemAvailable`` (and the cgroup limit).

    None when it cannot be told (no ``/proc``): then nothing is refused.
    """
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            avail = None
    try:  # cgroup v2 limit of this container
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(cfg: Config, concurrent: int = 1, available: int | None = None) -> None:
    """Refuse (ConfigError, naming the estimate) a run that cannot fit in memory.

    ``concurrent`` runs of this size at once (a sweep's workers); ``available`` defaults
    to :func:`available_memory`.
    """
    avail = available_memory() if available is None else available
    if avail is None:
        return
    parts = estimate_memory(cfg)
    need = parts["total"] * max(1, concurrent)
    if need > avail:
        big = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items() if k != "total" and v >= 0.05 * parts["total"])
        times = f" x {concurrent} runs at once" if concurrent > 1 else ""
        raise ConfigError(
            f"env.n_agents={cfg.env.n_agents}, agent.memory_capacity={cfg.agent.memory_capacity}: a run needs "
            f"about {_gib(parts['total'])}{times} ({big}), but only {_gib(avail)} of memory is available; "
            "use fewer agents, a smaller replay (agent.memory_capacity) or smaller networks"
            + (" (or fewer workers)" if concurrent > 1 else "")
        )


def _positive_int(v: Any, name: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _finite(v: float, name: str) -> None:
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {v}")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """``"in (0, 1]"``, ``"a finite number >= 0"``, ... for :func:`check_range`'s messages."""
    if high == math.inf:
        return "a finite number" if low == -math.inf else f"a finite number {'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_range(v: float, name: str, low: float = -math.inf, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False, what: str = "") -> None:
    """Refuse NaN, +-inf and ``v`` outside ``[low, high]`` (``low_open``/``high_open``: that end
    excluded), with one line naming the field and the allowed range, e.g.
    ``agent.per_beta0 must be in [0, 1] (an importance-weight exponent), got nan``."""
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    if not (math.isfinite(v) and above and below):
        meaning = f" ({what})" if what else ""
        raise ConfigError(f"{name} must be {_interval(low, high, low_open, high_open)}{meaning}, got {v}")


def check_learning_rate(v: float, name: str) -> None:
    """A learning rate: finite and > 0 (``agent.actor_lr must be a positive learning rate, got -1.0``)."""
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be a positive learning rate, got {v}")


def check_freeze_thresholds(freeze_tolerance: float, grad_death_threshold: float, prefix: str = "") -> None:
    """``freeze_tolerance`` and ``grad_death_threshold`` finite and >= 0, named ``{prefix}freeze_tolerance``
    etc. (the config's ``run.`` fields, or :class:`~gradasym.monitor.ActorCriticMonitor`'s arguments)."""
    check_range(freeze_tolerance, f"{prefix}freeze_tolerance", 0, what="the largest |change| counted as frozen")
    check_range(grad_death_threshold, f"{prefix}grad_death_threshold", 0, what="a gradient norm")


def check_tracking_thresholds(run: Any) -> None:
    """The monitor's thresholds of a ``run`` section (every algorithm's): ``freeze_tolerance`` and
    ``grad_death_threshold`` finite and >= 0, ``saturation_threshold`` in (0, 1)."""
    check_freeze_thresholds(run.freeze_tolerance, run.grad_death_threshold, "run.")
    check_range(run.saturation_threshold, "run.saturation_threshold", 0, 1, low_open=True, high_open=True)


REMEDY_NETWORKS = ("actors", "critic")


def _networks(value: Any, name: str) -> None:
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if not vals or any(v not in REMEDY_NETWORKS for v in vals) or len(set(vals)) != len(vals):
        raise ConfigError(f"{name}: expected a non-empty list of distinct names from {list(REMEDY_NETWORKS)}, "
                          f"got {value!r}")


def check_remedies(a: Any) -> None:
    """The plasticity remedies of an ``agent`` section (``docs/presets.md``): periods >= 0
    (0 = off), thresholds and factors in range, network names known, ``reset_last_layers``
    at most the depth of every network it resets, CReLU only on ReLU actors."""
    for name in ("redo_period", "shrink_perturb_period", "reset_last_period"):
        v = getattr(a, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"agent.{name} must be an integer >= 0 (updates; 0 = off), got {v!r}")
    check_range(a.redo_tau, "agent.redo_tau", 0, what="a dormancy-score threshold")
    check_range(a.shrink_perturb_lambda, "agent.shrink_perturb_lambda", 0, what="a shrink factor")
    check_range(a.shrink_perturb_sigma, "agent.shrink_perturb_sigma", 0, what="a perturbation scale")
    check_range(a.weight_decay, "agent.weight_decay", 0, what="a decoupled weight-decay coefficient")
    for name in ("redo_networks", "shrink_perturb_networks", "reset_last_networks"):
        _networks(getattr(a, name), f"agent.{name}")
    _positive_int(a.reset_last_layers, "agent.reset_last_layers")
    depth = {"actors": len(a.actor_hidden) + 1, "critic": len(a.critic_hidden) + 1}
    for net in a.reset_last_networks:
        if a.reset_last_layers > depth[net]:
            raise ConfigError(f"agent.reset_last_layers={a.reset_last_layers} exceeds the {depth[net]} layers "
                              f"of the {net} (agent.reset_last_networks)")
    if a.crelu and a.hidden_activation != "relu":
        raise ConfigError(f"agent.crelu needs agent.hidden_activation = 'relu', got {a.hidden_activation!r}")
    if a.crelu and a.actor_norm == "fullnorm":
        raise ConfigError("agent.crelu cannot be combined with agent.actor_norm = 'fullnorm' "
                          "(its LayerNorms are as wide as the hidden layers)")
    if a.crelu and a.policy != "deterministic":
        raise ConfigError(f"agent.crelu covers deterministic actors, got agent.policy={a.policy!r}")


def check_plasticity_tracking(run: Any) -> None:
    """``run.dormant_taus`` non-empty, finite, >= 0; ``run.rank_delta`` in [0, 1)."""
    taus = list(getattr(run, "dormant_taus", (0.0,)))
    if not taus:
        raise ConfigError("run.dormant_taus must name at least one threshold")
    for t in taus:
        check_range(t, "run.dormant_taus", 0, what="a dormancy-score threshold")
    check_range(getattr(run, "rank_delta", 0.01), "run.rank_delta", 0, 1, high_open=True)


def as_list(value: Any, name: str, of: str = "values") -> list[Any]:
    """``value`` (a list or tuple) as a list; a string or a number, which would be split into
    characters or not be iterable, is a ConfigError: ``{name} must be a list of {of}, got '32'``."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list of {of}, got {value!r}")
    return list(value)


def preset_names(value: Any, source: str) -> list[str]:
    """A file's top-level ``presets`` entry as a list of names (missing/null: none); anything else,
    e.g. ``presets = "layernorm"``, is a ConfigError naming ``source``."""
    if value is None:
        return []
    names = as_list(value, f"{source}: 'presets'", 'preset names (e.g. presets = ["layernorm"])')
    if not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{source}: 'presets' must be a list of preset names, got {value!r}")
    return names


#: Integer strings with more digits than this are refused (``"1e999999999"`` would build a huge int).
_MAX_INT_DIGITS = 100


def parse_int(value: Any, name: str) -> int:
    """``value`` as an exact integer: an int as it is, an integral float, or a string parsed
    without going through float (``"9007199254740993"`` keeps every digit). A string in
    exponent or decimal form (``"1e3"``, ``"2000.0"``) is read exactly and accepted only when it
    is an integer; anything else is a ConfigError naming ``name``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            exact = decimal.Decimal(text)
        except decimal.InvalidOperation:
            exact = None
        if exact is not None and exact.is_finite():
            if exact.adjusted() >= _MAX_INT_DIGITS:
                raise ConfigError(f"{name}: {value!r} is too large (at most {_MAX_INT_DIGITS} digits)")
            if exact == exact.to_integral_value():
                return int(exact)
    raise ConfigError(f"{name}: expected an integer, got {value!r}")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` (possibly a CLI string) to the annotated type ``tp``."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], name) for v in value)
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [t for t in args if t is not type(None)][0]
        return _coerce(value, inner, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        return parse_int(value, name)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float's range
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    return value


def set_field(section: Any, section_name: str, fname: str, value: Any, source: str = "override") -> None:
    hints = get_type_hints(type(section))
    names = {f.name for f in fields(section)}
    if fname not in names:
        raise ConfigError(
            f"{source}: unknown field '{section_name}.{fname}' (known: {', '.join(sorted(names))})"
        )
    setattr(section, fname, _coerce(value, hints[fname], f"{section_name}.{fname}"))


# ---------------------------------------------------------------- files
#: A config or grid file larger than this (bytes) is refused unread: real ones are a few KB.
MAX_CONFIG_BYTES = 1_000_000
#: A YAML document whose aliases expand to more nodes than this is refused before it is built
#: (an "alias bomb": a few lines that expand to billions of values).
MAX_YAML_NODES = 100_000


class YamlRefused(yaml.YAMLError):
    """What :class:`StrictYamlLoader` refuses: a duplicated key, an ambiguous number, an alias bomb."""


class StrictYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without YAML's silent surprises, for config and grid files.

    * a key given twice in one mapping (``run:`` twice) is refused, not the first one dropped;
    * an integer with a leading zero (``seed: 017``, YAML 1.1 octal = 15) or in base 60
      (``1:30`` = 90) is refused: write the number you mean (``17``; ``0o17``, which YAML 1.1
      reads as a string, is refused by the field's type check);
    * a document whose aliases expand to more than :data:`MAX_YAML_NODES` nodes is refused
      after parsing and before any value is built.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise YamlRefused(f"line {line}: key '{key}' is given twice (also on line {seen[key]}); "
                                      "keep one")
                if isinstance(key, (str, int, float, bool)):
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "")
        line = node.start_mark.line + 1
        if re.fullmatch(r"[-+]?0[0-7]+", text):
            raise YamlRefused(f"line {line}: {node.value} has a leading 0, which YAML 1.1 reads as an octal "
                              f"number ({int(text, 8)}); write the number without the leading 0")
        if ":" in text:
            raise YamlRefused(f"line {line}: {node.value} is a base-60 number in YAML 1.1 "
                              f"({super().construct_yaml_int(node)}); quote it or write the number you mean")
        return super().construct_yaml_int(node)


StrictYamlLoader.add_constructor("tag:yaml.org,2002:int", StrictYamlLoader.construct_yaml_int)
StrictYamlLoader.add_constructor("tag:yaml.org,2002:map", StrictYamlLoader.construct_yaml_map)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse (:class:`YamlRefused`) a node graph that expands to more than :data:`MAX_YAML_NODES`
    nodes; shared (aliased) nodes count once per use, each distinct node is visited once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise YamlRefused(f"its aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?); "
                              "write the values out")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook refusing a key given twice (plain JSON keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key '{key}' is given twice; keep one")
        out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (.toml) or YAML (.yaml/.yml) file into a dict, with clear errors.

    Refused with one line naming the file: a folder, a device or FIFO (``/dev/null``), a file over
    :data:`MAX_CONFIG_BYTES`, a key given twice, and what :class:`StrictYamlLoader` refuses."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} is not a regular file (a device, FIFO or socket); pass a config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config file (at most "
                              f"{MAX_CONFIG_BYTES:,})")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text config file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=StrictYamlLoader) or {}  # noqa: S506 - a SafeLoader
        elif path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_json_object)
        else:
            raise ConfigError(f"{path}: unknown config format '{path.suffix}' (use .toml, .yaml or .json)")
    except YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: malformed config file: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


#: Where preset files are looked up: the package's own ``gradasym/presets/`` (package data,
#: so a wheel install carries them; ``docs/presets.md``).
PRESET_DIRS = [Path(__file__).resolve().parent / "presets"]


def preset_path(name: str) -> Path:
    """The file of the shipped preset ``name``; only the names :func:`available_presets` lists are
    accepted, so a preset never reads a file outside ``PRESET_DIRS`` (``--preset ../x`` is refused:
    a file of one's own goes through ``--config``)."""
    names = available_presets()
    if name not in names:
        if any(c in str(name) for c in "/\\") or str(name).endswith((".toml", ".yaml", ".yml", ".json")):
            raise ConfigError(f"preset '{name}' is a path; --preset takes only the names of the shipped "
                              f"presets (see `gradasym presets`); pass a file of your own with --config")
        raise ConfigError(f"unknown preset '{name}' (available: {', '.join(names) or 'none'})")
    for d in PRESET_DIRS:
        p = d / f"{name}.toml"
        if p.is_file():
            return p
    raise ConfigError(f"unknown preset '{name}' (available: {', '.join(names) or 'none'})")  # pragma: no cover


def available_presets() -> list[str]:
    names: set[str] = set()
    for d in PRESET_DIRS:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def merge_over_presets(cfg: Any, data: dict[str, Any], source: str) -> None:
    """Merge a config file's sections into ``cfg`` after its presets were applied, refusing a field
    the file sets to another value than a preset does.

    Otherwise one of the two would be silently lost: the preset's value (a baseline run named and
    reported as the mitigation) or the file's. A deliberate change of a preset's field is an
    override (``--set``), which comes after both.
    """
    touched = getattr(cfg, "_preset_fields", {})
    fixed = {key: _field_value(cfg, key) for key in touched}
    cfg.merge(data, source=source)
    for key, value in fixed.items():
        now = _field_value(cfg, key)
        if now != value:
            raise ConfigError(f"{source} sets {key} = {now!r}, but preset '{touched[key][0]}' sets {key} = "
                              f"{value!r}; remove one of the two (or change the preset's value with --set {key}=...)")


def _field_value(cfg: Any, dotted: str) -> Any:
    section, name = dotted.split(".", 1)
    return getattr(getattr(cfg, section), name)


def apply_preset(cfg: Config, name: str) -> Config:
    """Apply preset ``name`` on top of ``cfg``; a field two presets set differently is an error."""
    data = read_config_file(preset_path(name))
    data.pop("description", None)
    conflicts_with = data.pop("conflicts", [])
    for other in cfg.presets:
        if other in conflicts_with:
            raise ConfigError(f"presets '{other}' and '{name}' cannot be combined")
    # Detect two presets setting the same field to different values.
    touched = getattr(cfg, "_preset_fields", {})
    for section, values in data.items():
        if section == "presets" or not isinstance(values, dict):
            continue
        for k, v in values.items():
            key = f"{section}.{k}"
            if key in touched and touched[key][1] != v:
                raise ConfigError(
                    f"presets '{touched[key][0]}' and '{name}' conflict on {key} "
                    f"({touched[key][1]!r} vs {v!r})"
                )
            touched[key] = (name, v)
    object.__setattr__(cfg, "_preset_fields", touched)
    cfg.merge(data, source=f"preset '{name}'")
    if name != "baseline" and name not in cfg.presets:
        cfg.presets.append(name)
    return cfg


def load_config(
    config_file: str | Path | None = None,
    presets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve a config: defaults <- presets and file (which may not contradict each other:
    :func:`merge_over_presets`) <- dotted overrides; then validate."""
    cfg = Config()
    file_data = read_config_file(config_file) if config_file else {}
    for name in preset_names(file_data.pop("presets", None), str(config_file)) + preset_names(presets, "the presets argument"):
        apply_preset(cfg, name)
    if file_data:
        merge_over_presets(cfg, file_data, source=str(config_file))
    for key, value in (overrides or {}).items():
        cfg.set(key, value)
    return cfg.validate()
