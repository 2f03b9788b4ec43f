"""The Ray backend on a real two-node Ray cluster that loses a node in the middle of a sweep.

The test starts a head and a second node with ``ray start`` (on this machine only: addresses given
as 127.0.0.1, which Ray replaces by this host's own IP; one CPU each; in a temporary ``--temp-dir``;
with token authentication, so nothing else can join or drive the cluster: ``RAY_AUTH_MODE=token``
and a random ``RAY_AUTH_TOKEN`` in the environment of every process, as docs/sweeps.md describes), runs a tiny
CCM-MADRL sweep against it with the ``gradasym sweep`` command, kills every process of the second
node (SIGKILL) once its run has written a checkpoint, and checks that the sweep finishes by itself
(exit code 0) with bit for bit the results of an uninterrupted sweep, that the lost run was
retried on the head node after its lock was taken over, and that the surviving run's progress kept
arriving. Ray's processes are found through ``/proc`` (Linux) and killed by PID: never ``ray stop``,
which stops every Ray instance of the machine.

Needs the optional ``ray`` package (skipped otherwise); about a minute on two busy cores.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

pytest.importorskip("ray")
if not Path("/proc/self/stat").exists():  # pragma: no cover - finding Ray's processes needs /proc
    pytest.skip("needs Linux /proc to find and kill the cluster's processes", allow_module_level=True)

from gradasym.config import Config  # noqa: E402
from gradasym.sweep import SweepSpec, run_sweep  # noqa: E402

pytestmark = pytest.mark.ray
#: The ``ray`` command of this Python's environment.
_BESIDE = Path(sys.executable).with_name("ray")
RAY = str(_BESIDE) if _BESIDE.exists() else shutil.which("ray")
if RAY is None:  # pragma: no cover
    pytest.skip("no `ray` command next to this Python", allow_module_level=True)

EPISODES = 30
TABLES = ("episodes", "tracking", "tracking_agents")


# ------------------------------------------------------------------ processes
def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of this machine's processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (ppid, cmd)
    return found


def _with_descendants(roots: set[int]) -> set[int]:
    procs = _processes()
    found, grew = set(roots), True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found & (set(procs) | roots)


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A head and a second Ray node on this machine, in ``temp``; every process killed by PID."""

    def __init__(self, temp: Path) -> None:
        self.temp = temp
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
                    # A lost node is declared dead after ~3 s of missed health checks (default ~30 s).
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                    "RAY_health_check_failure_threshold": "3"}
        self.head: set[int] = set()
        self.node: set[int] = set()

    def _mine(self) -> set[int]:
        return {pid for pid, (_, cmd) in _processes().items() if str(self.temp) in cmd}

    def _ray_start(self, *args: str) -> None:
        cmd = [RAY, "start", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               "--disable-usage-stats", f"--temp-dir={self.temp}", *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        self._ray_start("--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--dashboard-port={_free_port()}", f"--ray-client-server-port={_free_port()}")
        self.head = self._mine()
        self._ray_start(f"--address={self.address}")
        self.node = self._mine() - self.head  # its raylet and log monitor; workers are the raylet's children

    def second_node_processes(self) -> set[int]:
        return _with_descendants(self.node)

    def kill_second_node(self) -> None:
        _kill(self.second_node_processes())

    def teardown(self) -> None:
        _kill(_with_descendants(self.head | self.node | self._mine()))


@pytest.fixture()
def cluster() -> Iterator[LocalCluster]:
    temp = Path(tempfile.mkdtemp(prefix="gr-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    c = LocalCluster(temp)
    try:
        c.start()
        yield c
    finally:
        c.teardown()
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------ the sweep
def _spec() -> SweepSpec:
    base = Config()
    base.run.episodes = EPISODES
    base.env.n_agents = 10
    base.run.checkpoint_interval = 5
    return SweepSpec(base=base, axes={"agent.actor_lr": [1e-3], "agent.critic_lr": [1e-3]}, seeds=[1, 2])


SWEEP_ARGS = ["--episodes", str(EPISODES), "--n-agents", "10", "--checkpoint-interval", "5", "--actor-lr", "0.001",
              "--critic-lr", "0.001", "--seeds", "1", "2", "--no-live"]


def _run_tables(out: Path) -> dict[tuple[str, str], pd.DataFrame]:
    return {(run.name, name): pd.read_parquet(run / f"{name}.parquet").drop(columns=["seconds"], errors="ignore")
            for run in sorted((out / "runs").iterdir()) for name in TABLES}


def _lock_pid(run: Path) -> int | None:
    try:
        return int(json.loads((run / ".run.lock").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def test_a_sweep_survives_losing_a_node(tmp_path: Path, cluster: LocalCluster) -> None:
    out = tmp_path / "s"
    env = {**cluster.env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", "gradasym.cli", "sweep", "--out", str(out), *SWEEP_ARGS,
                             "--backend", "ray", "--address", cluster.address],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        victim, deadline = None, time.monotonic() + 240
        while victim is None:  # a run of the second node that has checkpointed
            assert time.monotonic() < deadline and proc.poll() is None, "\n".join(t for _, t in lines)
            workers = cluster.second_node_processes()
            for run in out.glob("runs/*"):
                if _lock_pid(run) in workers and (run / "checkpoint.pt").exists():
                    victim = run.name
            time.sleep(0.1)
        cluster.kill_second_node()
        killed_at = time.monotonic()
        assert proc.wait(timeout=240) == 0, "\n".join(t for _, t in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    log = [t for _, t in lines]
    text = "\n".join(log)
    survivor = next(r for r in ("alr0.001_clr0.001_s1", "alr0.001_clr0.001_s2") if r != victim)

    # The lost run was retried on the head node (its lock taken over), the other's progress kept coming.
    assert f"{victim}: lost its worker on Ray node" in text and "retry 1 of 3" in text, text
    assert any(f"{victim}: took over the lock" in t and "its Ray node" in t and "is dead" in t for t in log), text
    assert sum(f"start    {victim} on Ray node" in t for t in log) == 2, text
    after = [t for when, t in lines if when > killed_at]
    assert any(f"progress {survivor}" in t or f"finished {survivor}" in t for t in after), text
    nodes = {json.loads((out / "runs" / r / "summary.json").read_text())["provenance"]["ray_node"]["id"]
             for r in (victim, survivor)}
    assert len(nodes) == 1  # both finished on the head node, and their summary.json say so

    # Bit for bit the results of an uninterrupted sweep.
    ref = tmp_path / "ref"
    reference = run_sweep(_spec(), ref, live=False, log=lambda s: None)
    table = pd.read_parquet(out / "summary.parquet")
    drop = ["run_dir", "seconds_total", "seconds_per_episode"]
    pd.testing.assert_frame_equal(table.drop(columns=drop), reference.drop(columns=drop))
    got, want = _run_tables(out), _run_tables(ref)
    assert got.keys() == want.keys()
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], check_exact=True, obj=str(key))
