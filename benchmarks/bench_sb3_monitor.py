"""Cost of the monitor in Stable-Baselines3: TD3 gradient steps and env steps per second.

Two measurements, each an interleaved A/B in one process (the order alternates
between repeats, so a change of machine load hits both arms alike):

* **gradient step**: a TD3 model whose replay buffer is already filled runs
  ``model.train(gradient_steps=G)`` with the ``SaturationMonitorCallback`` hooks
  attached (``cb.init_callback(model)``, default ``log_freq=100``) and without them
  (``cb.close()``); the overhead is ``(with - without) / without`` of the seconds per
  gradient step, per repeat pair. Under load that difference is noisy, so the time
  spent *inside* the callback's three optimiser hooks is also accumulated
  (``perf_counter`` around each call) and given as a share of the with-arm's time
  (``hook_share``): the monitor's own cost, measured in the same steps;
* **env steps per second**: ``model.learn(N, reset_num_timesteps=False)`` (acting,
  env step, one gradient step per env step) with and without the callback, for
  TD3 and SAC.

On Pendulum-v1 and a MuJoCo task (``HalfCheetah-v5``; needs ``gymnasium[mujoco]``).
SB3's default policies (TD3: 400-300, SAC: 256-256), batch 256, one torch thread.
The load average and the CPU used by other processes are recorded with every number.

    python benchmarks/bench_sb3_monitor.py --json benchmarks/runs/sb3_monitor.json
    python benchmarks/bench_sb3_monitor.py --envs Pendulum-v1 --repeats 3 --grad-steps 100
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


def _model(algo: str, env_id: str, seed: int, warmup: int) -> Any:
    import stable_baselines3 as sb3

    model = getattr(sb3, algo)("MlpPolicy", env_id, learning_starts=warmup, seed=seed, device="cpu", verbose=0)
    model.learn(warmup + 10)  # fills the buffer past learning_starts and sets up the logger
    return model


def _callback(timed: dict[str, float] | None = None) -> Any:
    """The callback with its defaults (log_freq=100, logger keys recorded); with ``timed``,
    its optimiser hooks accumulate their own wall time there (``timed["s"]``)."""
    from gradasym.integrations.sb3 import SaturationMonitorCallback

    cb = SaturationMonitorCallback()
    if timed is not None:
        for name in ("_critic_pre_step", "_actor_pre_step", "_actor_post_step"):
            hook = getattr(cb, name)

            def wrapped(*args: Any, _hook: Any = hook) -> None:
                t0 = time.perf_counter()
                _hook(*args)
                timed["s"] += time.perf_counter() - t0

            setattr(cb, name, wrapped)  # registered by init_callback from the instance attribute
    return cb


def gradient_step_overhead(env_id: str, repeats: int, grad_steps: int, seed: int) -> dict[str, Any]:
    """Seconds per TD3 gradient step with and without the monitor's hooks, interleaved."""
    model = _model("TD3", env_id, seed, warmup=1000)
    timed = {"s": 0.0}
    cb = _callback(timed)
    times: dict[str, list[float]] = {"without": [], "with": []}
    share: list[float] = []
    load, start = [load_average()[0]], cpu_snapshot()
    model.train(gradient_steps=20, batch_size=model.batch_size)  # warm-up, not timed
    for r in range(repeats):
        for arm in ("without", "with") if r % 2 == 0 else ("with", "without"):
            if arm == "with":
                cb.init_callback(model)
            timed["s"] = 0.0
            t0 = time.perf_counter()
            model.train(gradient_steps=grad_steps, batch_size=model.batch_size)
            wall = time.perf_counter() - t0
            times[arm].append(wall / grad_steps)
            if arm == "with":
                share.append(timed["s"] / wall)
            cb.close()
        load.append(load_average()[0])
    over = [w / wo - 1 for w, wo in zip(times["with"], times["without"])]
    res = {
        "env": env_id, "algo": "TD3", "grad_steps_per_arm": grad_steps, "repeats": repeats,
        "ms_per_step_without": [round(t * 1e3, 3) for t in times["without"]],
        "ms_per_step_with": [round(t * 1e3, 3) for t in times["with"]],
        "overhead_per_pair": [round(o, 4) for o in over],
        "overhead_median": round(statistics.median(over), 4),
        "hook_share": [round(v, 4) for v in share], "hook_share_median": round(statistics.median(share), 4),
        "hook_ms_per_step_median": round(statistics.median(share) * statistics.median(times["with"]) * 1e3, 3),
        "load_1min": [round(v, 2) for v in load], "cpu": cpu_usage(start),
        "monitor_rows": len(cb.rows), "monitor_updates": cb.monitor.n_updates,
    }  # fmt: skip
    print(f"{env_id} TD3 gradient step: without {statistics.median(times['without']) * 1e3:.2f} ms, "
          f"with {statistics.median(times['with']) * 1e3:.2f} ms (medians of {repeats}); overhead per pair "
          f"{', '.join(f'{o:+.1%}' for o in over)}, median {res['overhead_median']:+.1%}; time inside the "
          f"hooks {res['hook_share_median']:.1%} of the with-arm (per pair {', '.join(f'{v:.1%}' for v in share)}); "
          f"load {load[0]:.2f}-{max(load):.2f}, other processes {res['cpu'].get('other_cores', float('nan'))} cores")  # fmt: skip
    return res


def steps_per_second(algo: str, env_id: str, repeats: int, steps: int, seed: int) -> dict[str, Any]:
    """Env steps per second of ``learn`` with and without the callback, interleaved."""
    model = _model(algo, env_id, seed, warmup=500)
    cb = _callback()
    sps: dict[str, list[float]] = {"without": [], "with": []}
    load, start = [load_average()[0]], cpu_snapshot()
    for r in range(repeats):
        for arm in ("without", "with") if r % 2 == 0 else ("with", "without"):
            t0 = time.perf_counter()
            model.learn(steps, callback=cb if arm == "with" else None, reset_num_timesteps=False)
            sps[arm].append(steps / (time.perf_counter() - t0))
        load.append(load_average()[0])
    over = [wo / w - 1 for w, wo in zip(sps["with"], sps["without"])]  # extra time per step
    res = {
        "env": env_id, "algo": algo, "steps_per_arm": steps, "repeats": repeats,
        "steps_per_s_without": [round(v, 1) for v in sps["without"]],
        "steps_per_s_with": [round(v, 1) for v in sps["with"]],
        "overhead_per_pair": [round(o, 4) for o in over], "overhead_median": round(statistics.median(over), 4),
        "load_1min": [round(v, 2) for v in load], "cpu": cpu_usage(start),
    }  # fmt: skip
    print(f"{env_id} {algo} learn: {statistics.median(sps['without']):.1f} steps/s without, "
          f"{statistics.median(sps['with']):.1f} with (medians of {repeats}); time overhead median "
          f"{res['overhead_median']:+.1%}; load {load[0]:.2f}-{max(load):.2f}")  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    ap.add_argument("--algos", nargs="*", default=["TD3", "SAC"],
                    help="for the steps-per-second part (none: skip it)")
    ap.add_argument("--repeats", type=int, default=6, help="A/B pairs per measurement (default 6)")
    ap.add_argument("--grad-steps", type=int, default=200, help="gradient steps per arm and repeat (default 200)")
    ap.add_argument("--learn-steps", type=int, default=300, help="env steps per arm and repeat (default 300)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results there (atomically)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    la = load_average()
    print(f"load average before: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; torch threads {args.threads}")
    results: dict[str, Any] = {"machine": machine_info(), "load_avg_start": la, "threads": args.threads,
                               "gradient_step": [], "learn": []}  # fmt: skip
    for env_id in args.envs:
        results["gradient_step"].append(gradient_step_overhead(env_id, args.repeats, args.grad_steps, args.seed))
        for algo in args.algos:
            results["learn"].append(steps_per_second(algo, env_id, max(2, args.repeats // 2), args.learn_steps, args.seed))
    return finish(results, args.json)


if __name__ == "__main__":
    main()
