"""Typed configuration of a Stable-Baselines3 run (TD3, DDPG, SAC on a Gymnasium task).

Same shape as the CCM-MADRL config (sections ``env``, ``agent``, ``run``; dotted
``--set section.field=value`` overrides; :meth:`SB3Config.validate` raises
:class:`ConfigError` before any work). ``agent`` fields left ``None`` keep
Stable-Baselines3's own default for the algorithm, so a run with no overrides is
SB3's default agent, except that the actor and the critic get their own learning
rates. Every field is documented in ``docs/algorithms.md`` (a test keeps it complete).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Literal

from ..config import (ConfigError, check_device, check_int_sizes, check_learning_rate, check_range,
                      check_tracking_thresholds, set_field)
from ..errors import describe

SB3_ALGOS = ("td3", "ddpg", "sac")

#: Stable-Baselines3's default ``learning_rate`` per algorithm (tests check it against SB3).
SB3_DEFAULT_LR: dict[str, float] = {"td3": 1e-3, "ddpg": 1e-3, "sac": 3e-4}

#: ``agent`` fields that only some algorithms take (the others are errors, not silently ignored).
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "policy_delay": ("td3",), "target_policy_noise": ("td3",), "target_noise_clip": ("td3",),
    "ent_coef": ("sac",), "ent_coef_lr": ("sac",), "target_entropy": ("sac",),
    "target_update_interval": ("sac",), "use_sde": ("sac",),
}

_INSTALL_SB3 = "pip install 'gradasym[sb3]'"
_INSTALL_MUJOCO = "pip install 'gradasym[mujoco]'"


@dataclass
class SB3EnvConfig:
    """The Gymnasium task."""

    id: str = "Pendulum-v1"
    max_episode_steps: int | None = None  # None = the id's registered time limit


@dataclass
class SB3AgentConfig:
    """Hyperparameters; ``None`` = Stable-Baselines3's default for the algorithm."""

    actor_lr: float | None = None  # None = SB3's learning_rate (1e-3 TD3/DDPG, 3e-4 SAC)
    critic_lr: float | None = None
    ent_coef_lr: float | None = None  # SAC's entropy-coefficient optimiser; None = actor_lr
    batch_size: int | None = None
    learning_starts: int | None = None  # environment steps before the first gradient step
    buffer_size: int | None = None
    tau: float | None = None
    gamma: float | None = None
    train_freq: int | None = None  # environment steps between training rounds
    gradient_steps: int | None = None  # gradient steps per round (-1: as many as env steps)
    policy_delay: int | None = None  # TD3
    target_policy_noise: float | None = None  # TD3
    target_noise_clip: float | None = None  # TD3
    action_noise: Literal["none", "normal", "ornstein-uhlenbeck"] = "none"
    action_noise_std: float = 0.1  # sigma, in units of the action range's half width
    ent_coef: str | None = None  # SAC: "auto", "auto_0.1" or a number
    target_entropy: str | None = None  # SAC: "auto" or a number
    target_update_interval: int | None = None  # SAC
    use_sde: bool | None = None  # SAC
    policy_kwargs: dict[str, Any] | None = None  # JSON, e.g. {"net_arch": [64, 64]}

    def sb3_kwargs(self) -> dict[str, Any]:
        """Constructor keywords for SB3 (only the fields that are set; learning rates and noise excluded)."""
        skip = {"actor_lr", "critic_lr", "ent_coef_lr", "action_noise", "action_noise_std"}
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in skip and getattr(self, f.name) is not None}
        for name in ("ent_coef", "target_entropy"):
            if name in out:
                out[name] = _number_or_text(out[name])
        return out


@dataclass
class SB3RunConfig:
    """What to run and what to record."""

    steps: int = 20_000  # environment steps (SB3's total_timesteps)
    seed: int = 42
    log_interval: int = 100  # gradient steps between tracking rows
    saturation_threshold: float = 0.9
    freeze_tolerance: float = 0.0
    grad_death_threshold: float = 1e-12
    threads: int = 1  # torch intra-op threads; 0 = torch's default (one per core)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N": SB3's device for the model
    checkpoint_interval: int = 5_000  # environment steps between checkpoints (SB3 learns in chunks of it)
    eval_interval: int = 0  # environment steps between deterministic evaluations; 0 = none
    eval_episodes: int = 5  # episodes per evaluation (separately seeded environment)
    tensorboard: bool = False  # SB3's and the monitor's scalars to RUN/tensorboard/ (docs/tensorboard.md)


_SECTIONS = {"env": SB3EnvConfig, "agent": SB3AgentConfig, "run": SB3RunConfig}


@dataclass
class SB3Config:
    """One Stable-Baselines3 run: ``algo`` x ``env`` x ``agent`` x ``run``."""

    algo: Literal["td3", "ddpg", "sac"] = "td3"
    env: SB3EnvConfig = field(default_factory=SB3EnvConfig)
    agent: SB3AgentConfig = field(default_factory=SB3AgentConfig)
    run: SB3RunConfig = field(default_factory=SB3RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def merge(self, data: dict[str, Any], source: str = "config") -> "SB3Config":
        """Apply a nested dict (``{"agent": {"batch_size": 64}}``); unknown keys raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at top level, got {type(data).__name__}")
        for key, value in data.items():
            if key in ("algo", "version"):
                continue
            if key == "presets":
                if value:
                    raise ConfigError(f"{source}: presets are a ccm-madrl option ({self.algo} has none)")
                continue
            if key not in _SECTIONS:
                raise ConfigError(f"{source}: unknown section '{key}' for --algo {self.algo} "
                                  f"(expected one of {sorted(_SECTIONS)})")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section '{key}' must be a table/mapping")
            for name, v in value.items():
                self.set(f"{key}.{name}", v, source)
        return self

    def set(self, dotted: str, value: Any, source: str = "override") -> None:
        """Set ``section.field`` (strings parsed to the field's type; ``policy_kwargs`` as JSON)."""
        section, _, name = dotted.partition(".")
        if section not in _SECTIONS or not name:
            raise ConfigError(f"{source}: unknown field '{dotted}' for --algo {self.algo} "
                              f"(sections: {', '.join(_SECTIONS)})")
        if dotted == "agent.policy_kwargs":
            self.agent.policy_kwargs = _json_dict(value, dotted, source)
            return
        set_field(getattr(self, section), section, name, value, source)

    def validate(self) -> "SB3Config":
        """Raise ConfigError for impossible values; fill unset learning rates with SB3's default."""
        if self.algo not in SB3_ALGOS:
            raise ConfigError(f"algo must be one of {list(SB3_ALGOS)}, got {self.algo!r}")
        a, r = self.agent, self.run
        for name, algos in ONLY_FOR.items():
            if getattr(a, name) is not None and self.algo not in algos:
                raise ConfigError(f"agent.{name} is a {'/'.join(algos)} option, not for --algo {self.algo}")
        default_lr = SB3_DEFAULT_LR[self.algo]
        a.actor_lr = default_lr if a.actor_lr is None else a.actor_lr
        a.critic_lr = default_lr if a.critic_lr is None else a.critic_lr
        for name in ("actor_lr", "critic_lr", "ent_coef_lr"):
            if getattr(a, name) is not None:
                check_learning_rate(getattr(a, name), f"agent.{name}")
        for name in ("batch_size", "buffer_size", "train_freq", "policy_delay", "target_update_interval"):
            v = getattr(a, name)
            if v is not None and v < 1:
                raise ConfigError(f"agent.{name} must be >= 1, got {v}")
        if a.learning_starts is not None and a.learning_starts < 0:
            raise ConfigError(f"agent.learning_starts must be >= 0 environment steps, got {a.learning_starts}")
        if a.gradient_steps is not None and (a.gradient_steps == 0 or a.gradient_steps < -1):
            raise ConfigError(f"agent.gradient_steps must be >= 1 or -1, got {a.gradient_steps}")
        if a.gamma is not None:
            check_range(a.gamma, "agent.gamma", 0, 1)
        if a.tau is not None:
            check_range(a.tau, "agent.tau", 0, 1, low_open=True)
        for name in ("target_policy_noise", "target_noise_clip"):
            if getattr(a, name) is not None:
                check_range(getattr(a, name), f"agent.{name}", 0, what="a noise scale, in action units")
        check_range(a.action_noise_std, "agent.action_noise_std", 0, what="in units of the action range's half width")
        _check_sac_entropy(a)
        if isinstance(r.steps, bool) or r.steps < 1:
            raise ConfigError(f"run.steps must be a positive number of environment steps, got {r.steps}")
        if r.seed < 0:
            raise ConfigError(f"run.seed must be >= 0, got {r.seed}")
        if r.log_interval < 1:
            raise ConfigError(f"run.log_interval must be >= 1 gradient step, got {r.log_interval}")
        check_tracking_thresholds(r)
        if r.threads < 0:
            raise ConfigError("run.threads must be >= 0")
        for name in ("checkpoint_interval", "eval_episodes"):
            v = getattr(r, name)
            if isinstance(v, bool) or v < 1:
                raise ConfigError(f"run.{name} must be >= 1, got {v}")
        if isinstance(r.eval_interval, bool) or r.eval_interval < 0:
            raise ConfigError(f"run.eval_interval must be >= 0 environment steps (0 = no evaluation), got {r.eval_interval}")
        if a.train_freq is not None and r.checkpoint_interval % a.train_freq:
            raise ConfigError(f"run.checkpoint_interval ({r.checkpoint_interval} environment steps) must be a multiple "
                              f"of agent.train_freq ({a.train_freq}): SB3 collects train_freq steps per round, so a "
                              "checkpoint between rounds needs it")
        check_device(r.device)
        check_int_sizes(self)
        if self.env.max_episode_steps is not None and self.env.max_episode_steps < 1:
            raise ConfigError(f"env.max_episode_steps must be >= 1, got {self.env.max_episode_steps}")
        check_env_id(self.env.id)
        return self


def _check_sac_entropy(a: SB3AgentConfig) -> None:
    """SAC's ``ent_coef`` (``"auto"``, ``"auto_X"`` with X > 0, or a fixed number >= 0) and
    ``target_entropy`` (``"auto"`` or a number), as SB3 reads them; NaN/inf are refused."""
    if a.ent_coef is not None and a.ent_coef != "auto":
        text = a.ent_coef[len("auto_"):] if a.ent_coef.startswith("auto_") else a.ent_coef
        value = _number_or_text(text)
        if not isinstance(value, float):
            raise ConfigError(f"agent.ent_coef must be \"auto\", \"auto_X\" (X > 0: the initial value) or a "
                              f"fixed number >= 0, got {a.ent_coef!r}")
        if a.ent_coef.startswith("auto_"):
            check_range(value, "agent.ent_coef's initial value (auto_X)", 0, low_open=True)
        else:
            check_range(value, "agent.ent_coef", 0, what="a fixed entropy coefficient")
    if a.target_entropy is not None and a.target_entropy != "auto":
        value = _number_or_text(a.target_entropy)
        if not isinstance(value, float):
            raise ConfigError(f"agent.target_entropy must be \"auto\" or a number, got {a.target_entropy!r}")
        check_range(value, "agent.target_entropy")


def _json_dict(value: Any, dotted: str, source: str) -> dict[str, Any] | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: {dotted} must be a JSON object, e.g. '{{\"net_arch\": [64, 64]}}' "
                              f"({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {dotted} must be a JSON object, got {value!r}")
    return dict(value)


def _number_or_text(v: str) -> float | str:
    try:
        return float(v)
    except ValueError:
        return v


@lru_cache(maxsize=64)
def check_env_id(env_id: str) -> None:
    """Raise ConfigError unless ``env_id`` is a Gymnasium task with a continuous (Box) action space.

    MuJoCo tasks without the ``mujoco`` package get the extra to install. The task is
    made once (and closed) to read its action space; the answer is cached per id.
    """
    try:
        import gymnasium as gym  # noqa: PLC0415
    except ImportError:
        raise ConfigError(f"Stable-Baselines3 runs need gymnasium and stable-baselines3: {_INSTALL_SB3}") from None
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown Gymnasium environment id '{env_id}' ({exc})") from None
    entry = str(spec.entry_point)
    if "mujoco" in entry and importlib.util.find_spec("mujoco") is None:
        raise ConfigError(f"{env_id} is a MuJoCo task and the mujoco package is not installed: {_INSTALL_MUJOCO}")
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as exc:
        hint = _INSTALL_MUJOCO if "mujoco" in str(exc).lower() else f"install its dependency ({exc})"
        raise ConfigError(f"{env_id} cannot be made: {hint}") from None
    except Exception as exc:  # noqa: BLE001 - any construction problem is a config problem here
        raise ConfigError(f"{env_id} cannot be made: {describe(exc)}") from None
    try:
        space = env.action_space
    finally:
        env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"{env_id} has a discrete/non-continuous action space ({space}); TD3, DDPG and SAC "
                          "need a continuous (Box) action space")
