"""The compiled engine against the torch engine: faithful seconds per episode (issue 19, item 4).

Two :class:`~gradasym.algos.ccm_madrl.runner.Trainer` objects of the same configuration (the
paper's sizes, N = 50, B = 64, faithful sequential update, tracking on), one with
``run.engine = "torch"`` and one with ``"compiled"``, run their episodes *interleaved* in one
process (torch episode k, compiled episode k, torch episode k+1, ...), so both see the same
machine load; the result is reported as a ratio. Each episode is the real loop
(``Trainer.run_episode``: 10 acting steps, the batched insertion, one update, the monitor).

Per-component time is measured by wrapping methods of the live objects with
``time.perf_counter`` timers (no library code is edited): acting (``agent.act``, master
selection included), environment step, insertion (``agent.remember_many``, priorities
included), sampling (``replay.sample`` + priority write-back), critic (critic update and
its target), actor passes (the N sequential passes and the actor targets), tracking
(``Trainer._observe``), rest.

The arithmetic floor: the multiply-adds the compiled update must do (dense products the
algorithm requires: the target and online critic rows, the rows evaluated in the actor
passes as counted by the kernel, the chosen rows' backward, the critic's backward) divided by
this core's float32 matrix-multiply rate (one thread, numpy's BLAS on 512 x 512 products).

``--gemm`` measures the product kernel alone (issue 19, item 4): ``kernels.gemm_acc`` against
a copy of the plain outer-product loop it replaced (one k per load and store of ``out``),
compiled with the kernels' flags, and numpy's BLAS (float32/float64, one thread), at the
engine's shapes, in rounds that alternate the three so they share the machine's load; rates
are multiply-adds per second of the process's CPU time (``time.process_time``), the ratio is
the median of the per-round ratios. The new kernel's results are checked to be bitwise the
loop's before timing.

``--startup`` also measures the start-up: a fresh process importing gradasym and running two
tiny compiled updates, first with an empty numba cache (the compile) and then twice again
(cached), CPU time per part, and numba's share of a cached start (importing numba and the
kernels, plus the first update's excess over the second).

Example::

    python benchmarks/bench_compiled.py --episodes 8 --actor-lr 1e-4 0.1 --startup --json out.json
    python benchmarks/bench_compiled.py --gemm-only --json gemm.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread everywhere (numpy's BLAS for the floor)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gradasym.algos.ccm_madrl.runner import Trainer  # noqa: E402
from gradasym.config import load_config  # noqa: E402
from gradasym.io import write_json  # noqa: E402

COMPONENTS = ["acting", "env", "insertion", "sampling", "critic", "actor passes", "tracking", "rest"]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Timers:
    """Accumulating ``perf_counter`` timers around methods of live objects."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.depth = 0

    def wrap(self, obj: Any, name: str, component: str) -> None:
        fn = getattr(obj, name)

        @functools.wraps(fn)
        def timed(*args, **kw):
            if self.depth:  # nested in a timed call: counted there
                return fn(*args, **kw)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.total[component] += time.perf_counter() - t0
                self.depth -= 1

        setattr(obj, name, timed)


def instrument(trainer: Trainer) -> Timers:
    t = Timers()
    agent = trainer.agent
    t.wrap(agent, "act", "acting")
    t.wrap(trainer.env, "step", "env")
    t.wrap(agent, "remember_many", "insertion")
    t.wrap(agent.replay, "sample", "sampling")
    t.wrap(agent.replay, "update_priorities", "sampling")
    t.wrap(trainer, "_observe", "tracking")
    if agent._engine is not None:
        eng = agent._engine
        t.wrap(eng, "_critic_step", "critic")
        t.wrap(eng, "_actor_step", "actor passes")
    else:
        t.wrap(agent, "_update_critic", "critic")
        t.wrap(agent, "_update_actors_sequential", "actor passes")
    return t


def matmul_rate() -> float:
    """Multiply-adds per second of one core (float32, numpy's BLAS, 512 x 512 products)."""
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    b = a.copy()
    a @ b
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 512**3 / best


def floor_macs(agent: Any, rows_evaluated: int) -> float:
    """Multiply-adds of one compiled update that the algorithm requires (see the module docstring)."""
    cfg = agent.cfg
    n, bsz = agent.n_agents, agent.batch_size
    h1, h2 = cfg.critic_hidden
    a1, a2 = cfg.actor_hidden
    jd = n * 10
    row = 10 * h1 + h1 * h2 + h2  # own part + head of one critic row
    actors = n * bsz * (7 * a1 + a1 * a2 + a2 * 3)
    proposers = 0.5 * n * bsz  # the target critic's proposer rows (about half propose)
    terms = bsz * agent.constraint * 0.5
    critic = (actors + 2 * bsz * h1 * jd + proposers * row  # targets: target actors, both shared parts
              + terms * row + terms * (2 * h1 * h2) + bsz * h1 * jd)  # terms forward, backward, dW0
    passes = rows_evaluated * row + n * bsz * (h1 * h2 + 3 * h1 + 3 * a1 * a2 * 2)  # rows, chosen-row backward
    return critic + passes + actors


def bench(actor_lr: float, episodes: int, warmup: int) -> dict[str, Any]:
    trainers, timers, per_episode = {}, {}, {}
    for engine in ("torch", "compiled"):
        cfg = load_config(overrides={"agent.actor_lr": actor_lr, "run.engine": engine, "run.seed": 1})
        trainers[engine] = Trainer(cfg)
        per_episode[engine] = []
    rows = []
    load_before = load()
    for k in range(warmup + episodes):
        for engine, trainer in trainers.items():
            if k == warmup:
                timers[engine] = instrument(trainer)
            t0 = time.perf_counter()
            trainer.run_episode()
            dt = time.perf_counter() - t0
            if k >= warmup:
                per_episode[engine].append(dt)
                if engine == "compiled" and trainer.agent._engine is not None and hasattr(trainer.agent._engine,
                                                                                            "rows_evaluated"):
                    rows.append(trainer.agent._engine.rows_evaluated)
    out: dict[str, Any] = {"actor_lr": actor_lr, "episodes": episodes, "load_before": load_before,
                           "load_after": load()}
    for engine in trainers:
        times = per_episode[engine]
        comp = {c: timers[engine].total.get(c, 0.0) / episodes for c in COMPONENTS[:-1]}
        comp["rest"] = max(0.0, statistics.mean(times) - sum(comp.values()))
        out[engine] = {"mean_s": statistics.mean(times), "median_s": statistics.median(times),
                       "components_s": comp}
    out["ratio_median"] = out["torch"]["median_s"] / out["compiled"]["median_s"]
    out["ratio_mean"] = out["torch"]["mean_s"] / out["compiled"]["mean_s"]
    rate = matmul_rate()
    macs = floor_macs(trainers["compiled"].agent, int(statistics.mean(rows)) if rows else 0)
    out["floor"] = {"rows_evaluated_per_update": statistics.mean(rows) if rows else None, "macs": macs,
                    "matmul_rate_macs_per_s": rate, "floor_update_s": macs / rate}
    return out


#: (name, rows m, K, C, post-ReLU a) of the engine's products at the paper's sizes (N = 50, B = 64)
GEMM_SHAPES = [
    ("shared part of layer 0 (B x N*(S+A) by N*(S+A) x H1)", 64, 500, 512, False),
    ("head rows of an actor pass (rows x H1 by H1 x H2)", 180, 512, 128, True),
    ("chosen rows' backward (B x H2 by H2 x H1)", 64, 128, 512, True),
]


def gemm(rounds: int) -> dict[str, Any]:
    """Multiply-adds per CPU second of ``kernels.gemm_acc``, the plain loop and numpy's BLAS."""
    import numba as nb  # noqa: PLC0415

    from gradasym.algos.ccm_madrl.compiled import kernels  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reference import gemm_acc_loop  # noqa: PLC0415  (the plain old loop, shared with the bitwise test)

    loop = nb.njit(fastmath=kernels.FASTMATH, nogil=True, error_model="numpy")(gemm_acc_loop)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for dtype in (np.float32, np.float64):
        for name, m, kdim, ncol, relu in GEMM_SHAPES:
            a = rng.standard_normal((m, kdim))
            if relu:
                a = np.maximum(a, 0)
            a = a.astype(dtype)
            w = (rng.standard_normal((kdim, ncol)) / np.sqrt(kdim)).astype(dtype)
            base = rng.standard_normal((m, ncol)).astype(dtype)
            res_new, res_old = base.copy(), base.copy()
            kernels.gemm_acc(a, w, res_new, m)
            loop(a, w, res_old, m)
            if not np.array_equal(res_new.view(np.uint8), res_old.view(np.uint8)):
                raise SystemExit(f"gemm_acc differs from the plain loop at {name}, {np.dtype(dtype).name}")
            reps = max(1, int(2e8 // (m * kdim * ncol)))
            macs = m * kdim * ncol * reps
            kern = {"new": lambda: kernels.gemm_acc(a, w, res_new, m), "loop": lambda: loop(a, w, res_old, m),
                    "blas": lambda: np.matmul(a, w, out=res_new)}
            rates: dict[str, list[float]] = {k: [] for k in kern}
            for _ in range(rounds):
                for key, fn in kern.items():
                    c0 = time.process_time()
                    for _ in range(reps):
                        fn()
                    rates[key].append(macs / (time.process_time() - c0))
            ratio = statistics.median(n / o for n, o in zip(rates["new"], rates["loop"]))
            entry = {k: statistics.median(v) for k, v in rates.items()}
            entry.update({"m": m, "k": kdim, "c": ncol, "post_relu": relu, "ratio_new_over_loop": ratio,
                          "rounds": rates})
            out[f"{np.dtype(dtype).name} {name}"] = entry
            print(f"gemm {np.dtype(dtype).name} {name} ({m} x {kdim} by {kdim} x {ncol}): new "
                  f"{entry['new'] / 1e9:.1f}, loop {entry['loop'] / 1e9:.1f}, BLAS {entry['blas'] / 1e9:.1f} "
                  f"G multiply-adds/CPU s; new/loop {ratio:.2f}x", flush=True)
    return out


STARTUP = """
import json, time
laps, t0, c0 = {{}}, time.perf_counter(), time.process_time()
def lap(name):
    global t0, c0
    laps[name] = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
import numpy as np, torch
from gradasym.algos.ccm_madrl.agent import CCMMADRL
from gradasym.config import Config
import sys; sys.path.insert(0, {tests!r})
from reference import make_batch
lap("imports")
from gradasym.algos.ccm_madrl.compiled import prepare_numba
prepare_numba()
import numba
from gradasym.algos.ccm_madrl.compiled import engine, kernels
lap("numba_import")
cfg = Config(); cfg.env.n_agents = 4; cfg.env.k_channel = 2; cfg.agent.batch_size = 8
agent = CCMMADRL(cfg, seed=0, engine="compiled")
lap("agent")
agent.update_on_batch(make_batch(np.random.default_rng(0), 4, 8, dtype=torch.float32))
lap("first_update")
agent.update_on_batch(make_batch(np.random.default_rng(1), 4, 8, dtype=torch.float32))
lap("second_update")
print(json.dumps(laps))
"""

#: what a cached start costs because of numba: importing numba and the kernel modules, and
#: the first update's excess over the second (numba's typing registries, loading the cached
#: kernels into LLVM's JIT); the rest (torch, gradasym, the agent's torch networks) is the same
#: for the torch engine.
NUMBA_PARTS = ("numba_import", "first_update")


def startup() -> dict[str, float]:
    """Seconds of a fresh process (imports, numba, the agent, one tiny float32 update, a second
    one): empty cache, then cached twice; wall time and the process's CPU time (the honest number
    on a shared machine), per part, and numba's share of the cached start (:data:`NUMBA_PARTS`
    minus the second update)."""
    code = STARTUP.format(tests=str(Path(__file__).resolve().parents[1] / "tests"))
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("cold", "cached", "cached_again"):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            laps = json.loads(res.stdout.strip().splitlines()[-1])
            out[f"{name}_process_wall_s"] = time.perf_counter() - t0
            out[f"{name}_cpu_s"] = sum(c for _, c in laps.values())
            for part, (wall, cpu) in laps.items():
                out[f"{name}_{part}_cpu_s"] = cpu
                out[f"{name}_{part}_wall_s"] = wall
            if name != "cold":
                out[f"{name}_numba_share_cpu_s"] = (sum(laps[p][1] for p in NUMBA_PARTS) - laps["second_update"][1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=8, help="measured episodes per engine (default 8)")
    parser.add_argument("--warmup", type=int, default=3, help="episodes before measuring (default 3)")
    parser.add_argument("--actor-lr", type=float, nargs="+", default=[1e-4, 0.1])
    parser.add_argument("--startup", action="store_true", help="also measure the start-up (compile, cached)")
    parser.add_argument("--startup-only", action="store_true", help="measure only the start-up (no episodes)")
    parser.add_argument("--gemm", action="store_true", help="also microbenchmark the product kernel (gemm_acc)")
    parser.add_argument("--gemm-only", action="store_true", help="only the product kernel's microbenchmark")
    parser.add_argument("--gemm-rounds", type=int, default=7, help="alternating rounds of --gemm (default 7)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict[str, Any] = {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__}
    import numba  # noqa: PLC0415

    result["numba"] = numba.__version__
    if args.gemm or args.gemm_only:
        load_before = load()
        result["gemm"] = gemm(args.gemm_rounds)
        result["gemm"]["load_before_after"] = [load_before, load()]
    for lr in [] if args.startup_only or args.gemm_only else args.actor_lr:
        r = bench(lr, args.episodes, args.warmup)
        result[f"lr{lr:g}"] = r
        print(f"actor_lr {lr:g}: torch {r['torch']['median_s'] * 1e3:.1f} ms/episode, compiled "
              f"{r['compiled']['median_s'] * 1e3:.1f} ms/episode (median), ratio {r['ratio_median']:.2f}x "
              f"(means {r['ratio_mean']:.2f}x); load {r['load_before']} -> {r['load_after']}")
        for c in COMPONENTS:
            print(f"  {c:13s} torch {r['torch']['components_s'][c] * 1e3:8.1f} ms  compiled "
                  f"{r['compiled']['components_s'][c] * 1e3:8.1f} ms")
        f = r["floor"]
        print(f"  floor: {f['macs'] / 1e6:.0f} M multiply-adds per update at {f['matmul_rate_macs_per_s'] / 1e9:.1f} "
              f"G/s = {f['floor_update_s'] * 1e3:.1f} ms; rows evaluated in the passes {f['rows_evaluated_per_update']}")
    if args.startup or args.startup_only:
        load_start = os.getloadavg()[0]
        result["startup"] = startup()
        result["startup"]["load_before_after"] = [load_start, os.getloadavg()[0]]
        for k, v in result["startup"].items():
            print(f"start-up {k}: {v}")
    print(f"cpu: {result['cpu']}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
