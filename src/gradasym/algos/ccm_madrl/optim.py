"""Adam over stacked per-agent parameters, one independent optimiser per agent.

The original code gives every actor its own ``torch.optim.Adam``. With the actors
stored as stacked tensors (agent = dim 0), a single ``torch.optim.Adam`` over the
stack would be wrong for the faithful sequential actor update: each actor steps
once per update, during its own pass, and stepping a shared Adam would also move
every other row on its momentum. :class:`BatchedAdam` keeps, per agent row, its
own first/second moments and its own step counter, and can step one row
(:meth:`step_agent`) or all rows at once (:meth:`step_all`).

The arithmetic replicates ``torch.optim.Adam`` (single-tensor CPU path, no weight
decay, no amsgrad) operation by operation::

    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step_size = lr / (1 - beta1 ** t)
    denom = v.sqrt() / sqrt(1 - beta2 ** t) + eps
    p.addcdiv_(m, denom, value=-step_size)

so each row follows exactly the trajectory of a separate ``torch.optim.Adam``
(up to the last bit of vectorised vs. scalar kernels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class BatchedAdam:
    """Per-agent Adam for a list of stacked parameters ``(N, ...)``."""

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("BatchedAdam needs at least one parameter")
        self.n_agents = int(self.params[0].shape[0])
        if any(p.shape[0] != self.n_agents for p in self.params):
            raise ValueError("all stacked parameters must share their leading (agent) dimension")
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        # decoupled weight decay (AdamW, Loshchilov & Hutter 2019; the ln-wd remedy): before each
        # step p <- p * (1 - lr * weight_decay), as torch.optim.AdamW; 0 = plain Adam
        self.weight_decay = float(weight_decay)
        self.steps = [0] * self.n_agents  # one step counter per agent
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]

    # ------------------------------------------------------------------ steps
    def _adam_(self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, t: int) -> None:
        beta1, beta2 = self.betas
        if self.weight_decay:
            p.mul_(1 - self.lr * self.weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = self.lr / bias_correction1
        denom = (v.sqrt() / bias_correction2**0.5).add_(self.eps)
        p.addcdiv_(m, denom, value=-step_size)

    @torch.no_grad()
    def step_agent(self, i: int, grads: Sequence[Tensor]) -> None:
        """One Adam step of agent ``i`` only; ``grads[j]`` has the shape of ``params[j][i]``."""
        self.steps[i] += 1
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            self._adam_(p[i], g, m[i], v[i], self.steps[i])

    @torch.no_grad()
    def step_all(self, grads: Sequence[Tensor]) -> None:
        """One Adam step of every agent; ``grads[j]`` has the shape of ``params[j]``."""
        self.steps = [t + 1 for t in self.steps]
        if len(set(self.steps)) == 1:  # the usual case: one vectorised step
            t = self.steps[0]
            for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
                self._adam_(p, g, m, v, t)
            return
        # Agents with different step counts: per-row bias corrections.
        beta1, beta2 = self.betas
        t = torch.tensor(self.steps, dtype=torch.float64, device=self.params[0].device)
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            if self.weight_decay:
                p.mul_(1 - self.lr * self.weight_decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = (self.lr / (1 - beta1**t)).to(p.dtype).view(shape)
            bc2_sqrt = ((1 - beta2**t) ** 0.5).to(p.dtype).view(shape)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.sub_(step_size * m / denom)

    # ------------------------------------------------------------- state io
    def state_dict(self) -> dict:
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "steps": list(self.steps),
            "exp_avg": [m.clone() for m in self.exp_avg],
            "exp_avg_sq": [v.clone() for v in self.exp_avg_sq],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["steps"]) != self.n_agents or len(state["exp_avg"]) != len(self.params):
            raise ValueError("BatchedAdam state does not match these parameters")
        self.lr = float(state["lr"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.eps = float(state["eps"])
        self.weight_decay = float(state.get("weight_decay", 0.0))  # states saved before it existed: none
        self.steps = [int(t) for t in state["steps"]]
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"])):
            dst.copy_(src)
