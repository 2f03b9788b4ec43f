"""The CCM-MADRL client actors: a batched ensemble of N independent actors.

``ccm-madrl.md`` ("Networks") defines N independent client actors
(7 -> 64 -> 32 -> 3, ReLU hidden, tanh output) and one master critic
([joint state, joint action, own state, own action] -> 512 -> 128 -> 1).

* :class:`ActorEnsemble` stores the N actors as *one* flat parameter of shape
  ``(N, P)`` (P = parameters of one actor). Each layer's weight is a view
  ``(N, in, out)`` and its bias a view ``(N, out)`` of that buffer, so the N
  actors are evaluated together with ``torch.baddbmm`` (agent = batch dimension),
  one actor's row can be evaluated (or given its own autograd leaf) cheaply, and a
  per-agent optimiser (:class:`gradasym.algos.ccm_madrl.optim.BatchedAdam`) updates one row with a
  handful of tensor ops. The networks are still independent: row i only ever
  touches actor i's parameters.
* :class:`Critic` (re-exported here) lives with all of its row algebra in
  :mod:`gradasym.algos.ccm_madrl.critic`.

The mitigation presets (``docs/presets.md``) change the actors only through
:class:`ActorEnsemble`'s ``output_activation``, ``norm`` and ``policy`` arguments
(LayerNorm parameters live in the same flat row; the stochastic heads and squashing
are in :mod:`gradasym.algos.ccm_madrl.policies`); the defaults are the network of the spec.

Initialisation uses an explicit ``torch.Generator`` (never the global RNG): hidden
layers exactly like PyTorch's default ``nn.Linear`` init (weight via
``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias
U(-1/sqrt(fan_in), 1/sqrt(fan_in))), output layers U(-output_init, output_init).
Draw order: actor 0 layer 0 weight, bias, layer 1 weight, bias, ..., actor 1, ...;
critic layer 0 weight, bias, ... (as if the N actors were built one after the
other as separate ``nn.Sequential`` modules, each weight drawn in nn.Linear's
``(out, in)`` layout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradasym.algos.ccm_madrl.critic import Critic  # noqa: F401  (re-exported: the critic lives in gradasym.algos.ccm_madrl.critic)
from gradasym.algos.ccm_madrl.layers import Activation, _linear_default_init_, _output_init_, activation_fn, relu_backward
from gradasym.algos.ccm_madrl.policies import LN_EPS, OUTPUT_ACTIVATIONS, POLICIES, ActorOutput, policy_head, squash_grad

# ====================================================================== actors
class ActorEnsemble(nn.Module):
    """N independent actors ``state_dim -> *hidden -> action_dim`` (deterministic by default).

    Parameters live in one flat ``nn.Parameter`` ``flat`` of shape ``(N, P)``;
    ``weight(l)`` is the ``(N, in, out)`` view of layer ``l``'s weights and
    ``bias(l)`` the ``(N, out)`` view of its biases (``x @ W + b`` convention).

    Inputs are ``(N, B, state_dim)`` (agent i's batch in row i) or
    ``(N, state_dim)`` (one state per agent); outputs keep that leading layout.

    Mitigation options (``docs/presets.md``), all on this one code path:

    * ``output_activation``: ``tanh`` (faithful), ``softsign`` or ``scaled-sigmoid``;
    * ``norm="layernorm"``: a LayerNorm (over the action dimensions, per-agent affine
      ``ln_weight``/``ln_bias`` in the agent's row) on the output layer's result,
      before the squashing; ``norm="fullnorm"``: a LayerNorm after each hidden
      activation (over the hidden units) and none on the output (the input
      normalisation of ``fullnorm`` lives in the agent);
    * ``policy``: ``deterministic``, ``squashed-gaussian`` or ``beta`` -- the two
      stochastic policies have ``2 * action_dim`` outputs (see
      :func:`gradasym.algos.ccm_madrl.policies.policy_head`).

    * ``crelu=True`` (plasticity remedy, ``docs/presets.md``): every hidden unit is a CReLU,
      ``[relu(x), relu(-x)]`` (Shang et al. 2016; Abbas et al. 2023 against loss of
      plasticity): a hidden layer of width H outputs 2H values and the next layer's input
      is 2H wide (``in_sizes``). Differentiated with autograd (no hand-written backward).

    LayerNorm parameters start at weight 1, bias 0 (no random draws), so the linear
    layers are initialised exactly as without the LayerNorms.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int = 7,
        action_dim: int = 3,
        hidden: Sequence[int] = (64, 32),
        hidden_activation: Activation = "relu",
        output_init: float = 3e-3,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        output_activation: str = "tanh",
        norm: str = "none",
        policy: str = "deterministic",
        crelu: bool = False,
    ) -> None:
        super().__init__()
        if crelu and (hidden_activation != "relu" or norm == "fullnorm"):
            raise ValueError("crelu actors need hidden_activation='relu' and no per-hidden-layer LayerNorm (fullnorm)")
        if norm not in ("none", "layernorm", "fullnorm"):
            raise ValueError(f"unknown actor norm {norm!r} (expected 'none', 'layernorm' or 'fullnorm')")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"unknown output activation {output_activation!r}")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        self.n_agents = int(n_agents)
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.output_activation = output_activation
        self.norm = norm
        self.policy = policy
        heads = 1 if policy == "deterministic" else 2
        self.sizes = [self.state_dim, *[int(h) for h in hidden], self.action_dim * heads]
        self.n_layers = len(self.sizes) - 1
        self.hidden_activation = hidden_activation
        self.crelu = bool(crelu)
        self._act = crelu_fn if self.crelu else activation_fn(hidden_activation)
        # each layer's (input, output) width: a CReLU layer's output is twice its units
        self.out_sizes = self.sizes[1:]
        self.in_sizes = [self.sizes[0]] + [h * (2 if self.crelu else 1) for h in self.sizes[1:-1]]
        # Which layers are followed by a LayerNorm (over their outputs).
        last = self.n_layers - 1
        self._ln_layers = {
            "none": set(), "layernorm": {last}, "fullnorm": set(range(last)),
        }[norm]
        # (weight offset, bias offset) of each layer inside one agent's row, and the
        # offset of its LayerNorm weight (bias right after), or None.
        self._offsets: list[tuple[int, int]] = []
        self._ln_offsets: list[int | None] = []
        off = 0
        for layer, (fan_in, fan_out) in enumerate(zip(self.in_sizes, self.out_sizes)):
            self._offsets.append((off, off + fan_in * fan_out))
            off += fan_in * fan_out + fan_out
            if layer in self._ln_layers:
                self._ln_offsets.append(off)
                off += 2 * fan_out
            else:
                self._ln_offsets.append(None)
        self.n_params_per_agent = off
        # The hand-written backward (backward_agent) covers deterministic actors without
        # LayerNorm; the others are differentiated with autograd.
        self.manual_backward = policy == "deterministic" and norm == "none" and not self.crelu
        # built on the CPU (initialised from a CPU generator); the agent moves it to its device
        self.flat = nn.Parameter(torch.empty(self.n_agents, off, dtype=dtype, device="cpu"))
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0), output_init)

    # ---------------------------------------------------------------- params
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, output_init: float = 3e-3) -> None:
        """Initialise every actor (see module docstring for the draw order)."""
        for i in range(self.n_agents):
            for layer, (fan_in, fan_out) in enumerate(zip(self.in_sizes, self.out_sizes)):
                w = torch.empty(fan_out, fan_in, dtype=self.flat.dtype, device="cpu")  # nn.Linear layout
                b = torch.empty(fan_out, dtype=self.flat.dtype, device="cpu")
                if layer < self.n_layers - 1:
                    _linear_default_init_(w, b, generator)
                else:
                    _output_init_(w, b, output_init, generator)
                self.weight(layer, self.flat)[i].copy_(w.t())
                self.bias(layer, self.flat)[i].copy_(b)
                if self._ln_offsets[layer] is not None:
                    self.ln_weight(layer, self.flat)[i].fill_(1.0)
                    self.ln_bias(layer, self.flat)[i].zero_()

    def weight(self, layer: int, flat: Tensor | None = None) -> Tensor:
        """Layer ``layer``'s weights as a view ``(N, in, out)`` of ``flat`` (default: the parameter).

        ``flat`` may also be a single agent's row ``(P,)``, giving ``(in, out)``.
        """
        flat = self.flat if flat is None else flat
        w0, b0 = self._offsets[layer]
        shape = (self.in_sizes[layer], self.out_sizes[layer])
        return flat.narrow(-1, w0, b0 - w0).view(flat.shape[:-1] + shape)  # (fewer ops than [..., w0:b0])

    def bias(self, layer: int, flat: Tensor | None = None) -> Tensor:
        """Layer ``layer``'s biases as a view ``(N, out)`` (or ``(out,)`` for one row)."""
        flat = self.flat if flat is None else flat
        _, b0 = self._offsets[layer]
        return flat.narrow(-1, b0, self.sizes[layer + 1])

    def has_ln(self, layer: int) -> bool:
        """Whether layer ``layer`` is followed by a LayerNorm."""
        return self._ln_offsets[layer] is not None

    def ln_weight(self, layer: int, flat: Tensor | None = None) -> Tensor:
        """The LayerNorm gain after layer ``layer``: a view ``(N, out)`` (or ``(out,)``)."""
        flat = self.flat if flat is None else flat
        o = self._ln_offsets[layer]
        if o is None:
            raise ValueError(f"layer {layer} has no LayerNorm")
        return flat[..., o : o + self.sizes[layer + 1]]

    def ln_bias(self, layer: int, flat: Tensor | None = None) -> Tensor:
        """The LayerNorm shift after layer ``layer``: a view ``(N, out)`` (or ``(out,)``)."""
        flat = self.flat if flat is None else flat
        o = self._ln_offsets[layer]
        if o is None:
            raise ValueError(f"layer {layer} has no LayerNorm")
        n = self.sizes[layer + 1]
        return flat[..., o + n : o + 2 * n]

    def layer_views(self, flat: Tensor | None = None) -> dict[str, Tensor]:
        """``{"l{j}.weight": (N, in, out), "l{j}.bias": (N, out)}`` views of ``flat``, plus
        ``"l{j}.ln_weight"``, ``"l{j}.ln_bias"`` ``(N, out)`` for a layer followed by a
        LayerNorm (grouped with layer j by the monitor).

        Works for the parameter, a gradient of the same shape, or one row.
        """
        out: dict[str, Tensor] = {}
        for layer in range(self.n_layers):
            out[f"l{layer}.weight"] = self.weight(layer, flat)
            out[f"l{layer}.bias"] = self.bias(layer, flat)
            if self.has_ln(layer):
                out[f"l{layer}.ln_weight"] = self.ln_weight(layer, flat)
                out[f"l{layer}.ln_bias"] = self.ln_bias(layer, flat)
        return out

    # --------------------------------------------------------------- forward
    def forward(self, states: Tensor, flat: Tensor | None = None) -> Tensor:
        """Actions of all actors: ``(N, B, S) -> (N, B, A)`` or ``(N, S) -> (N, A)``
        (stochastic policies: the deterministic action, see :func:`policy_head`)."""
        return self.forward_with_preact(states, flat)[0]

    def forward_with_preact(
        self, states: Tensor, flat: Tensor | None = None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(actions, z, hidden)``: z = output pre-activations (tanh inputs), hidden = activations
        after each hidden layer, all with the input's leading layout.

        ``flat`` replaces the parameter (e.g. an autograd leaf copy of it). With a
        mitigation, ``z`` is the pre-activation the monitor watches
        (:attr:`gradasym.algos.ccm_madrl.policies.ActorOutput.preact`).
        """
        out = self.policy_forward(states, flat)
        return out.action, out.preact, out.hidden

    def policy_forward(self, states: Tensor, flat: Tensor | None = None, noise: Tensor | None = None) -> ActorOutput:
        """All actors: :class:`ActorOutput` with the input's leading layout (``(N, B, .)`` or
        ``(N, .)``). ``noise`` (squashed Gaussian only): standard normal ``(N, B, A)`` /
        ``(N, A)`` for a reparameterised sample."""
        single = states.dim() == 2
        h = states.unsqueeze(1) if single else states
        hidden: list[Tensor] = []
        for layer in range(self.n_layers):
            h = torch.baddbmm(self.bias(layer, flat).unsqueeze(1), h, self.weight(layer, flat))
            h = self._after_layer(layer, h, flat, hidden, batched=True)
        if single:
            h = h.squeeze(1)
            hidden = [t.squeeze(1) for t in hidden]
        return policy_head(h, hidden, self.policy, self.output_activation, self.action_dim, noise)

    def _after_layer(self, layer: int, h: Tensor, flat: Tensor | None, hidden: list[Tensor], batched: bool) -> Tensor:
        """Hidden activation (kept in ``hidden``) and the optional LayerNorm after a layer."""
        if layer < self.n_layers - 1:
            h = self._act(h)
            hidden.append(h)
        if self._ln_offsets[layer] is not None:
            g, b = self.ln_weight(layer, flat), self.ln_bias(layer, flat)
            if batched:
                g, b = g.unsqueeze(-2), b.unsqueeze(-2)
            h = torch.addcmul(b, F.layer_norm(h, h.shape[-1:], eps=LN_EPS), g)
        return h

    @torch.no_grad()
    def backward_agent(self, i: int, states: Tensor, hidden: Sequence[Tensor], actions: Tensor,
                       grad_actions: Tensor, grad_preact: Tensor | None = None) -> Tensor:
        """Gradient of ``sum(grad_actions * actions) [+ sum(grad_preact * z)]`` w.r.t. actor
        ``i``'s parameter row ``(P,)``.

        Plain back-propagation through actor i given its forward activations on ``states``
        ``(B, S)``: ``hidden`` (its hidden-layer outputs) and ``actions`` (its squashed
        outputs). The same arithmetic as autograd (tanh' = 1 - a^2, ReLU' = [output > 0]),
        without building a graph; the tests compare it with autograd. Only for
        deterministic actors without LayerNorm (``manual_backward``).
        """
        if not self.manual_backward:
            raise ValueError("backward_agent covers deterministic actors without LayerNorm; use autograd")
        row = self.flat[i]
        grad_row = torch.empty_like(row)
        g = squash_grad(grad_actions, actions, self.output_activation)  # d/dz through the squashing
        if grad_preact is not None:
            g = g + grad_preact
        for layer in reversed(range(self.n_layers)):
            inp = states if layer == 0 else hidden[layer - 1]
            torch.mm(inp.t(), g, out=self.weight(layer, grad_row))
            torch.sum(g, dim=0, out=self.bias(layer, grad_row))
            if layer > 0:
                g = g @ self.weight(layer, row).t()
                if self.hidden_activation == "relu":
                    g = relu_backward(g, inp)
        return grad_row

    @torch.no_grad()
    def backward_rows(self, rows: Tensor, states: Tensor, hidden: Sequence[Tensor], actions: Tensor,
                      grad_actions: Tensor) -> Tensor:
        """:meth:`backward_agent` for R parameter rows at once (e.g. actor i of R runs):
        ``rows (R, P)``, ``states (R, B, S)``, ``hidden[l] (R, B, H_l)``, ``actions``,
        ``grad_actions (R, B, A)`` -> gradient rows ``(R, P)``; row r uses only its own inputs."""
        if not self.manual_backward:
            raise ValueError("backward_rows covers deterministic actors without LayerNorm; use autograd")
        grad = rows.new_empty(rows.shape)
        g = squash_grad(grad_actions, actions, self.output_activation)
        for layer in reversed(range(self.n_layers)):
            inp = states if layer == 0 else hidden[layer - 1]
            self.weight(layer, grad).copy_(torch.bmm(inp.transpose(1, 2), g))
            self.bias(layer, grad).copy_(g.sum(dim=1))
            if layer > 0:
                g = torch.bmm(g, self.weight(layer, rows).transpose(1, 2))
                if self.hidden_activation == "relu":
                    g = relu_backward(g, inp)
        return grad

    def forward_agent(self, i: int, states: Tensor, row: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Actor ``i`` alone on ``states (B, S)``: returns ``(actions (B, A), z (B, A))``.

        ``row`` replaces actor i's parameter row ``flat[i]`` (e.g. an autograd leaf).
        """
        out = self.policy_forward_agent(i, states, row)
        return out.action, out.preact

    def policy_forward_agent(self, i: int, states: Tensor, row: Tensor | None = None,
                             noise: Tensor | None = None) -> ActorOutput:
        """Actor ``i`` alone on ``states (B, S)``: :class:`ActorOutput` with leading dim ``B``."""
        row = self.flat[i] if row is None else row
        h = states
        hidden: list[Tensor] = []
        for layer in range(self.n_layers):
            h = torch.addmm(self.bias(layer, row), h, self.weight(layer, row))
            h = self._after_layer(layer, h, row, hidden, batched=False)
        return policy_head(h, hidden, self.policy, self.output_activation, self.action_dim, noise)


def crelu_fn(x: Tensor) -> Tensor:
    """CReLU ``[relu(x), relu(-x)]`` over the last dim (units ``j`` and ``H + j`` share unit j's input)."""
    return torch.cat([torch.relu(x), torch.relu(-x)], dim=-1)


@torch.no_grad()
def soft_update_(target: Tensor | nn.Module, online: Tensor | nn.Module, tau: float) -> None:
    """``target = (1 - tau) * target + tau * online``; tau = 1 is an exact copy (hard update)."""
    if isinstance(target, nn.Module):
        pairs = list(zip(target.parameters(), online.parameters()))
    else:
        pairs = [(target, online)]
    for t, o in pairs:
        if tau >= 1.0:
            t.copy_(o)
        else:
            t.mul_(1.0 - tau).add_(o, alpha=tau)
