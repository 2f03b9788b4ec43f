"""CCM-MADRL: 50 client actors and one master critic on the MEC simulator (the paper's algorithm).

Everything of this algorithm lives in this package; the pipeline (run folders, sweeps, report,
monitor, config) reaches it only through :class:`CCMMADRLAlgorithm`, the registry's plugin.

| module | job |
|---|---|
| ``plugin`` | :class:`CCMMADRLAlgorithm`: the :class:`~gradasym.algos.base.Algorithm` the registry holds |
| ``layers`` | hidden nonlinearity and ``nn.Linear``'s default initialisation from an explicit generator |
| ``policies`` | actor output policies (tanh, squashed Gaussian, Beta, ...), LayerNorm, reward normalisation |
| ``networks`` | the batched actor ensemble (stacked weights, agents as a batch dimension) |
| ``critic`` | the master critic and its row algebra (split first layer, arg-max over rows, pruning, backward) |
| ``optim`` | batched per-agent Adam |
| ``replay`` | prioritised replay, vectorised sampling |
| ``agent`` | ``CCMMADRL``: acting with the master's selection, critic update, actor updates |
| ``runner`` | ``run_experiment``: the training loop, tables, checkpoints, summary |
| ``compiled`` | the compiled engine (``run.engine``): numba kernels working in place on the agent's tensors |

Importing this package is cheap (no torch): the modules above are imported when a run starts.
"""

from .plugin import CCMMADRLAlgorithm

__all__ = ["CCMMADRLAlgorithm"]
