"""Cost of the monitor's plasticity instruments per tracking row (issue 20, item 1).

At the paper's size (N = 50 actors 7-64-32-3, critic 510-512-128-1, batch 64) a real
``CCMMADRL`` makes a few updates; on the last ``UpdateResult`` two monitors --
``plasticity=True`` (the default) and ``plasticity=False`` -- each do what the runner does
at a tracking row: ``observe_update(..., log=True)``, ``log_row``, ``agent_rows``. The two
arms are interleaved in one process (the order alternates between repeats, so a change of
machine load hits both alike); the plasticity cost is the per-pair difference. Also the
share of a whole faithful episode (acting + update) that it adds at ``run.log_interval``
= 10. One torch thread. Load average and the CPU used by other processes are recorded.

    python benchmarks/bench_plasticity_monitor.py --json benchmarks/runs/plasticity_monitor.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import cpu_snapshot, cpu_usage, finish, load_average, machine_info  # noqa: E402


def _trainer() -> Any:
    from gradasym.algos.ccm_madrl.runner import Trainer
    from gradasym.config import load_config

    cfg = load_config(overrides={"run.episodes": 10})
    tr = Trainer(cfg)
    for _ in range(4):
        tr.run_episode()
    return tr


def _row(tr: Any, upd: Any, plasticity: bool) -> float:
    from gradasym.monitor import ActorCriticMonitor

    mon = ActorCriticMonitor(n_agents=tr.agent.n_agents, plasticity=plasticity)
    mon.observe_params(tr.agent.actor_parameters(), tr.agent.critic_parameters())
    t0 = time.perf_counter()
    mon.observe_update(5, upd.actor_grads, upd.critic_grads, tr.agent.actor_parameters(),
                       tr.agent.critic_parameters(), preact=upd.preact, actor_hidden=upd.actor_hidden,
                       critic_hidden=upd.critic_hidden, log=True)
    mon.log_row()
    mon.agent_rows()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--episodes", type=int, default=5, help="episodes timed for the per-episode reference")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine_info(), "load_avg_start": load_average()}
    start = cpu_snapshot()
    tr = _trainer()
    upd = tr.agent.update()
    shapes = {"preact": list(upd.preact.shape), "actor_hidden": [list(h.shape) for h in upd.actor_hidden],
              "critic_hidden": [list(h.shape) for h in upd.critic_hidden]}
    for _ in range(3):  # warm-up of both arms
        _row(tr, upd, True)
        _row(tr, upd, False)
    on, off = [], []
    for r in range(args.repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        t = {p: _row(tr, upd, p) for p in order}
        on.append(t[True])
        off.append(t[False])
    diff = sorted(a - b for a, b in zip(on, off))
    t0 = time.perf_counter()
    for _ in range(args.episodes):
        tr.run_episode()
    episode = (time.perf_counter() - t0) / args.episodes
    med = statistics.median(diff)
    results.update({
        "shapes": shapes, "repeats": args.repeats,
        "row_with_plasticity_ms": 1e3 * statistics.median(on), "row_without_ms": 1e3 * statistics.median(off),
        "plasticity_per_row_ms_median": 1e3 * med,
        "plasticity_per_row_ms_quartiles": [1e3 * diff[len(diff) // 4], 1e3 * diff[(3 * len(diff)) // 4]],
        "episode_s": episode, "share_of_episode_at_log_interval_10": med / (10 * episode),
        "cpu": cpu_usage(start),
    })
    print(f"tracking row: {results['row_with_plasticity_ms']:.2f} ms with plasticity, "
          f"{results['row_without_ms']:.2f} ms without; plasticity adds {1e3 * med:.2f} ms "
          f"(quartiles {results['plasticity_per_row_ms_quartiles'][0]:.2f}-"
          f"{results['plasticity_per_row_ms_quartiles'][1]:.2f}) per row; episode {episode:.3f} s -> "
          f"{100 * results['share_of_episode_at_log_interval_10']:.3f} % at log_interval 10")
    return finish(results, args.json)


if __name__ == "__main__":
    main()
