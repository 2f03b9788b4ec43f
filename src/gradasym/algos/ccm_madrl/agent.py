"""CCM-MADRL: client actors propose, the master critic selects (``ccm-madrl.md``).

:class:`CCMMADRL` implements the algorithm of the spec, faithful by default:

* :meth:`CCMMADRL.act` -- one environment step: actors, Gaussian exploration noise,
  proposers, the master's selection (fits / random / greedy branch), environment
  action ("Acting");
* :meth:`CCMMADRL.remember` -- insert a transition with its TD error as priority
  ("Replay");
* :meth:`CCMMADRL.update` -- one training update: prioritised sample, critic
  update, critic target update, then the actor updates, sequential (faithful) or
  simultaneous (option) ("Critic update", "Actor update").

The mitigation presets (``experiments.md`` section 3, ``docs/presets.md``) run on this
same code path: the actors' architecture and policy heads come from
:class:`gradasym.algos.ccm_madrl.networks.ActorEnsemble`; the agent adds the ``fullnorm`` input
normalisation (:meth:`CCMMADRL._actor_inputs`), the reward scale (``reward_norm``),
per-network gradient clipping (``grad_clip``, each actor separately), delayed actor
updates (``policy_delay``), the actor-loss regularisers (``preact_penalty``, the
entropy terms) and sampling from stochastic policies when acting. With the defaults
nothing of it runs.

Speed comes from evaluating the same mathematics in a cheaper order (only float
rounding differs from the plain per-agent implementation ``tests/reference.py``,
which the tests compare against):

* the N actors are one batched ensemble (``gradasym.algos.ccm_madrl.networks.ActorEnsemble``);
* the critic's first layer is split into a per-transition part (joint state and
  joint action, shared by the N rows of a transition) and a per-row part (own state
  and action); the parts that depend on the states only are computed once per update;
* ``max_k Q`` is found without gradient on proposer rows only; the gradient of the
  max flows through the arg-max row only, so the backward pass needs one row per
  transition (B rows), here written out by hand (``BatchCritic.action_grad``,
  ``ActorEnsemble.backward_agent``; checked against autograd in the tests);
* an episode's transitions get their insertion priorities in one batched call after
  the episode (the networks do not change during it);
* in the sequential actor loop only actor i-1's action column is recomputed after
  its step (the other actors have not changed), and most proposer rows are skipped
  by an exact Lipschitz bound: a row whose Q cannot have overtaken the best row since
  the last full evaluation cannot be the arg-max (``gradasym.algos.ccm_madrl.critic.BatchCritic``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gradasym.config import AgentConfig, Config
from gradasym.algos.ccm_madrl.critic import BatchCritic, Critic
from gradasym.algos.ccm_madrl.networks import ActorEnsemble, soft_update_
from gradasym.algos.ccm_madrl.optim import BatchedAdam
from gradasym.algos.ccm_madrl.policies import ActorOutput, RunningMeanStd, monitor_squash
from gradasym.algos.ccm_madrl.replay import PrioritizedReplay, ReplayBatch
from gradasym.seeding import numpy_generator, torch_generator

STATE_DIM = 7  # [power, gain, energy, size_MB, cycles, deadline, res] (mec-environment.md)
ACTION_DIM = 3  # [offload proposal, frequency fraction, power fraction]
SIZE_COLUMN = 3  # task size (MB) in the state vector


def to_env_fraction(v: np.ndarray) -> np.ndarray:
    """``g(v) = (v + 1) / 2 * (1 - 0.01) + 0.01``: maps [-1, 1] onto [0.01, 1]."""
    return (v + 1.0) / 2.0 * (1.0 - 0.01) + 0.01


@dataclass
class ActResult:
    """One acting step (``ccm-madrl.md``, "Acting")."""

    actions: np.ndarray  # (N, 3) actor actions as acted: noisy and clipped (float64 holding replay-dtype values)
    x: np.ndarray  # (N,) float64 0/1: the master's offload decisions
    env_actions: np.ndarray  # (N, 3) [x, g(a1), g(a2)] for MECEnv.step
    constrained: bool  # the master had to select (constraint or storage exceeded)
    epsilon: float  # exploration rate used (0.0 when explore=False)
    preact: Tensor  # (N, 3) actor output pre-activations (before tanh and noise; with a mitigation the
    #                 monitor's pre-activation, docs/presets.md), for the "original" pool
    branch: str  # "none" (no proposer) | "fits" | "random" | "greedy"


@dataclass
class UpdateResult:
    """What one training update computed (see docs/architecture.md, "Agent")."""

    critic_loss: float
    actor_loss: float  # mean over actors of loss_i (simultaneous: the one loss); NaN if the actors did not update
    actor_losses: np.ndarray  # (N,) loss_i of each actor's pass (regularisers included)
    actor_grads: dict[str, Tensor] | None  # "l{j}.weight" (N, in, out), "l{j}.bias" (N, out) [+ "l{j}.ln_*"];
    #                 each actor's gradient before clipping; None if the actors did not update (policy_delay)
    critic_grads: dict[str, Tensor]  # "l{j}.weight" (out, in), "l{j}.bias" (out,)
    preact: Tensor  # (B, N, 3) actor output pre-activations, actors as at actor-update start
    actor_hidden: list[Tensor]  # (B, N, H_l) same forward
    critic_hidden: list[Tensor]  # (T, H_l) hidden activations of the critic-loss forward (T terms)
    indices: np.ndarray  # (B,) replay slots of the batch
    td_errors: np.ndarray  # (B,) priority error per transition (critic before its step)
    weights: np.ndarray  # (B,) importance weights used
    preact_pool: Tensor | None = None  # tracking="original": (passes, B, N, 3) all actor-loop pre-activations
    actor_updated: bool = True  # False: the actors (and their targets) skipped this update (policy_delay)


_BatchCritic = BatchCritic  # former name (tests, checkpoints of diagnostics)

CLIP_EPS = 1e-6  # gradient clipping: coef = max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_
OBS_CLIP = 10.0  # fullnorm: normalised actor inputs are clipped to [-10, 10] (as SB3 VecNormalize)


@dataclass(frozen=True)
class AgentDims:
    """The environment facts the agent is built for: its only knowledge of the environment.

    ``n_agents`` (N actors), ``constraint`` (C: most offloaded tasks per step),
    ``server_storage`` (S_E, MB) and the per-agent ``state_dim`` / ``action_dim``.
    :meth:`of` reads them from an environment (``MECEnv`` has these attributes).
    """

    n_agents: int
    constraint: int
    server_storage: float
    state_dim: int = STATE_DIM
    action_dim: int = ACTION_DIM

    @classmethod
    def of(cls, env: object) -> "AgentDims":
        """The dims of an environment object with the attributes of this class (``MECEnv``)."""
        return cls(int(env.n_agents), int(env.constraint), float(env.server_storage),  # type: ignore[attr-defined]
                   int(env.state_dim), int(env.action_dim))  # type: ignore[attr-defined]


def agent_sections(cfg: Config, seed: int | None = None) -> tuple[AgentConfig, AgentDims, int, str]:
    """What a whole :class:`Config` hands to :class:`CCMMADRL`: ``(cfg.agent, dims of cfg.env,
    seed (default cfg.run.seed), cfg.run.tracking)``; the dims are those of
    ``MECEnv(cfg.env)`` (its constraint ``cfg.env.constraint``, storage ``cfg.env.s_e``)."""
    e = cfg.env
    dims = AgentDims(int(e.n_agents), int(e.constraint), float(e.s_e))
    return cfg.agent, dims, int(cfg.run.seed if seed is None else seed), cfg.run.tracking


def _on_cpu(tree):
    """``tree`` (nested dicts, lists, tuples) with every tensor copied to the CPU."""
    if isinstance(tree, Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: _on_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_on_cpu(v) for v in tree)
    return tree


def epsilon(cfg: AgentConfig, episodes_done: int) -> float:
    """Exploration scale after ``episodes_done`` completed episodes:
    ``eps_end + (eps_start - eps_end) * exp(-episodes_done / eps_decay)``."""
    return cfg.eps_end + (cfg.eps_start - cfg.eps_end) * math.exp(-episodes_done / cfg.eps_decay)


class CCMMADRL:
    """The CCM-MADRL agent: N client actors, one master critic, prioritised replay.

    ``CCMMADRL(cfg, dims, seed, tracking=)`` receives its own sections only: ``cfg`` the
    :class:`~gradasym.config.AgentConfig`, ``dims`` the environment facts
    (:class:`AgentDims`: N, constraint C, server storage S_E, state/action sizes), ``seed``
    (drives the ``networks``, ``exploration``, ``replay`` and ``policy`` streams) and
    ``tracking`` (``run.tracking``: ``"original"`` also computes the gradients the
    original code logged). ``CCMMADRL(config, seed=None)`` with a whole
    :class:`~gradasym.config.Config` is shorthand for ``CCMMADRL(*agent_sections(config, seed),
    device=config.run.device)``.
    ``dtype`` (float32 by default) is for tests that want float64 comparisons. ``device``
    (``run.device``; default the CPU) holds every tensor of the networks, their targets and optimisers and of
    the update; the replay storage, the random generators and the environment side (numpy
    states in, numpy actions out) stay on the CPU, so a run draws the same numbers on any device.
    """

    def __init__(self, cfg: AgentConfig | Config, dims: AgentDims | None = None, seed: int | None = None, *,
                 tracking: str = "clean", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, engine: str = "torch") -> None:
        if isinstance(cfg, Config):  # shorthand (tests, notebooks): the sections a trainer hands out
            if dims is not None:
                raise TypeError("CCMMADRL(config, seed=...): with a whole Config the seed is a keyword "
                                "and the dims come from config.env")
            device = cfg.run.device if device is None else device
            cfg, dims, seed, tracking = agent_sections(cfg, seed)
        if dims is None or seed is None:
            raise TypeError("CCMMADRL(cfg, dims, seed): an AgentConfig needs the environment dims and the seed")
        a = cfg
        if a.policy != "deterministic" and a.output_activation != "tanh":
            raise ValueError(f"agent.policy={a.policy!r} cannot be combined with "
                             f"agent.output_activation={a.output_activation!r}")
        if (dims.state_dim, dims.action_dim) != (STATE_DIM, ACTION_DIM):
            raise ValueError(f"CCM-MADRL acts on the MEC layout (state {STATE_DIM}, action {ACTION_DIM} per agent), "
                             f"got state_dim={dims.state_dim}, action_dim={dims.action_dim}")
        if tracking not in ("clean", "original"):
            raise ValueError(f"tracking must be 'clean' or 'original', got {tracking!r}")
        self.cfg = cfg
        self.dims = dims
        self.tracking = tracking
        self.seed = int(seed)
        self.dtype = dtype
        self.device = torch.device("cpu" if device is None else device)
        self.n_agents = int(dims.n_agents)
        self.constraint = int(dims.constraint)
        self.server_storage = float(dims.server_storage)
        self.batch_size = int(a.batch_size)
        self.gamma = float(a.gamma)
        self.tau = float(a.tau)
        self.sequential = a.actor_update == "sequential"
        self.policy = a.policy
        # the squashing the monitor applies to the pre-activations this agent reports
        self.squash = monitor_squash(a.policy, a.output_activation)
        self.original_tracking = tracking == "original"
        # mitigations (docs/presets.md); the defaults are the faithful algorithm
        self.grad_clip = a.grad_clip
        self.policy_delay = int(a.policy_delay)
        self.preact_penalty = float(a.preact_penalty)
        self.entropy_coef = float(a.entropy_coef)

        gen = torch_generator(self.seed, "networks")
        net_kw = dict(hidden_activation=a.hidden_activation, output_init=a.output_init, generator=gen, dtype=dtype)
        self.actors = ActorEnsemble(self.n_agents, dims.state_dim, dims.action_dim, a.actor_hidden, **net_kw,
                                    output_activation=a.output_activation, norm=a.actor_norm, policy=a.policy,
                                    crelu=a.crelu)
        self.critic = Critic(self.n_agents, dims.state_dim, dims.action_dim, a.critic_hidden, **net_kw)
        # initialised on the CPU from the CPU generator (the same numbers on any device), then moved
        self.actors.to(self.device)
        self.critic.to(self.device)
        self.target_actors = copy.deepcopy(self.actors).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # weight_decay > 0 (ln-wd remedy): decoupled weight decay, AdamW-style, on both optimisers
        self.actor_optim = BatchedAdam([self.actors.flat], lr=a.actor_lr, weight_decay=a.weight_decay)
        if a.weight_decay:
            self.critic_optim = torch.optim.AdamW(self.critic.parameters(), lr=a.critic_lr,
                                                  weight_decay=a.weight_decay)
        else:
            self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=a.critic_lr)

        self.rng = numpy_generator(self.seed, "exploration")
        self.replay = PrioritizedReplay(
            a.memory_capacity, self.n_agents, dims.state_dim, dims.action_dim, numpy_generator(self.seed, "replay"),
            alpha=a.per_alpha, beta0=a.per_beta0, beta_increment=a.per_beta_increment, per_eps=a.per_eps,
            dtype=dtype,
        )
        self._np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.n_updates = 0
        self.has_replay = True  # False after loading a checkpoint saved without its replay buffer
        self._cache: dict = {}  # work buffers of BatchCritic
        self.prune_rows = True  # exact row pruning in the sequential actor loop (tests switch it off)
        # fullnorm: running mean/std of each actor's inputs, updated from the states it acts on
        self.obs_rms = RunningMeanStd((self.n_agents, dims.state_dim)) if a.actor_norm == "fullnorm" else None
        # reward-norm: running variance of the stored rewards; rewards are divided by its sqrt at use
        self.reward_rms = RunningMeanStd(()) if a.reward_norm else None
        # squashed Gaussian: the reparameterisation noise of the actor loss (its own stream)
        self.policy_gen = torch_generator(self.seed, "policy") if a.policy == "squashed-gaussian" else None
        # the engine that computes training, acting and insertion (run.engine, resolved): "torch" (these
        # methods) or "compiled" (numba kernels working in place on the same tensors, gradasym.algos.ccm_madrl.compiled)
        if engine not in ("torch", "compiled"):
            raise ValueError(f"engine must be 'torch' or 'compiled', got {engine!r}")
        self.engine = engine
        self._engine = None
        if engine == "compiled":
            from gradasym.algos.ccm_madrl.compiled import agent_unsupported  # noqa: PLC0415

            reason = agent_unsupported(a, tracking, self.device)
            if reason is not None:
                raise ValueError(f"the compiled engine does not support {reason}")
            from gradasym.algos.ccm_madrl.compiled.engine import CompiledEngine  # noqa: PLC0415

            self._engine = CompiledEngine(self)

    def as_tensor(self, values) -> Tensor:
        """Numbers from the environment side (numpy, lists) as a tensor of the agent's dtype on
        its device: the one way in for observations, actions, rewards and noise (via float64)."""
        return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=self.dtype, device=self.device)

    # ================================================================= acting
    def epsilon(self, episodes_done: int) -> float:
        """``eps_end + (eps_start - eps_end) * exp(-episodes_done / eps_decay)`` (:func:`epsilon`)."""
        return epsilon(self.cfg, episodes_done)

    @torch.no_grad()
    def act(self, states: np.ndarray, episodes_done: int, explore: bool = True) -> ActResult:
        """One environment step for all agents (``states (N, 7)`` from the environment).

        ``episodes_done`` = completed episodes before the current one (first episode: 0).
        ``explore=False`` is the greedy policy: no noise, no random branch.
        """
        states = np.asarray(states, dtype=np.float64)
        eps = self.epsilon(episodes_done) if explore else 0.0
        if self.obs_rms is not None and explore:  # fullnorm: statistics of the states acted on in training
            self.obs_rms.update(torch.as_tensor(states, device="cpu"))  # the statistics stay on the CPU
        s_in = self._actor_inputs(self.as_tensor(states))
        if self.policy == "deterministic":
            # 1. each actor maps its own state to a_i (no gradient)
            if self._engine is not None:
                a_np, z = self._engine.actor_outputs(states)  # (the compiled engine is CPU only)
                actions = a_np.astype(np.float64)
            else:
                a, z, _ = self.actors.forward_with_preact(s_in)
                actions = a.double().cpu().numpy()
            # 2. training only: Gaussian noise N(0, 1) * eps on every component, clipped to [-1, 1]
            if explore:
                actions = np.clip(actions + self.rng.standard_normal(actions.shape) * eps, -1.0, 1.0)
        else:
            # stochastic policies: exploring samples from the policy, with no extra eps-noise;
            # greedy acting uses the deterministic action (tanh(mean) / the Beta mean)
            actions, z = self._act_stochastic(s_in, explore)
        actions = actions.astype(self._np_dtype).astype(np.float64)  # exactly what the replay stores
        # 3.-4. proposers and the master's selection (on the noisy actions)
        x, constrained, branch = self.master_select(states, actions, eps, explore)
        # 5. environment action [x_i, g(a_i1), g(a_i2)]
        env_actions = np.column_stack([x, to_env_fraction(actions[:, 1]), to_env_fraction(actions[:, 2])])
        return ActResult(actions, x, env_actions, constrained, eps, z, branch)

    def _act_stochastic(self, s_in: Tensor, explore: bool) -> tuple[np.ndarray, Tensor]:
        """Actions ``(N, 3)`` (float64, in [-1, 1]) and monitor pre-activations of a stochastic
        policy, sampling with the exploration generator when ``explore``."""
        if self.policy == "squashed-gaussian":
            noise = None
            if explore:  # u = mean + std * xi, a = tanh(u)
                noise = self.as_tensor(self.rng.standard_normal((self.n_agents, ACTION_DIM)))
            out = self.actors.policy_forward(s_in, noise=noise)
            return np.clip(out.action.double().cpu().numpy(), -1.0, 1.0), out.preact
        out = self.actors.policy_forward(s_in)  # beta
        if not explore:
            return out.action.double().cpu().numpy(), out.preact
        alpha, beta = (t.double().cpu().numpy() for t in out.dist)
        x = self.rng.beta(alpha, beta)  # x ~ Beta(alpha, beta) on [0, 1], action 2x - 1
        return np.clip(2.0 * x - 1.0, -1.0, 1.0), out.preact

    # ------------------------------------------------------------ mitigations
    def _actor_inputs(self, states: Tensor) -> Tensor:
        """What the actors see: the raw states, or with ``fullnorm`` ``clip((s - mean_i) /
        sqrt(var_i + 1e-8), -10, 10)`` with agent i's running statistics (``states (..., N, 7)``)."""
        if self.obs_rms is None:
            return states
        mean = self.obs_rms.mean.to(states.device, states.dtype)  # the statistics stay float64 on the CPU
        std = self.obs_rms.std().to(states.device, states.dtype)
        return ((states - mean) / std).clamp_(-OBS_CLIP, OBS_CLIP)

    def reward_scale(self) -> float:
        """The divisor of the rewards in the critic's targets: 1, or with ``reward_norm``
        ``sqrt(running var + 1e-8)`` of every reward stored so far."""
        return 1.0 if self.reward_rms is None else float(self.reward_rms.std())

    def _scaled_rewards(self, rewards: Tensor) -> Tensor:
        if self.reward_rms is None:
            return rewards
        return rewards / self.reward_scale()

    def _clip_(self, grads: Tensor) -> Tensor:
        """Per-row gradient clipping (``torch.nn.utils.clip_grad_norm_``'s formula, each agent's
        row ``(P,)`` or rows ``(N, P)`` separately); returns the clipped copy."""
        norms = torch.linalg.vector_norm(grads, dim=-1, keepdim=True)
        coef = (self.grad_clip / (norms + CLIP_EPS)).clamp(max=1.0)
        return grads * coef

    def _actor_reg(self, out: ActorOutput) -> Tensor | None:
        """The regularisers added to each actor's loss, averaged over the batch (dim -2 of the
        pre-activations): ``preact_penalty * mean(z^2)`` (z = the monitor's pre-activation),
        squashed Gaussian ``+ entropy_coef * mean_b log pi``, Beta ``- entropy_coef * mean_b H``.
        Shape: the leading dims without the batch (``(N,)`` or scalar); None if there is none."""
        reg = None
        if self.preact_penalty:
            reg = self.preact_penalty * (out.preact * out.preact).mean(dim=(-2, -1))
        if self.entropy_coef and out.log_prob is not None:
            term = self.entropy_coef * out.log_prob.mean(dim=-1)
            reg = term if reg is None else reg + term
        if self.entropy_coef and out.entropy is not None:
            term = -self.entropy_coef * out.entropy.mean(dim=-1)
            reg = term if reg is None else reg + term
        return reg

    @torch.no_grad()
    def master_select(
        self, states: np.ndarray, actions: np.ndarray, epsilon: float, explore: bool = True
    ) -> tuple[np.ndarray, bool, str]:
        """The master's decision ``x`` for (noisy) ``actions``: ``(x (N,), constrained, branch)``.

        Proposers ``P = {i : a_i[0] >= 0}``; C = constraint, S_E = server storage:
        * P empty: nobody offloads ("none");
        * ``|P| <= C`` and total size of P ``<= S_E``: every proposer offloads ("fits");
        * else, when exploring, with probability eps (one uniform u, explore if
          ``u <= eps``, drawn only here): C distinct agents drawn uniformly from ALL
          agents, then one of them removed uniformly at random while their total
          size exceeds S_E ("random");
        * else ("greedy"): proposers visited in descending Q(s, a, s_k, a_k); k is
          accepted if ``accepted < C`` and ``accepted_size + size_k < S_E`` (strict),
          otherwise skipped (a later, smaller task can still be accepted).
        """
        n, cap_count, cap_size = self.n_agents, self.constraint, self.server_storage
        sizes = states[:, SIZE_COLUMN]
        x = np.zeros(n, dtype=np.float64)
        proposers = np.flatnonzero(actions[:, 0] >= 0)
        if proposers.size == 0:
            return x, False, "none"
        if proposers.size <= cap_count and sizes[proposers].sum() <= cap_size:
            x[proposers] = 1.0
            return x, False, "fits"
        if explore and self.rng.random() <= epsilon:
            x[self.random_offloaders(sizes)] = 1.0
            return x, True, "random"
        q = self.score_rows(states, actions, proposers)
        accepted, accepted_size = 0, 0.0
        for k in proposers[np.argsort(-q, kind="stable")]:
            if accepted < cap_count and accepted_size + sizes[k] < cap_size:
                x[k] = 1.0
                accepted += 1
                accepted_size += sizes[k]
        return x, True, "greedy"

    def random_offloaders(self, sizes: np.ndarray) -> list[int]:
        """The master's random branch: C distinct agents drawn uniformly from all N, then one
        of them removed uniformly at random while their total size exceeds S_E (draws from
        the exploration stream)."""
        chosen = list(self.rng.choice(self.n_agents, size=self.constraint, replace=False))
        while sizes[chosen].sum() > self.server_storage:
            chosen.pop(int(self.rng.integers(len(chosen))))
        return chosen

    @torch.no_grad()
    def score_rows(self, states: np.ndarray, actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Online-critic Q(s, a, s_k, a_k) of agents ``rows`` for one joint state/action."""
        if self._engine is not None:
            return self._engine.score_rows(states, actions, rows)
        s = self.as_tensor(states).unsqueeze(0)
        a = self.as_tensor(actions).unsqueeze(0)
        k = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        return self.critic.q_pairs(s, a, torch.zeros_like(k), k).double().cpu().numpy()

    # ================================================================= replay
    def remember(self, states, actions, x, reward: float, next_states, done: bool) -> None:
        """Store one transition; its priority comes from its TD error under the current networks."""
        one = lambda v: np.asarray(v)[None]  # noqa: E731
        self.remember_many(one(states), one(actions), one(x), one(float(reward)), one(next_states),
                           one(bool(done)))

    @property
    def can_defer_insertion(self) -> bool:
        """Whether an episode's transitions may be stored together after the episode with the
        same priorities as one by one: true unless the actors' input normalisation (fullnorm)
        changes at every acting step."""
        return self.obs_rms is None

    @torch.no_grad()
    def remember_many(self, states, actions, x, rewards, next_states, dones) -> None:
        """Store T transitions in order (leading dim T: ``states (T, N, S)``, ``rewards (T,)``, ...).

        Each priority is the transition's TD error at insertion: the summed squared error of
        its critic terms against ``y = r + gamma * q'`` (as in the critic update). The
        networks do not change between the insertions of one episode, so one batched call
        gives the priorities that T calls of :meth:`remember` give (to float rounding);
        with reward-norm each transition is scaled with the statistics after its own reward.
        """
        s, a, xx, ns, r, d = (self.as_tensor(v) for v in (states, actions, x, next_states, rewards, dones))
        if self.reward_rms is None:
            r_scaled = r
        else:  # every stored reward updates the statistics before its own use
            scales = []
            for reward in np.asarray(rewards, dtype=np.float64):
                self.reward_rms.update(torch.tensor(float(reward), dtype=torch.float64, device="cpu"))
                scales.append(self.reward_scale())
            r_scaled = r / self.as_tensor(scales)
        if self._engine is not None:
            err_np = self._engine.priorities(states, actions, x, r_scaled, next_states, d)
            self.replay.push_many(states, actions, x, rewards, next_states, dones, err_np)
            return
        y = self._td_targets(r_scaled, ns, d)
        b_idx, k_idx = self._critic_terms(xx)
        q = self.critic.q_pairs(s, a, b_idx, k_idx)
        err = torch.zeros_like(y).index_add_(0, b_idx, (q - y[b_idx]) ** 2)  # per transition
        self.replay.push_many(states, actions, x, rewards, next_states, dones, err.double().cpu().numpy())

    # ================================================================= update
    def update(self) -> UpdateResult | None:
        """One training update (after an episode). ``None`` if skipped (empty buffer).

        The runner calls it after every episode once more than
        ``episodes_before_train`` episodes are done.
        """
        if not self.has_replay:
            raise RuntimeError("this agent was loaded without its replay buffer (run.keep_replay = false) "
                               "and cannot continue training")
        if len(self.replay) == 0:
            return None
        batch = self.replay.sample(self.batch_size)
        result = self.update_on_batch(batch)
        self.replay.update_priorities(batch.indices, result.td_errors)
        return result

    def update_on_batch(self, batch: ReplayBatch) -> UpdateResult:
        """The update on a given batch (no sampling, no priority write-back); the batch moves to
        :attr:`device` (the replay storage is on the CPU)."""
        if self._engine is not None:
            return self._engine.update_on_batch(batch)
        batch = batch.to(self.device)
        # --- Critic update: y from target actors + target critic, loss over the selected rows
        critic_loss, td_errors, critic_grads, critic_hidden = self._update_critic(batch)
        # --- Critic target update (tau = 1: overwritten), before the actor updates
        soft_update_(self.target_critic, self.critic, self.tau)
        # --- Actor updates against the just-updated online critic; with policy_delay = k
        #     only at every k-th update (the 1st, (k+1)-th, ...), targets included
        actor_step = self.n_updates % self.policy_delay == 0
        s_in = self._actor_inputs(batch.states)  # what the actors see (fullnorm: normalised)
        if not actor_step:
            actor = self._actor_snapshot(s_in)
        elif self.sequential:
            actor = self._update_actors_sequential(batch.states, s_in, batch.weights)
        else:
            actor = self._update_actors_simultaneous(batch.states, s_in, batch.weights)
        # --- Actor target updates. Each actor's target is overwritten right after its own
        #     step in the spec; target actors are not read during the actor updates, so
        #     updating all of them here gives the same result.
        if actor_step:
            soft_update_(self.target_actors.flat, self.actors.flat, self.tau)
        if self.original_tracking and actor_step:  # the original's critic .grad also held the actor losses' gradients
            critic_grads = {k: g + actor["critic_grads"][k] for k, g in critic_grads.items()}
        self.n_updates += 1
        return UpdateResult(
            critic_loss=critic_loss,
            actor_loss=float(actor["losses"].mean()),
            actor_losses=actor["losses"],
            actor_grads=self.actors.layer_views(actor["grads"]) if actor_step else None,
            critic_grads=critic_grads,
            preact=actor["preact"],
            actor_hidden=actor["hidden"],
            critic_hidden=critic_hidden,
            indices=np.asarray(batch.indices),
            td_errors=td_errors,
            weights=batch.weights.double().cpu().numpy(),
            preact_pool=actor.get("preact_pool"),
            actor_updated=actor_step,
        )

    # ---------------------------------------------------------------- critic
    @torch.no_grad()
    def _td_targets(self, rewards: Tensor, next_states: Tensor, dones: Tensor) -> Tensor:
        """``y = r + gamma * q' * (1 - done)``, q' = max over next proposers of the target Q
        (target actors on next states, no noise), or the zero-input target Q if none.
        ``rewards`` are already scaled (reward-norm); stochastic target actors act deterministically."""
        a_next = self.target_actors(self._actor_inputs(next_states).transpose(0, 1)).transpose(0, 1).contiguous()
        q_next, _ = self.target_critic.q_max(next_states, a_next, a_next[..., 0] >= 0)  # proposer rows only
        return rewards + self.gamma * q_next * (1.0 - dones)

    def _critic_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Critic-loss terms ``(b_index, k_index)``: one per selected agent (x_bk = 1), or one
        zero-input term (k = -1) for a transition where nobody was selected; b-major order."""
        selected = x > 0.5
        term_mask = torch.cat([selected, ~selected.any(dim=1, keepdim=True)], dim=1)  # (B, N+1)
        b_index, k_index = term_mask.nonzero(as_tuple=True)
        return b_index, torch.where(k_index == self.n_agents, -1, k_index)

    def _update_critic(self, batch: ReplayBatch):
        y = self._td_targets(self._scaled_rewards(batch.rewards), batch.next_states, batch.dones)
        b_idx, k_idx = self._critic_terms(batch.x)
        hidden: list[Tensor] = []
        q = self.critic.q_pairs(batch.states, batch.actions, b_idx, k_idx, hidden=hidden)
        w, y_t = batch.weights[b_idx], y[b_idx]
        loss = ((w * q - w * y_t) ** 2).mean()  # mean over all terms of (w Q - w y)^2
        td_errors = torch.zeros_like(y).index_add_(0, b_idx, (q.detach() - y_t) ** 2)  # per transition
        self.critic_optim.zero_grad(set_to_none=False)
        loss.backward()
        grads = {k: g.detach().clone() for k, g in self.critic.layer_views(grads=True).items()}  # before clipping
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.grad_clip)
        self.critic_optim.step()
        return float(loss.detach()), td_errors.double().cpu().numpy(), grads, [h.detach() for h in hidden]

    # ---------------------------------------------------------------- actors
    def _policy_noise(self, bsz: int) -> Tensor | None:
        """Squashed Gaussian: the standard normal ``(N, B, A)`` of this update's reparameterised
        samples (one draw per update from the ``policy`` stream, shared by all passes)."""
        if self.policy_gen is None:
            return None
        noise = torch.randn((self.n_agents, bsz, ACTION_DIM), generator=self.policy_gen, dtype=self.dtype, device="cpu")
        return noise.to(self.device)  # drawn on the CPU generator: the same numbers on any device

    def _actor_start(self, s_in: Tensor, noise: Tensor | None = None):
        """All actors on the batch (actor i on its input s_bi), no gradient: inputs and the
        :class:`ActorOutput` in the ensemble layout ``(N, B, .)`` plus the current joint actions
        and pre-activations ``(B, N, A)``."""
        s_nb = s_in.transpose(0, 1).contiguous()  # (N, B, S): actor i's inputs in row i
        with torch.no_grad():
            out = self.actors.policy_forward(s_nb, noise=noise)
        actions = out.action.transpose(0, 1).contiguous()  # (B, N, A)
        preact = out.preact.transpose(0, 1).contiguous()
        return s_nb, out, actions, preact

    def _actor_snapshot(self, s_in: Tensor) -> dict:
        """The actors skip this update (policy_delay): only the monitor's forward."""
        _, out, _, preact = self._actor_start(s_in)
        return {"preact": preact, "hidden": [h.transpose(0, 1) for h in out.hidden],
                "losses": np.full(self.n_agents, np.nan)}

    def _update_actors_sequential(self, states: Tensor, s_in: Tensor, weights: Tensor) -> dict:
        """For i = 0..N-1: actions of all (already partly updated) actors on s_b, gradient for
        actor i only, q_b = max over proposer rows of Q (zero-input Q if none),
        loss_i = -(1/B) sum_b w_b q_b [+ regularisers], step actor i's optimiser only.

        The gradient of loss_i reaches actor i through its action a_bi, which enters the
        critic's joint action in every row of transition b and, if row i is the arg-max
        row, also the own action. It is computed by hand (:meth:`BatchCritic.action_grad`,
        :meth:`ActorEnsemble.backward_agent`; for actors with LayerNorm or a stochastic
        policy the actor part is differentiated with autograd); tracking="original" instead
        uses autograd into every actor and the critic, as the original's backward did.
        ``states`` are the critic's (raw) inputs, ``s_in`` the actors'.
        """
        n, bsz = self.n_agents, states.shape[0]
        original = self.original_tracking
        noise = self._policy_noise(bsz)
        s_nb, out_nb, actions, preact = self._actor_start(s_in, noise)
        a_nb, hidden_nb = out_nb.action, out_nb.hidden
        out = {"preact": preact.clone(), "hidden": [h.transpose(0, 1) for h in hidden_nb]}
        batch_critic = BatchCritic(self.critic, states, prune=self.prune_rows, cache=self._cache)
        batch_critic.set_actions(actions)
        grad_q = -weights / bsz  # dL/dq_b
        rows = torch.arange(bsz, device=self.device)
        grads = torch.zeros_like(self.actors.flat, requires_grad=False)
        losses: list[Tensor] = []  # loss_i, stacked after the loop (one conversion)
        manual = self.actors.manual_backward
        if original:
            later = torch.zeros_like(actions)  # sum over later passes i of dL_i/da_j (j < i)
            critic_params = list(self.critic.parameters())
            critic_extra = [torch.zeros_like(p) for p in critic_params]
            pool = actions.new_empty((n,) + tuple(preact.shape))
        for i in range(n):
            noise_i = None if noise is None else noise[i]
            if i > 0:  # actor i-1 has just stepped: refresh its action column only
                with torch.no_grad():
                    o = self.actors.policy_forward_agent(i - 1, s_nb[i - 1], noise=None if noise is None else noise[i - 1])
                    actions[:, i - 1] = o.action
                    preact[:, i - 1] = o.preact
                batch_critic.set_action_column(i - 1, actions)
            if original:
                pool[i] = preact
            # q_b = max over proposers k (a_bk[0] >= 0) of Q(s_b, a_b, s_bk, a_bk): arg-max without grad
            k_best, has, _ = batch_critic.best_rows(actions, actions[..., 0] >= 0)
            if not original:
                with torch.no_grad():
                    # dL/da_i through the chosen rows (every row's joint action, the own action of row i)
                    q, g_a = batch_critic.action_grad(i, k_best, has, grad_q)
                    loss = (grad_q * q).sum()  # = -(1/B) sum_b w_b q_b
                if manual:
                    g_z = None
                    if self.preact_penalty:  # + c * mean(z^2): dz = 2 c z / (B A)
                        z_i = out_nb.preact[i]
                        g_z = z_i * (2.0 * self.preact_penalty / z_i.numel())
                        loss = loss + self.preact_penalty * (z_i * z_i).mean()
                    g_row = self.actors.backward_agent(i, s_nb[i], [h[i] for h in hidden_nb], a_nb[i], g_a, g_z)
                else:  # autograd through actor i (LayerNorm, stochastic policies)
                    row = self.actors.flat[i].detach().requires_grad_(True)
                    o = self.actors.policy_forward_agent(i, s_nb[i], row, noise_i)
                    total = (g_a * o.action).sum()
                    reg = self._actor_reg(o)
                    if reg is not None:
                        total = total + reg
                        loss = loss + reg.detach()
                    (g_row,) = torch.autograd.grad(total, row)
            else:
                # What the original's backward did: gradients into every actor and the critic.
                row = self.actors.flat[i].detach().requires_grad_(True)
                o = self.actors.policy_forward_agent(i, s_nb[i], row, noise_i)
                a_leaf = actions.detach().clone().requires_grad_(True)
                k_sel = torch.where(has, k_best, torch.full_like(k_best, -1))
                q = self.critic.q_pairs(states, a_leaf, rows, k_sel)
                loss = -(weights * q).sum() / bsz
                g_a_all, *g_c = torch.autograd.grad(loss, [a_leaf, *critic_params])
                reg = self._actor_reg(o)
                if reg is None:
                    (g_row,) = torch.autograd.grad(o.action, row, grad_outputs=g_a_all[:, i])
                else:
                    (g_row,) = torch.autograd.grad((g_a_all[:, i] * o.action).sum() + reg, row)
                    loss = loss.detach() + reg.detach()
                later[:, :i] += g_a_all[:, :i]
                for acc, g in zip(critic_extra, g_c):
                    acc += g
            # step actor i's optimiser only (its target is updated after the loop); the
            # monitor gets the gradient before clipping
            self.actor_optim.step_agent(i, [g_row if self.grad_clip is None else self._clip_(g_row)])
            grads[i] = g_row
            losses.append(loss.detach())
        out["losses"] = torch.stack(losses).double().cpu().numpy()
        if original:
            # actor j's .grad in the original = sum over i >= j of dL_i/dtheta_j; for i > j actor j
            # already has its final parameters, so the later part is one VJP of the final ensemble.
            flat = self.actors.flat.detach().requires_grad_(True)
            a_final = self.actors.policy_forward(s_nb, flat, noise).action
            (g_later,) = torch.autograd.grad(a_final, flat, grad_outputs=later.transpose(0, 1))
            grads = grads + g_later
            out["critic_grads"] = dict(zip(self.critic.layer_views(), critic_extra))
            out["preact_pool"] = pool
        out["grads"] = grads
        return out

    def _update_actors_simultaneous(self, states: Tensor, s_in: Tensor, weights: Tensor) -> dict:
        """One loss with all actors' current actions, one backward, every actor steps once."""
        bsz = states.shape[0]
        s_nb = s_in.transpose(0, 1).contiguous()
        flat = self.actors.flat.detach().requires_grad_(True)
        o = self.actors.policy_forward(s_nb, flat, self._policy_noise(bsz))
        a_nb, z_nb, hidden = o.action, o.preact, o.hidden
        actions = a_nb.transpose(0, 1)  # (B, N, A), with gradient into every actor's row
        # q_b = max over proposer rows: the arg-max without gradient, then the gradient flows
        # through the B arg-max rows only (the gradient of max)
        with torch.no_grad():
            _, k_sel = self.critic.q_max(states, actions, actions[..., 0] >= 0)  # k = -1: zero input
        q = self.critic.q_pairs(states, actions, torch.arange(bsz, device=self.device), k_sel)
        loss = -(weights * q).sum() / bsz
        reg = self._actor_reg(o)  # (N,) or None: each actor's regulariser, on its own row only
        total = loss if reg is None else loss + reg.sum()
        if not self.original_tracking:
            (g_flat,) = torch.autograd.grad(total, flat)  # the critic is not updated by the actor loss
            critic_extra = None
        else:  # the original's backward also filled the critic's .grad
            critic_params = list(self.critic.parameters())
            g_flat, *g_c = torch.autograd.grad(total, [flat, *critic_params])
            critic_extra = dict(zip(self.critic.layer_views(), g_c))
        self.actor_optim.step_all([g_flat if self.grad_clip is None else self._clip_(g_flat)])
        losses = np.full(self.n_agents, float(loss.detach()))
        if reg is not None:
            losses = losses + reg.detach().double().cpu().numpy()
        out = {
            "losses": losses,
            "preact": z_nb.detach().transpose(0, 1).contiguous(),
            "hidden": [h.detach().transpose(0, 1) for h in hidden],
            "grads": g_flat,
        }
        if self.original_tracking:
            out["critic_grads"] = critic_extra
            out["preact_pool"] = out["preact"].unsqueeze(0)
        return out

    # ============================================================ accessors
    def actor_parameters(self) -> dict[str, Tensor]:
        """Live (detached) views ``{"l{j}.weight": (N, in, out), "l{j}.bias": (N, out)}``; clone to keep."""
        return self.actors.layer_views(self.actors.flat.detach())

    def critic_parameters(self) -> dict[str, Tensor]:
        """Live (detached) ``{"l{j}.weight": (out, in), "l{j}.bias": (out,)}``; clone to keep."""
        return {k: v.detach() for k, v in self.critic.layer_views().items()}

    def state_dict(self, keep_replay: bool = True) -> dict:
        """Everything needed to continue bit-identically (a deep copy; ``torch.save``-able
        with ``weights_only=True``); ``keep_replay=False`` stores ``replay = None`` instead of
        the buffer (enough to evaluate or analyse the agent, not to continue training it)."""
        state = copy.deepcopy({
            "actors": self.actors.state_dict(),
            "target_actors": self.target_actors.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "exploration_rng": self.rng.bit_generator.state,
            "n_updates": self.n_updates,
        })
        state["replay"] = self.replay.state_dict() if keep_replay and self.has_replay else None  # already a copy
        # mitigation state (only present when the option is on)
        if self.obs_rms is not None:
            state["obs_rms"] = self.obs_rms.state_dict()
        if self.reward_rms is not None:
            state["reward_rms"] = self.reward_rms.state_dict()
        if self.policy_gen is not None:
            state["policy_rng"] = self.policy_gen.get_state()
        # device-independent: a run saved on a GPU resumes on the CPU and vice versa
        return state if self.device.type == "cpu" else _on_cpu(state)

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (saved on any device: tensors are copied onto :attr:`device`)."""
        self.actors.load_state_dict(state["actors"])
        self.target_actors.load_state_dict(state["target_actors"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(copy.deepcopy(state["critic_optim"]))
        self.has_replay = state["replay"] is not None
        if self.has_replay:
            self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["exploration_rng"]
        self.n_updates = int(state["n_updates"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.reward_rms is not None:
            self.reward_rms.load_state_dict(state["reward_rms"])
        if self.policy_gen is not None:
            self.policy_gen.set_state(state["policy_rng"])
