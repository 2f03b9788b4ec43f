"""R independent CCM-MADRL runs trained as one computation (seeds and hyperparameters as a
batch dimension).

Each run keeps everything that makes it a run of its own: its :class:`~gradasym.algos.ccm_madrl.agent.CCMMADRL`
(networks, optimiser states, replay buffer and random streams derived from its own seed),
its environments and its monitor. Acting, the environments and replay insertion of the runs
are one computation (:mod:`gradasym.algos.ccm_madrl.batched_acting`: stacked actors and critics, one vector
environment, one stacked replay storage, every random draw from the run's own generator);
so is the training update (about 90% of a faithful episode): :func:`batched_update` stacks
the R runs' parameters, optimiser moments and sampled batches along a leading run dimension, computes the critic update and the actor
updates (sequential or simultaneous) with ``bmm`` over runs, and writes every run's new
state back into its own agent. Nothing of one run reaches another: every tensor op keeps
the run dimension separate, each run's loss is differentiated w.r.t. its own parameters
only (the gradient of a sum of independent losses), and each run has its own learning
rates, gamma, tau and Adam step counts. Only float rounding differs from training each run
alone (``tests/test_batched.py`` compares losses, gradients and parameters).

The batched update covers the faithful algorithm and every option that keeps the tensor
shapes and the code path (learning rates, gamma, tau, epsilon schedule, monitor
thresholds, output activation, hidden activation); :func:`unsupported_reason` names what
it does not cover (mitigations with extra terms or stochastic policies,
``tracking="original"``), for which the caller trains the run alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradasym.algos.ccm_madrl.agent import CCMMADRL, UpdateResult
from gradasym.config import Config, ConfigError, check_memory
from gradasym.errors import failure_text
from gradasym.algos.ccm_madrl.batched_acting import ActingGroup, critic_terms_runs, td_targets_runs
from gradasym.algos.ccm_madrl.critic import StackedBatchCritic, StackedCritic
from gradasym.io import read_json, write_json
from gradasym.algos.ccm_madrl.optim import adam_rows_
from gradasym.process import configure_process
from gradasym.algos.ccm_madrl.replay import ReplayBatch
from gradasym.runfolder import BATCHED, SINGLE, DiskFullError, RunFolder, continued_trainer, disk_full_guard
from gradasym.algos.ccm_madrl.runner import Trainer, _progress_info, finish_run, open_run, run_experiment, write_outputs


# ------------------------------------------------------------------ what can be batched
def unsupported_reason(cfg: Config) -> str | None:
    """Why the batched update cannot train this configuration (None: it can)."""
    a = cfg.agent
    checks = [
        (a.policy != "deterministic", f"agent.policy={a.policy!r}"),
        (a.actor_norm != "none", f"agent.actor_norm={a.actor_norm!r}"),
        (a.grad_clip is not None, "agent.grad_clip"),
        (int(a.policy_delay) != 1, "agent.policy_delay"),
        (bool(a.preact_penalty), "agent.preact_penalty"),
        (bool(a.reward_norm), "agent.reward_norm"),
        (cfg.run.tracking == "original", "run.tracking='original'"),
        # plasticity remedies (docs/presets.md): CReLU and weight decay change the networks and the
        # optimisers' arithmetic (the periodic ones act on each run's tensors between updates: covered)
        (bool(a.crelu), "agent.crelu"),
        (bool(a.weight_decay), "agent.weight_decay"),
        (bool(getattr(cfg.run, "tensorboard", False)), "run.tensorboard"),
    ]
    reasons = [name for bad, name in checks if bad]
    return None if not reasons else "the batched trainer does not cover " + ", ".join(reasons)


def batch_key(cfg: Config) -> tuple:
    """Runs with equal keys have equal tensor shapes and code paths and can share a batch."""
    a, e = cfg.agent, cfg.env
    return (int(e.n_agents), tuple(a.actor_hidden), tuple(a.critic_hidden), int(a.batch_size),
            a.actor_update, a.hidden_activation, a.output_activation, cfg.run.device,
            int(e.constraint))  # C sets the padded width of the critic loss (batched_update)


# ------------------------------------------------------------------ stacked state
@dataclass
class _Stack:
    """The R runs' batches stacked along a leading run dimension."""

    states: Tensor  # (R, B, N, S)
    actions: Tensor  # (R, B, N, A)
    x: Tensor  # (R, B, N)
    rewards: Tensor  # (R, B)
    next_states: Tensor  # (R, B, N, S)
    dones: Tensor  # (R, B)
    weights: Tensor  # (R, B)

    @classmethod
    def of(cls, batches: Sequence[ReplayBatch]) -> "_Stack":
        return cls(*(torch.stack([getattr(b, f) for b in batches])
                     for f in ("states", "actions", "x", "rewards", "next_states", "dones", "weights")))


def _critic_adam_state(agent: CCMMADRL) -> tuple[list[Tensor | None], list[Tensor | None], int, float]:
    """``(exp_avg per param, exp_avg_sq per param, step, lr)`` of an agent's critic Adam
    (None moments before its first step)."""
    opt = agent.critic_optim
    group = opt.param_groups[0]
    ms, vs, step = [], [], 0
    for p in group["params"]:
        st = opt.state.get(p, {})
        ms.append(st.get("exp_avg"))
        vs.append(st.get("exp_avg_sq"))
        if "step" in st:
            step = int(st["step"])
    return ms, vs, step, float(group["lr"])


def _check_adam(agents: Sequence[CCMMADRL]) -> tuple[tuple[float, float], float]:
    """The (shared) Adam betas and eps of every critic and actor optimiser."""
    found = set()
    for ag in agents:
        g = ag.critic_optim.param_groups[0]
        if g.get("weight_decay", 0) or g.get("amsgrad", False) or g.get("maximize", False):
            raise ValueError("the batched update replicates plain Adam only")
        found.add((tuple(g["betas"]), float(g["eps"])))
        found.add((tuple(ag.actor_optim.betas), float(ag.actor_optim.eps)))
    if len(found) != 1:
        raise ValueError("the runs of a batch must share Adam's betas and eps")
    (betas, eps), = found
    return (float(betas[0]), float(betas[1])), eps


# ------------------------------------------------------------------ the update
def batched_update(agents: Sequence[CCMMADRL], batches: Sequence[ReplayBatch]) -> list[UpdateResult]:
    """One training update of every agent on its own sampled batch, as one computation.

    The same update as ``agents[r].update_on_batch(batches[r])`` for each r (critic update,
    critic target update, actor updates, actor target updates, ``n_updates += 1``), to float
    rounding. The caller samples and writes the priorities back (as :meth:`CCMMADRL.update`).
    """
    ag0 = agents[0]
    betas, eps = _check_adam(agents)
    n = ag0.n_agents
    dtype = ag0.dtype
    st = _Stack.of([b.to(ag0.device) for b in batches])  # the replay storage is on the CPU
    gammas = ag0.as_tensor([ag.gamma for ag in agents]).unsqueeze(1)
    taus = [ag.tau for ag in agents]

    # ---- stacked copies of every run's state
    flat = torch.stack([ag.actors.flat.detach() for ag in agents])  # (R, N, P)
    target_flat = torch.stack([ag.target_actors.flat.detach() for ag in agents])
    actor_m = torch.stack([ag.actor_optim.exp_avg[0] for ag in agents])
    actor_v = torch.stack([ag.actor_optim.exp_avg_sq[0] for ag in agents])
    actor_steps = np.array([ag.actor_optim.steps for ag in agents], dtype=np.int64)  # (R, N)
    actor_lr = [ag.actor_optim.lr for ag in agents]
    critic = StackedCritic.from_critics([ag.critic for ag in agents], requires_grad=True)
    target_critic = StackedCritic.from_critics([ag.target_critic for ag in agents])
    adam = [_critic_adam_state(ag) for ag in agents]

    # ---- Critic update: y from target actors + target critic, loss over the selected rows
    y = td_targets_runs(ag0, target_flat, target_critic, st.rewards, st.next_states, st.dones, gammas)
    # Padded to the most terms a batch can have (the master selects at most C rows per transition)
    # rather than to the largest count among the runs: the backward contracts over the terms, and
    # a length set by the partners' data would make a run's gradients depend on its batch.
    width = ag0.batch_size * max(1, min(n, max(ag.constraint for ag in agents)))
    b_idx, k_idx, valid, counts = critic_terms_runs(st.x, width=width)
    hidden: list[Tensor] = []
    q = critic.q_pairs(st.states, st.actions, b_idx, k_idx, hidden=hidden)  # (R, T)
    w, y_t = st.weights.gather(1, b_idx), y.gather(1, b_idx)
    sq = torch.where(valid, (w * q - w * y_t) ** 2, 0.0)
    critic_loss = sq.sum(dim=1) / counts.to(dtype)  # (R,) mean over each run's own terms
    td = torch.zeros_like(y).scatter_add_(1, b_idx, torch.where(valid, (q.detach() - y_t) ** 2, 0.0))
    params = critic.parameters()
    critic_g = torch.autograd.grad(critic_loss.sum(), params)
    steps = [a[2] + 1 for a in adam]
    with torch.no_grad():
        moments = []
        for j, (p, g) in enumerate(zip(params, critic_g)):
            m = torch.stack([a[0][j] if a[0][j] is not None else torch.zeros_like(p[0]) for a in adam])
            v = torch.stack([a[1][j] if a[1][j] is not None else torch.zeros_like(p[0]) for a in adam])
            adam_rows_(p, g, m, v, [a[3] for a in adam], steps, betas, eps)
            moments.append((m, v))
    online = StackedCritic([wt.detach() for wt in critic.weights], [b.detach() for b in critic.biases],
                           n, ag0.critic.state_dim, ag0.critic.action_dim, ag0.critic.hidden_activation)
    # ---- Critic target update, before the actor updates
    _soft_update_runs(target_critic.parameters(), online.parameters(), taus)

    # ---- Actor updates against the just-updated online critics
    if ag0.sequential:
        actor = _actors_sequential(ag0, online, st, flat, actor_m, actor_v, actor_steps, actor_lr, betas, eps)
    else:
        actor = _actors_simultaneous(ag0, online, st, flat, actor_m, actor_v, actor_steps, actor_lr, betas, eps)
    _soft_update_runs([target_flat], [flat], taus)

    # ---- every run's new state back into its own agent
    with torch.no_grad():
        for r, ag in enumerate(agents):
            ag.actors.flat.copy_(flat[r])
            ag.target_actors.flat.copy_(target_flat[r])
            ag.actor_optim.exp_avg[0].copy_(actor_m[r])
            ag.actor_optim.exp_avg_sq[0].copy_(actor_v[r])
            ag.actor_optim.steps = [int(t) for t in actor_steps[r]]
            for p, t, (m, v) in zip(ag.critic.parameters(), online.parameters(), moments):
                p.copy_(t[r])
                state = ag.critic_optim.state[p]
                if "exp_avg" not in state:  # first step: the state torch.optim.Adam creates
                    state["step"] = torch.tensor(0.0, dtype=torch.float32, device="cpu")  # torch keeps it there
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"].fill_(float(steps[r]))
                state["exp_avg"].copy_(m[r])
                state["exp_avg_sq"].copy_(v[r])
            for tp, t in zip(ag.target_critic.parameters(), target_critic.parameters()):
                tp.copy_(t[r])
            ag.n_updates += 1

    results = []
    td_np = td.double().cpu().numpy()
    for r, ag in enumerate(agents):
        t_r = int(counts[r])
        results.append(UpdateResult(
            critic_loss=float(critic_loss[r].detach()),
            actor_loss=float(actor["losses"][r].mean()),
            actor_losses=actor["losses"][r],
            actor_grads=ag.actors.layer_views(actor["grads"][r]),
            critic_grads={f"l{j // 2}.{'weight' if j % 2 == 0 else 'bias'}": g[r] for j, g in enumerate(critic_g)},
            preact=actor["preact"][r],
            actor_hidden=[h[r] for h in actor["hidden"]],
            critic_hidden=[h[r, :t_r].detach() for h in hidden],
            indices=np.asarray(batches[r].indices),
            td_errors=td_np[r],
            weights=batches[r].weights.double().cpu().numpy(),
        ))
    return results


@torch.no_grad()
def _soft_update_runs(targets: Sequence[Tensor], onlines: Sequence[Tensor], taus: Sequence[float]) -> None:
    """``target[r] = (1 - tau_r) target[r] + tau_r online[r]`` (tau = 1: exact copy), as
    :func:`gradasym.algos.ccm_madrl.networks.soft_update_` per run."""
    for t, o in zip(targets, onlines):
        for r, tau in enumerate(taus):
            if tau >= 1.0:
                t[r].copy_(o[r])
            else:
                t[r].mul_(1.0 - tau).add_(o[r], alpha=tau)


def _start(ag0: CCMMADRL, st: _Stack, flat: Tensor):
    """All actors of all runs on their batches, no gradient: ``s_nb (R, N, B, S)``, the
    :class:`ActorOutput` in the layout ``(R, N, B, .)`` and the joint actions / pre-activations
    ``(R, B, N, A)``."""
    rr, bsz, n, sdim = st.states.shape
    s_nb = st.states.transpose(1, 2).contiguous()
    with torch.no_grad():
        out = ag0.actors.policy_forward(s_nb.view(rr * n, bsz, sdim), flat.view(rr * n, -1))
    unf = lambda t: t.view(rr, n, bsz, -1)  # noqa: E731
    a_nb, z_nb, hidden_nb = unf(out.action), unf(out.preact), [unf(h) for h in out.hidden]
    return s_nb, a_nb, hidden_nb, a_nb.transpose(1, 2).contiguous(), z_nb.transpose(1, 2).contiguous()


def _actors_sequential(ag0, critic: StackedCritic, st: _Stack, flat, m, v, steps, lr, betas, eps) -> dict:
    """The faithful actor loop of every run at once: for i = 0..N-1, each run's actor i
    against its run's (partly updated) joint actions; see
    :meth:`CCMMADRL._update_actors_sequential`."""
    rr, bsz, n, _ = st.states.shape
    s_nb, a_nb, hidden_nb, actions, preact = _start(ag0, st, flat)
    out = {"preact": preact.clone(), "hidden": [h.transpose(1, 2) for h in hidden_nb]}
    bc = StackedBatchCritic(critic, st.states, prune=ag0.prune_rows)
    bc.set_actions(actions)
    grad_q = -st.weights / bsz  # dL/dq_b
    grads = torch.zeros_like(flat)
    losses = np.zeros((rr, n), dtype=np.float64)
    for i in range(n):
        if i > 0:  # actor i-1 of every run has just stepped: refresh its action column only
            with torch.no_grad():
                o = ag0.actors.policy_forward(s_nb[:, i - 1], flat[:, i - 1])
                actions[:, :, i - 1] = o.action
                preact[:, :, i - 1] = o.preact
            bc.set_action_column(i - 1, actions)
        k_best, has, _ = bc.best_rows(actions, actions[..., 0] >= 0)
        q, g_a = bc.action_grad(i, k_best, has, grad_q)
        loss = (grad_q * q).sum(dim=1)  # = -(1/B) sum_b w_b q_b per run
        g_row = ag0.actors.backward_rows(flat[:, i], s_nb[:, i], [h[:, i] for h in hidden_nb], a_nb[:, i], g_a)
        steps[:, i] += 1
        adam_rows_(flat[:, i], g_row, m[:, i], v[:, i], lr, steps[:, i].tolist(), betas, eps)
        grads[:, i] = g_row
        losses[:, i] = loss.double().cpu().numpy()
    out["losses"], out["grads"] = losses, grads
    return out


def _actors_simultaneous(ag0, critic: StackedCritic, st: _Stack, flat, m, v, steps, lr, betas, eps) -> dict:
    """One loss per run with all its actors' current actions, one backward, every actor steps
    once; see :meth:`CCMMADRL._update_actors_simultaneous`."""
    rr, bsz, n, sdim = st.states.shape
    s_nb = st.states.transpose(1, 2).contiguous()
    # Each run's actors get a graph of their own (the shapes of a run alone): autograd's
    # backward through one (R*N)-actor graph reduces the output-bias gradients with a
    # strategy that depends on R at N = 50, so a run's numbers would depend on its batch.
    leaves = [flat[r].detach().requires_grad_(True) for r in range(rr)]
    outs = [ag0.actors.policy_forward(s_nb[r], leaf) for r, leaf in enumerate(leaves)]
    actions = torch.stack([o.action for o in outs]).transpose(1, 2)  # (R, B, N, A), gradient into every actor
    with torch.no_grad():
        _, k_sel = critic.q_max(st.states, actions, actions[..., 0] >= 0)
    q = critic.q_pairs(st.states, actions, torch.arange(bsz, device=flat.device).expand(rr, bsz), k_sel)
    loss = -(st.weights * q).sum(dim=1) / bsz  # (R,)
    g_flat = torch.stack(torch.autograd.grad(loss.sum(), leaves))
    steps += 1
    adam_rows_(flat, g_flat, m, v, [a for a in lr for _ in range(n)], steps.flatten().tolist(), betas, eps)
    unf = lambda ts: torch.stack([t.detach() for t in ts]).transpose(1, 2)  # noqa: E731  (R, B, N, .)
    losses = np.repeat(loss.detach().double().cpu().numpy()[:, None], n, axis=1)
    return {"losses": losses, "preact": unf([o.preact for o in outs]).contiguous(),
            "hidden": [unf([o.hidden[j] for o in outs]) for j in range(len(outs[0].hidden))], "grads": g_flat}


# ------------------------------------------------------------------ the training loop
ProgressFn = Callable[[int, dict[str, Any]], None]  # (run index, runner._progress_info dict)
DoneFn = Callable[[int, dict[str, Any]], None]  # (run index, its final summary.json dict)


def train_batch(cfgs: Sequence[Config], out_dirs: Sequence[str | Path], resume: bool = True,
                progress: ProgressFn | None = None, log: Callable[[str], None] | None = None,
                done: DoneFn | None = None) -> list[dict[str, Any]]:
    """Train R configurations into their run folders as one computation; returns their
    ``summary.json`` dicts in order.

    Each run behaves as :func:`gradasym.algos.ccm_madrl.runner.run_experiment` would train it alone (same
    folder contents, checkpoints every ``run.checkpoint_interval`` episodes, resumable),
    but the training updates of the runs still going are computed together
    (:func:`batched_update`). Episode budgets, early termination and failures are per run:
    a run that ends (or raises) leaves the batch and the others go on. A finished run's
    final checkpoint holds no replay buffer unless ``run.keep_replay``. Configurations the
    batched update does not cover (:func:`unsupported_reason`), or whose shapes differ from
    the first one's (:func:`batch_key`), are trained alone, said through ``log``.
    ``done(r, summary)`` is called as soon as run r has ended (finished or failed: its folder is
    final), while the others go on.
    """
    log = log or (lambda msg: None)
    done = done or (lambda r, summary: None)
    cfgs = [c.validate() for c in cfgs]
    outs = [Path(o) for o in out_dirs]
    if len(cfgs) != len(outs):
        raise ValueError("one output folder per configuration")
    for out in outs:
        RunFolder(out).check_usable()  # a file, a sweep, foreign files: refused before any work
    configure_process(cfgs[0].run.threads if cfgs else 1)
    summaries: list[dict[str, Any] | None] = [None] * len(cfgs)
    batch: list[int] = []
    for r, cfg in enumerate(cfgs):
        reason = unsupported_reason(cfg)
        if reason is None and batch and batch_key(cfg) != batch_key(cfgs[batch[0]]):
            reason = "its tensor shapes differ from the batch's"
        if reason is not None:
            log(f"{outs[r]}: trained alone ({reason})")
            try:
                summaries[r] = run_experiment(cfg, outs[r], resume=resume)
            except ConfigError:
                raise
            except Exception:  # noqa: BLE001  (its failed summary.json is written; the others go on)
                summaries[r] = read_json(outs[r] / "summary.json")
            done(r, summaries[r])
        else:
            batch.append(r)
    if batch:
        with contextlib.ExitStack() as stack:
            stack.enter_context(disk_full_guard())
            trainers: dict[int, Trainer] = {}
            folders: dict[int, RunFolder] = {}
            for r in batch:
                check_memory(cfgs[r], concurrent=len(batch))
                folder = RunFolder(outs[r])
                if folder.holds_run() and not resume:
                    raise ConfigError(f"{folder.path} already holds a run; pass resume=True to continue it "
                                      "or choose another folder")
                stack.enter_context(folder.lock())
                folders[r] = folder
                trainer = open_run(cfgs[r], folder, resume, trainer_name=BATCHED)
                if trainer.should_stop_early() or trainer.episodes_done >= cfgs[r].run.episodes:
                    summaries[r] = write_outputs(trainer, folder, "finished", checkpoint=False)
                    done(r, summaries[r])
                else:
                    write_outputs(trainer, folder, "running")
                    trainers[r] = trainer
            if trainers:
                log(f"training {len(trainers)} runs as one batch")
            while trainers:
                going = set(trainers)
                _batched_episode(trainers, folders, summaries, progress)
                for r in sorted(going - set(trainers)):  # ended in this episode (finished or failed)
                    done(r, summaries[r])
    return summaries  # type: ignore[return-value]  (every run has its summary now)


def _fail(r: int, trainers: dict[int, Trainer], folders: dict[int, RunFolder], summaries: list,
          exc: BaseException) -> None:
    """Run r raised: its summary says so (as run_experiment's), it leaves the batch."""
    if isinstance(exc, DiskFullError):
        raise exc  # nothing more can be written: stop (the last checkpoints are intact)
    trainer = trainers.pop(r)
    if trainer.acting is not None:
        trainer.acting.leave(trainer)
    text = failure_text(exc)
    summaries[r] = trainer.summary("failed", text)
    try:
        write_json(folders[r].summary_path, summaries[r])
    except OSError:
        pass  # the original error matters more than the summary


def _batched_episode(trainers: dict[int, Trainer], folders: dict[int, RunFolder], summaries: list,
                     progress: ProgressFn | None) -> None:
    """One episode of every run in ``trainers``: acting (each run asks to act, then every acting
    group computes its runs' episode as one, :mod:`gradasym.algos.ccm_madrl.batched_acting`), one batched
    update, then each run's monitor, checkpoint and end-of-run bookkeeping; ended runs leave
    ``trainers``."""
    groups = _acting_groups(trainers)
    rows: dict[int, dict[str, Any]] = {}
    for r in list(trainers):
        try:
            rows[r] = trainers[r].act_episode()
        except Exception as exc:  # noqa: BLE001  (a run's error fails that run only)
            _fail(r, trainers, folders, summaries, exc)
    run_of = {id(t): r for r, t in trainers.items()}
    for group in groups:
        for trainer, exc in group.flush():
            _fail(run_of[id(trainer)], trainers, folders, summaries, exc)
    rows = {r: row for r, row in rows.items() if r in trainers}
    updating = [r for r in rows if trainers[r].wants_update]
    t0 = time.perf_counter()
    updates = _updates(updating, trainers, folders, summaries)
    share = (time.perf_counter() - t0) / max(1, len(updating))
    for r, row in rows.items():
        if r not in trainers:
            continue
        trainer, cfg = trainers[r], trainers[r].cfg
        try:
            row = trainer.finish_episode(row, updates.get(r), share if r in updates else 0.0)
            if progress is not None:
                progress(r, _progress_info(trainer, row))
            if trainer.episodes_done >= cfg.run.episodes or trainer.should_stop_early():
                summaries[r] = finish_run(trainer, folders[r])
                if trainer.acting is not None:
                    trainer.acting.leave(trainer)
                del trainers[r]
            elif trainer.episodes_done % cfg.run.checkpoint_interval == 0:
                write_outputs(trainer, folders[r], "running")
        except Exception as exc:  # noqa: BLE001
            _fail(r, trainers, folders, summaries, exc)


def _updates(runs: list[int], trainers: dict[int, Trainer], folders: dict[int, RunFolder],
             summaries: list) -> dict[int, UpdateResult]:
    """The training updates of ``runs`` (sample, batched update, priority write-back). If the
    batched computation raises, each run is updated alone on its batch, so that only the
    runs that raise alone fail; the others are then recorded as trained by both trainers
    (``mixed``: that update rounds as the single-run trainer's)."""
    batches = _sample(runs, trainers, folders, summaries)
    if not batches:
        return {}
    order = list(batches)
    try:
        results = dict(zip(order, batched_update([trainers[r].agent for r in order], [batches[r] for r in order])))
    except Exception:  # noqa: BLE001  (the states were not written back: update the runs one by one)
        results = {}
        for r in order:
            try:
                results[r] = trainers[r].agent.update_on_batch(batches[r])
                trainers[r].trained_by = continued_trainer(trainers[r].trained_by, SINGLE)
            except Exception as exc:  # noqa: BLE001
                _fail(r, trainers, folders, summaries, exc)
    for r, res in results.items():
        trainers[r].agent.replay.update_priorities(batches[r].indices, res.td_errors)
    return results


def _acting_groups(trainers: dict[int, Trainer]) -> list[ActingGroup]:
    """The acting groups of the runs in ``trainers``: runs not in one yet (a new batch, or a
    benchmark driving :func:`_batched_episode` directly) are grouped by
    :meth:`ActingGroup.key`; a run whose key is None acts alone."""
    new: dict[tuple, list[Trainer]] = {}
    for t in trainers.values():
        if t.acting is None and (key := ActingGroup.key(t)) is not None:
            new.setdefault(key, []).append(t)
    for members in new.values():
        ActingGroup(members)
    return list({id(t.acting): t.acting for t in trainers.values() if t.acting is not None}.values())


def _sample(runs: list[int], trainers: dict[int, Trainer], folders: dict[int, RunFolder],
            summaries: list) -> dict[int, ReplayBatch]:
    """Every run's sampled batch: the runs of one acting group from its stacked replay in one
    gather (each run with its own generator), the others alone; a run whose sampling raises
    alone fails."""
    batches: dict[int, ReplayBatch] = {}
    by_group: dict[int, list[int]] = {}
    for r in runs:
        if trainers[r].acting is not None:
            by_group.setdefault(id(trainers[r].acting), []).append(r)
    for members in by_group.values():
        group = trainers[members[0]].acting
        saved = [trainers[r].agent.replay.rng.bit_generator.state for r in members]
        betas = [trainers[r].agent.replay.beta for r in members]
        try:
            out = group.replay.sample([group.index[id(trainers[r])] for r in members],
                                      trainers[members[0]].agent.batch_size)
            batches.update(zip(members, out))
        except Exception:  # noqa: BLE001  (put the generators back: the runs sample alone below)
            for r, state, beta in zip(members, saved, betas):
                trainers[r].agent.replay.rng.bit_generator.state = state
                trainers[r].agent.replay.beta = beta
    for r in runs:
        if r not in batches:
            try:
                agent = trainers[r].agent
                batches[r] = agent.replay.sample(agent.batch_size)
            except Exception as exc:  # noqa: BLE001
                _fail(r, trainers, folders, summaries, exc)
    return batches
