"""Training-speed benchmark of gradasym's CCM-MADRL at the paper's sizes (N=50, batch 64).

Runs the real training loop (``gradasym.algos.ccm_madrl.runner.Trainer.run_episode``: 10 acting steps +
one batched ``remember_many``, one ``agent.update()``, then the monitor's ``observe_update``) with
tracking on, and reports:

* seconds per episode (mean, median, p10/p90) over the episodes after the warm-up;
* a per-component breakdown, measured by wrapping methods of the live objects with
  ``time.perf_counter`` timers (no library code is edited): acting (``agent.act``,
  master selection included), environment step, replay insertion (``agent.remember_many``,
  TD-error priority included), replay sampling + priority write-back, critic update,
  target updates, actor updates, tracking (``Trainer._observe``: ``monitor.observe_update``
  + the logged rows), and the rest;
* the share of CPU time in matrix-multiply ops (torch.profiler over a few episodes);
* the "floor" of the faithful sequential actor loop: 50 forward passes of the critic's
  512 -> 128 layer (+ ReLU) over the B x N = 3200 rows, and over the average number of
  rows the agent actually evaluated (proposer rows, with and without exact row pruning);
* optionally the plain per-agent implementation (``tests/reference.py``) for context.

Examples::

    python benchmarks/bench_training.py --mode both --threads 1 --json out.json
    python benchmarks/bench_training.py --mode sequential --actor-lr 0.1 --no-prune
    python benchmarks/bench_training.py --reference-updates 2 --episodes 0

Timings are only meaningful on a quiet machine: the script prints the load average
before and after measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import gradasym.algos.ccm_madrl.agent as agent_mod
from gradasym.config import load_config
from gradasym.io import write_json
from gradasym.process import keep_freed_memory
from gradasym.algos.ccm_madrl.runner import Trainer

ROOT = Path(__file__).resolve().parents[1]
MATMUL_OPS = {
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
    "aten::addmv", "aten::mv", "aten::dot", "aten::addbmm", "aten::_addmm_activation",
}

# Component names, in report order.
COMPONENTS = [
    ("acting", "agent.act (actors + noise + master selection)"),
    ("env", "env.step"),
    ("replay_insert", "agent.remember_many / remember (TD-error priorities + push)"),
    ("replay_sample", "replay.sample + update_priorities"),
    ("critic_update", "agent._update_critic (targets, loss, backward, Adam)"),
    ("target_updates", "soft_update_ of critic and actor targets"),
    ("actor_updates", "agent._update_actors_* (the actor loop)"),
    ("update_other", "rest of agent.update (UpdateResult, views, copies)"),
    ("tracking", "Trainer._observe (monitor.observe_update + logged rows)"),
    ("other", "rest of run_episode (loop, bookkeeping)"),
]


# ----------------------------------------------------------------------- machine
def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def finish(results: dict[str, Any], json_out: str | None) -> dict[str, Any]:
    """Record and print the closing load average; write ``results`` to ``json_out`` (atomically)."""
    la = load_average()
    results["load_avg_end"] = la
    print(f"\nload average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    if json_out:
        write_json(json_out, results)
        print(f"wrote {json_out}")
    return results


def cpu_snapshot() -> tuple[list[int], float, float]:
    """(/proc/stat aggregate cpu jiffies, this process's CPU seconds, wall time)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        fields = []
    return fields, time.process_time(), time.perf_counter()


def cpu_usage(start: tuple[list[int], float, float]) -> dict[str, float]:
    """Machine CPU use since ``start`` in cores (of os.cpu_count()): everything busy, this
    process, the others (busy - this process) and hypervisor steal."""
    end = cpu_snapshot()
    wall = end[2] - start[2]
    if not start[0] or not end[0] or wall <= 0:
        return {}
    d = [b - a for a, b in zip(start[0], end[0])]
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz / wall
    steal = (d[7] if len(d) > 7 else 0) / hz / wall
    own = (end[1] - start[1]) / wall
    return {"busy_cores": round(busy, 3), "own_cores": round(own, 3),
            "other_cores": round(max(0.0, busy - own), 3), "steal_cores": round(steal, 3)}


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = float("nan")
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024**2
                break
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem_gb, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 30.0) -> tuple[float, float, float]:
    """Sleep until the 1-minute load average is below ``max_load`` (or ``max_wait_s`` passed)."""
    t0 = time.time()
    la = load_average()
    while la[0] > max_load and time.time() - t0 < max_wait_s:
        print(f"  load {la[0]:.2f} > {max_load}: waiting {poll_s:.0f}s ...", flush=True)
        time.sleep(poll_s)
        la = load_average()
    return la


# ----------------------------------------------------------------------- timing
class Timers:
    """Accumulates exclusive perf_counter time per component for the current episode
    (time spent in a nested timed call counts for the inner component only)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self._children: list[float] = []  # per open timed call: time of its timed children
        self.active: list[str] = []  # names of the open timed calls (innermost last)

    def wrap(self, name: str, fn: Callable) -> Callable:
        timers = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            timers._children.append(0.0)
            timers.active.append(name)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                timers.active.pop()
                child = timers._children.pop()
                timers.current[name] += dt - child
                if timers._children:
                    timers._children[-1] += dt

        return wrapper

    def pop(self) -> dict[str, float]:
        out = dict(self.current)
        self.current = defaultdict(float)
        return out


class PruneStats:
    """Rows of the critic evaluated by ``_BatchCritic.best_rows`` inside the actor loop."""

    def __init__(self) -> None:
        self.in_actor = False
        self.passes = 0
        self.proposer_rows = 0
        self.evaluated_rows = 0
        self.full_evals = 0

    def install(self) -> Callable[[], None]:
        cls = agent_mod._BatchCritic
        orig_best, orig_ref = cls.best_rows, cls._set_reference
        stats = self

        def best_rows(bc, actions, proposers):
            if not stats.in_actor:
                return orig_best(bc, actions, proposers)
            before = bc.n_evaluated
            out = orig_best(bc, actions, proposers)
            stats.passes += 1
            stats.proposer_rows += int(proposers.sum())
            stats.evaluated_rows += bc.n_evaluated - before
            return out

        def set_reference(bc, *a, **k):
            if stats.in_actor:
                stats.full_evals += 1
            return orig_ref(bc, *a, **k)

        cls.best_rows, cls._set_reference = best_rows, set_reference

        def restore() -> None:
            cls.best_rows, cls._set_reference = orig_best, orig_ref

        return restore


def instrument(trainer: Trainer, timers: Timers, prune: PruneStats) -> Callable[[], None]:
    """Wrap the methods of ``trainer``'s live objects with timers. Returns an undo function."""
    agent, env, replay = trainer.agent, trainer.env, trainer.agent.replay
    patched: list[tuple[Any, str]] = []

    def patch(obj: Any, attr: str, name: str, fn: Callable | None = None) -> None:
        fn = fn if fn is not None else getattr(obj, attr)
        setattr(obj, attr, timers.wrap(name, fn))
        patched.append((obj, attr))

    patch(agent, "act", "acting")
    patch(env, "step", "env")
    patch(agent, "remember", "replay_insert")  # one by one (fullnorm)
    patch(agent, "remember_many", "replay_insert")  # the episode's transitions in one call
    patch(replay, "sample", "replay_sample")
    patch(replay, "update_priorities", "replay_sample")
    patch(agent, "_update_critic", "critic_update")
    for attr in ("_update_actors_sequential", "_update_actors_simultaneous"):
        inner = getattr(agent, attr)

        def flagged(*a: Any, _inner: Callable = inner, **k: Any) -> Any:
            prune.in_actor = True
            try:
                return _inner(*a, **k)
            finally:
                prune.in_actor = False

        patch(agent, attr, "actor_updates", flagged)
    patch(agent, "update", "update_other")
    patch(trainer, "_observe", "tracking")
    # soft_update_ is a module-level function called by agent.update_on_batch
    orig_soft = agent_mod.soft_update_
    agent_mod.soft_update_ = timers.wrap("target_updates", orig_soft)
    restore_prune = prune.install()

    def undo() -> None:
        for obj, attr in patched:
            with contextlib.suppress(AttributeError):
                delattr(obj, attr)  # instance attribute shadows the class method
        agent_mod.soft_update_ = orig_soft
        restore_prune()

    return undo


def instrument_detail(trainer: Trainer, top: Timers, detail: Timers) -> Callable[[], None]:
    """Finer timers inside the components (``--detail``): the agent's helpers, keyed
    ``component/helper`` by the enclosing top-level component; exclusive times."""
    agent = trainer.agent
    undo: list[Callable[[], None]] = []

    def keyed(fn_name: str, fn: Callable) -> Callable:
        def named(*a: Any, **k: Any) -> Any:
            ctx = top.active[-1] if top.active else "-"
            return detail.wrap(f"{ctx}/{fn_name}", fn)(*a, **k)
        return named

    def patch_obj(obj: Any, attr: str, label: str) -> None:
        orig = getattr(obj, attr, None)
        if orig is None:  # not in this version of the agent
            return
        object.__setattr__(obj, attr, keyed(label, orig))
        undo.append(lambda: object.__delattr__(obj, attr))

    def patch_cls(cls: type, attr: str, label: str) -> None:
        orig = cls.__dict__.get(attr)
        if orig is None:
            return

        def method(self: Any, *a: Any, **k: Any) -> Any:
            return keyed(label, orig)(self, *a, **k)

        setattr(cls, attr, method)
        undo.append(lambda: setattr(cls, attr, orig))

    bc = agent_mod._BatchCritic
    for attr in ("__init__", "set_actions", "set_action_column", "best_rows", "_candidates", "_q_rows",
                 "_set_reference", "pre_rows"):
        patch_cls(bc, attr, f"BatchCritic.{attr}")
    patch_obj(agent, "_td_targets", "agent._td_targets")
    patch_obj(agent, "_actor_start", "agent._actor_start")
    patch_obj(agent, "master_select", "agent.master_select")
    for net, names in ((agent.critic, ("head_vjp", "q_pairs", "head")),
                       (agent.target_critic, ("head",)),
                       (agent.actors, ("forward_agent", "policy_forward_agent", "backward_agent",
                                       "forward_with_preact", "policy_forward")),
                       (agent.target_actors, ("forward",))):
        for n in names:
            patch_obj(net, n, f"{'target_' if net in (agent.target_critic, agent.target_actors) else ''}"
                              f"{type(net).__name__}.{n}")
    patch_obj(agent.actor_optim, "step_agent", "BatchedAdam.step_agent")
    patch_obj(agent.actor_optim, "step_all", "BatchedAdam.step_all")
    patch_obj(agent.critic_optim, "step", "critic Adam.step")
    patch_obj(agent.replay, "push", "replay.push")
    mon = trainer.monitor
    for n in ("observe_update", "log_row", "agent_rows"):
        patch_obj(mon, n, f"monitor.{n}")

    def restore() -> None:
        for f in reversed(undo):
            f()

    return restore


# ----------------------------------------------------------------------- config
def make_config(mode: str, actor_lr: float | None, preset: str | None, seed: int, episodes: int):
    overrides: dict[str, Any] = {
        "agent.actor_update": mode, "run.seed": seed, "run.episodes": max(1, episodes),
        "run.early_stop": False, "run.tracking": "clean",
    }
    if actor_lr is not None:
        overrides["agent.actor_lr"] = actor_lr
    presets = [preset] if preset and preset != "baseline" else None
    return load_config(presets=presets, overrides=overrides)


def summarize(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs)
    return {"n": len(xs), "mean": float(a.mean()), "median": float(np.median(a)),
            "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


# ----------------------------------------------------------------------- runs
def run_training(mode: str, episodes: int, warmup: int, actor_lr: float | None = None,
                 preset: str | None = None, seed: int = 42, prune_rows: bool = True,
                 breakdown: bool = True, verbose: bool = True, detail: bool = False) -> dict[str, Any]:
    """Train ``episodes`` episodes; statistics over those after ``warmup``."""
    cfg = make_config(mode, actor_lr, preset, seed, episodes)
    trainer = Trainer(cfg)
    trainer.agent.prune_rows = prune_rows
    timers, prune = Timers(), PruneStats()
    undo = instrument(trainer, timers, prune) if breakdown else (lambda: None)
    dtimers = Timers()
    undo_detail = instrument_detail(trainer, timers, dtimers) if (breakdown and detail) else (lambda: None)
    dcomps: dict[str, float] = defaultdict(float)
    totals: list[float] = []
    comps: dict[str, list[float]] = defaultdict(list)
    prune_totals = {"passes": 0, "proposer_rows": 0, "evaluated_rows": 0, "full_evals": 0, "updates": 0}
    la_start = load_average()
    cpu0 = None
    try:
        for ep in range(episodes):
            if ep == warmup:
                cpu0 = cpu_snapshot()
            t0 = time.perf_counter()
            row = trainer.run_episode()
            dt = time.perf_counter() - t0
            per = timers.pop()
            dper = dtimers.pop()
            if ep < warmup:
                prune.passes = prune.proposer_rows = prune.evaluated_rows = prune.full_evals = 0
                continue
            totals.append(dt)
            for k, v in dper.items():
                dcomps[k] += v
            covered = sum(per.values())
            per["other"] = dt - covered
            for name, _ in COMPONENTS:
                comps[name].append(per.get(name, 0.0))
            prune_totals["updates"] += int(bool(row["updated"]))
            if verbose and (ep + 1) % 50 == 0:
                print(f"    episode {ep + 1}: {dt * 1e3:.1f} ms", flush=True)
        for k in ("passes", "proposer_rows", "evaluated_rows", "full_evals"):
            prune_totals[k] = getattr(prune, k)
    finally:
        undo_detail()
        undo()
    la_end = load_average()
    cpu = cpu_usage(cpu0) if cpu0 else {}
    mon = trainer.monitor
    out = {
        "mode": mode, "preset": preset or "baseline", "actor_lr": cfg.agent.actor_lr,
        "threads": torch.get_num_threads(), "prune_rows": prune_rows,
        "episodes": episodes, "warmup": warmup, "seconds_per_episode": summarize(totals),
        "components_mean_s": {k: float(np.mean(v)) for k, v in comps.items()} if totals else {},
        "load_avg_start": la_start, "load_avg_end": la_end, "cpu_during": cpu,
        "final_saturation_ratio": mon.last_saturation_ratio,
        "max_abs_preactivation": mon.max_abs_preactivation,
        "actors_stopped": mon.n_stopped,
    }
    if dcomps and totals:
        out["detail_mean_s"] = {k: v / len(totals) for k, v in sorted(dcomps.items(), key=lambda kv: -kv[1])}
    u = max(1, prune_totals["updates"])
    if breakdown and prune_totals["passes"]:
        out["rows"] = {
            "updates": prune_totals["updates"],
            "passes_per_update": prune_totals["passes"] / u,
            "all_rows_per_pass": cfg.agent.batch_size * cfg.env.n_agents,
            "proposer_rows_per_pass": prune_totals["proposer_rows"] / prune_totals["passes"],
            "evaluated_rows_per_pass": prune_totals["evaluated_rows"] / prune_totals["passes"],
            "full_evaluations_per_update": prune_totals["full_evals"] / u,
        }
    return out


def profile_matmul(mode: str, episodes: int, warmup: int, actor_lr: float | None, seed: int = 42,
                   prune_rows: bool = True, top: int = 12) -> dict[str, Any]:
    """CPU-time share of matmul-type ops over ``episodes`` profiled episodes."""
    from torch.profiler import ProfilerActivity, profile

    cfg = make_config(mode, actor_lr, None, seed, warmup + episodes)
    trainer = Trainer(cfg)
    trainer.agent.prune_rows = prune_rows
    for _ in range(warmup):
        trainer.run_episode()
    la_start = load_average()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(episodes):
            trainer.run_episode()
    wall_prof = time.perf_counter() - t0
    # Unprofiled wall time of as many further episodes (profiling adds per-op overhead).
    t0 = time.perf_counter()
    for _ in range(episodes):
        trainer.run_episode()
    wall_plain = time.perf_counter() - t0
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events)  # microseconds
    mm_self = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    n_calls = sum(e.count for e in events if e.key.startswith("aten::"))
    return {
        "mode": mode, "actor_lr": cfg.agent.actor_lr, "threads": torch.get_num_threads(),
        "profiled_episodes": episodes, "load_avg_start": la_start, "load_avg_end": load_average(),
        "ops_self_cpu_s": total_self / 1e6, "matmul_self_cpu_s": mm_self / 1e6,
        "matmul_share_of_op_time": mm_self / total_self if total_self else float("nan"),
        "wall_s_profiled": wall_prof, "wall_s_unprofiled": wall_plain,
        "matmul_share_of_unprofiled_wall": (mm_self / 1e6) / wall_plain if wall_plain else float("nan"),
        "aten_calls_per_episode": n_calls / episodes,
        "top_ops": [{"op": e.key, "self_cpu_ms_per_episode": e.self_cpu_time_total / 1e3 / episodes,
                     "calls_per_episode": e.count / episodes,
                     "share": e.self_cpu_time_total / total_self} for e in ops],
    }


def floor_time(rows: int, passes: int = 50, hidden: tuple[int, int] = (512, 128), repeats: int = 30) -> float:
    """Seconds for ``passes`` forward passes of the 512 -> 128 layer (+ ReLU) over ``rows`` rows
    (preallocated output, as the agent's hot loop does); median over ``repeats``."""
    rows = max(1, int(round(rows)))
    g = torch.Generator().manual_seed(0)
    h = torch.rand(rows, hidden[0], generator=g)
    lin = torch.nn.Linear(*hidden)
    w_t, b = lin.weight.detach().t(), lin.bias.detach()
    out = torch.empty(rows, hidden[1])
    times = []
    for r in range(repeats + 3):
        t0 = time.perf_counter()
        for _ in range(passes):
            torch.addmm(b, h, w_t, out=out).relu_()
        if r >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_reference(updates: int, mode: str = "sequential", seed: int = 42, fill_episodes: int = 10) -> dict[str, Any]:
    """The plain per-agent implementation (tests/reference.py) on real replay batches."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference import ReferenceCCM  # noqa: E402

    cfg = make_config(mode, None, None, seed, fill_episodes)
    trainer = Trainer(cfg)
    for _ in range(fill_episodes):
        trainer.run_episode()
    ref = ReferenceCCM(trainer.agent)
    times = []
    la_start = load_average()
    for _ in range(updates):
        batch = trainer.agent.replay.sample(trainer.agent.batch_size)
        t0 = time.perf_counter()
        ref.update(batch)
        times.append(time.perf_counter() - t0)
    return {"mode": mode, "threads": torch.get_num_threads(), "updates": updates,
            "seconds_per_update": summarize(times), "load_avg_start": la_start, "load_avg_end": load_average()}


# ----------------------------------------------------------------------- report
def print_training(res: dict[str, Any]) -> None:
    s = res["seconds_per_episode"]
    print(f"  {res['mode']:<12} preset={res['preset']} actor_lr={res['actor_lr']:g} threads={res['threads']} "
          f"prune={res['prune_rows']}: mean {s['mean'] * 1e3:.1f} ms, median {s['median'] * 1e3:.1f} ms "
          f"(p10 {s['p10'] * 1e3:.1f}, p90 {s['p90'] * 1e3:.1f}; n={s['n']}); "
          f"load {res['load_avg_start'][0]:.2f} -> {res['load_avg_end'][0]:.2f}")
    if res.get("cpu_during"):
        c = res["cpu_during"]
        print(f"      CPU while measuring (cores of {os.cpu_count()}): this process {c['own_cores']:.2f}, "
              f"other processes {c['other_cores']:.2f}, hypervisor steal {c['steal_cores']:.2f}")
    comps = res.get("components_mean_s") or {}
    if comps:
        total = s["mean"]
        for name, desc in COMPONENTS:
            v = comps.get(name, 0.0)
            print(f"      {name:<15} {v * 1e3:8.2f} ms  {100 * v / total:5.1f}%   {desc}")
    for k, v in (res.get("detail_mean_s") or {}).items():
        if v * 1e3 >= 0.05:
            print(f"        detail {k:<52} {v * 1e3:8.2f} ms")
    if "rows" in res:
        r = res["rows"]
        print(f"      rows/pass: all {r['all_rows_per_pass']}, proposers {r['proposer_rows_per_pass']:.0f}, "
              f"evaluated {r['evaluated_rows_per_pass']:.0f}; passes/update {r['passes_per_update']:.0f}, "
              f"full evaluations/update {r['full_evaluations_per_update']:.1f}")
    print(f"      end state: saturation ratio {res['final_saturation_ratio']}, max|z| "
          f"{res['max_abs_preactivation']:.3g}, actors stopped {res['actors_stopped']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["sequential", "simultaneous", "both"], default="both")
    p.add_argument("--episodes", type=int, default=150, help="episodes per run, warm-up included")
    p.add_argument("--warmup", type=int, default=30, help="first episodes excluded from the statistics")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch intra-op threads (one run each)")
    p.add_argument("--actor-lr", type=float, nargs="+", default=[None], help="actor learning rate(s); default: config")
    p.add_argument("--preset", default=None, help="a preset name (`gradasym presets`; default: baseline)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--detail", action="store_true",
                   help="also time the agent's helpers inside each component (small extra overhead)")
    p.add_argument("--no-prune", action="store_true", help="also run sequential mode with agent.prune_rows = False")
    p.add_argument("--profile-episodes", type=int, default=20, help="episodes under torch.profiler (0: skip)")
    p.add_argument("--reference-updates", type=int, default=0, help="updates of tests/reference.py (0: skip)")
    p.add_argument("--wait-load", type=float, default=0.0,
                   help="before each measurement, wait (up to --max-wait s) until the 1-min load average "
                        "is below this (0: don't)")
    p.add_argument("--max-wait", type=float, default=600.0)
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc as it is (gradasym run makes it keep freed memory; for A/B)")
    p.add_argument("--json", dest="json_out", default=None, help="write all results to this JSON file")
    args = p.parse_args(argv)

    modes = ["sequential", "simultaneous"] if args.mode == "both" else [args.mode]
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, torch {info['torch']}")
    results: dict[str, Any] = {"machine": info, "args": vars(args), "training": [], "profile": [],
                               "floor": [], "reference": []}
    if args.wait_load:
        la = wait_for_quiet(args.wait_load, args.max_wait)
        print(f"load average before measuring: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    # what `gradasym run` does before training (gradasym.process.configure_process)
    results["keep_freed_memory"] = keep_freed_memory() if not args.default_malloc else False
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n=== threads = {threads}")
        for lr in args.actor_lr:
            for mode in modes:
                for prune_rows in ([True, False] if (args.no_prune and mode == "sequential") else [True]):
                    if args.episodes <= args.warmup:
                        continue
                    if args.wait_load:
                        wait_for_quiet(args.wait_load, args.max_wait)
                    res = run_training(mode, args.episodes, args.warmup, lr, args.preset, args.seed, prune_rows,
                                       detail=args.detail)
                    results["training"].append(res)
                    print_training(res)
                    if mode == "sequential" and "rows" in res:
                        comp = res["components_mean_s"]["actor_updates"]
                        fl = {"threads": threads, "actor_lr": res["actor_lr"], "prune_rows": prune_rows,
                              "actor_updates_s": comp}
                        r = res["rows"]
                        for label, rows in (("all_rows", r["all_rows_per_pass"]),
                                            ("proposer_rows", r["proposer_rows_per_pass"]),
                                            ("evaluated_rows", r["evaluated_rows_per_pass"])):
                            t = floor_time(rows)
                            fl[label] = {"rows": rows, "floor_s": t, "ratio": comp / t}
                        results["floor"].append(fl)
                        print(f"      floor (50 x [rows x 512] @ [512 x 128] + ReLU): " + ", ".join(
                            f"{k} {fl[k]['rows']:.0f} rows {fl[k]['floor_s'] * 1e3:.2f} ms "
                            f"(actor updates / floor = {fl[k]['ratio']:.2f})"
                            for k in ("all_rows", "proposer_rows", "evaluated_rows")))
            if args.profile_episodes:
                for mode in modes:
                    if args.wait_load:
                        wait_for_quiet(args.wait_load, args.max_wait)
                    pr = profile_matmul(mode, args.profile_episodes, args.warmup, lr, args.seed)
                    results["profile"].append(pr)
                    print(f"  profile {mode} actor_lr={pr['actor_lr']:g}: matmul ops {pr['matmul_self_cpu_s'] / pr['profiled_episodes'] * 1e3:.2f} ms/episode = "
                          f"{100 * pr['matmul_share_of_op_time']:.1f}% of op self-CPU time, "
                          f"{100 * pr['matmul_share_of_unprofiled_wall']:.1f}% of unprofiled wall time; "
                          f"{pr['aten_calls_per_episode']:.0f} aten calls/episode; "
                          f"load {pr['load_avg_start'][0]:.2f} -> {pr['load_avg_end'][0]:.2f}")
                    for op in pr["top_ops"][:8]:
                        print(f"      {op['op']:<28} {op['self_cpu_ms_per_episode']:8.2f} ms/ep "
                              f"{100 * op['share']:5.1f}%  {op['calls_per_episode']:7.0f} calls/ep")
        if args.reference_updates:
            for mode in modes:
                if args.wait_load:
                    wait_for_quiet(args.wait_load, args.max_wait)
                ref = run_reference(args.reference_updates, mode, args.seed)
                results["reference"].append(ref)
                s = ref["seconds_per_update"]
                print(f"  plain per-agent implementation (tests/reference.py), {mode}: "
                      f"{s['mean']:.2f} s per update (median {s['median']:.2f}, n={s['n']}); "
                      f"load {ref['load_avg_start'][0]:.2f} -> {ref['load_avg_end'][0]:.2f}")
    return finish(results, args.json_out)


if __name__ == "__main__":
    main()
