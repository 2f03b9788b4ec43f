"""How tests/data/batched_sweep was made: a sweep folder written by the batched trainer.

Run at commit 054d87e (the last with the batched trainer; this script needs its code):

    mkdir -p /tmp/old && git archive 054d87e src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/data/make_batched_sweep.py /tmp/batched_sweep

Two tiny runs (N = 4) trained as one batch with ``--batch-runs 2``, stopped like Ctrl-C once a
run passes episode 4: the 3-episode run finished, the 9-episode one interrupted with its
checkpoint at episode 3. Its ``checkpoint.prev.pt`` (a fallback, 65 kB) was left out of the
committed copy. Used by tests/test_retired_batched.py.
"""
import sys
from pathlib import Path

from gradasym.config import Config
from gradasym.sweep import SweepInterrupted, SweepSpec, run_sweep
from gradasym.algos.ccm_madrl.batched import train_batch


def base() -> Config:
    cfg = Config()
    cfg.env.n_agents, cfg.env.k_channel, cfg.env.n_units = 4, 2, 2
    cfg.agent.batch_size, cfg.agent.memory_capacity = 8, 200
    cfg.agent.actor_hidden, cfg.agent.critic_hidden = (16, 8), (32, 16)
    cfg.run.episodes, cfg.run.log_interval, cfg.run.checkpoint_interval = 9, 3, 3
    cfg.run.early_stop_patience = 3
    return cfg


def stop_after_4(cfgs, out_dirs, progress=None, **kw):
    def stop(r, info):
        if info["episode"] > 4:
            raise KeyboardInterrupt
        if progress is not None:
            progress(r, info)
    return train_batch(cfgs, out_dirs, progress=stop, **kw)


out = Path(sys.argv[1])
spec = SweepSpec(base=base(), axes={"run.episodes": [3, 9]}, seeds=[1])
try:
    run_sweep(spec, out, batch_runs=2, batch_runner=stop_after_4, live=False, log=print)
except SweepInterrupted as exc:
    print("interrupted:", exc)
