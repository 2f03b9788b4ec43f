"""Per-pass breakdown of the batched faithful (sequential) actor loop: CPU seconds per run
and pass spent in each part, for R runs (``python benchmarks/bench_batched_passes.py 16``).

Wraps the parts with ``time.process_time`` timers (CPU time of this process: on a loaded
machine closer to the quiet-machine cost than wall time); no library code is changed."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict

import torch

import gradasym.algos.ccm_madrl.batched as batched
import gradasym.algos.ccm_madrl.critic as critic
import gradasym.algos.ccm_madrl.networks as networks
from gradasym.config import load_config
from gradasym.process import configure_process
from gradasym.algos.ccm_madrl.runner import Trainer

PARTS = {
    "row search (bounds + candidate rows through the head)": (critic.StackedBatchCritic, "best_rows"),
    "head VJP on the chosen rows (dL/da_i)": (critic.StackedBatchCritic, "action_grad"),
    "shared-part update (rank-3)": (critic.StackedBatchCritic, "set_action_column"),
    "actor i backward (hand-written)": (networks.ActorEnsemble, "backward_rows"),
    "actor column forward": (networks.ActorEnsemble, "policy_forward"),
}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    configure_process(1)
    trainers = [Trainer(load_config(overrides={"run.seed": s})) for s in range(runs)]
    for t in trainers:
        for _ in range(3):
            t.run_episode()
    agents = [t.agent for t in trainers]
    batched.batched_update(agents, [a.replay.sample(64) for a in agents])  # warm
    spent: dict[str, float] = defaultdict(float)

    def timed(fn, name: str):
        """``fn`` with its CPU time added to ``spent[name]``."""
        def wrapper(*a, **k):
            t0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.process_time() - t0
        return wrapper

    for name, (cls, attr) in PARTS.items():
        setattr(cls, attr, timed(getattr(cls, attr), name))
    batched.adam_rows_ = timed(batched.adam_rows_, "Adam steps (critic + actor rows)")
    batched._actors_sequential = timed(batched._actors_sequential, "actor loop total")
    updates = 3
    t0 = time.process_time()
    for _ in range(updates):
        batched.batched_update(agents, [a.replay.sample(64) for a in agents])
    total = time.process_time() - t0
    n = agents[0].n_agents
    per = lambda s: s / updates / runs / n * 1e3  # noqa: E731  (ms per run and pass)
    print(f"R={runs}, load {os.getloadavg()[0]:.1f}: CPU ms per run and pass (50 passes per update)")
    print(f"  whole update / 50: {per(total):.3f}")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name}: {per(s):.3f}")


if __name__ == "__main__":
    main()
