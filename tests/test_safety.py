"""A results folder is data, and ordinary input gets a clear answer (issue 22, items 1 and 3).

* No code from data: every checkpoint load is ``torch.load(weights_only=True)``; a checkpoint
  whose unpickling would run code (here: write a file) is refused with one line, on
  ``gradasym run --resume`` and on the sweep driver's path; ``--preset`` takes only the shipped
  names; YAML alias bombs are refused before they are built.
* Ordinary input that was silent or unclear: ``--resume`` of a missing run, duplicated YAML/JSON
  keys, YAML 1.1 octal, a ``--log-interval`` longer than the run, contradicting monitor settings,
  thread counts above the cores, devices and FIFOs where files belong, huge grids and integers,
  and the monitor's own argument checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradasym import algos
from gradasym.cli import main
from gradasym.config import Config, ConfigError, load_config, read_config_file
from gradasym.io import NotRegularFileError, read_json
from gradasym.monitor import ActorCriticMonitor, HiddenActivationHook
from gradasym.runfolder import RunFolder, UnsafeCheckpointError, _torch_load, plain_state, restore_state
from gradasym.sweep.spec import MAX_SWEEP_RUNS, SweepSpec

TINY_RUN = ["--episodes", "2", "--n-agents", "12", "--batch-size", "8", "--set", "env.k_channel=4",
            "--set", "env.n_units=3", "--set", "agent.memory_capacity=500", "--quiet"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


class _WritesAFile:
    """Unpickling it writes ``path`` (what a crafted checkpoint could do with full pickle)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('code ran')",))


def _plant(path: Path, marker: Path, gradasym_like: bool = True) -> None:
    state = {"config": Config().to_dict(), "episodes_done": 1} if gradasym_like else {}
    state["payload"] = _WritesAFile(marker)
    torch.save(state, path)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("gradasym: warning:")]
    assert "Traceback" not in err and len(lines) == 1 and re.match(r"gradasym( sweep)?: error: ", lines[0]), err
    return lines[0]


# ------------------------------------------------------------------ item 1: no code from data
@pytest.mark.parametrize("gradasym_like", [True, False])
def test_planted_checkpoint_runs_no_code_on_resume(tmp_path, capsys, gradasym_like) -> None:
    out, marker = tmp_path / "run", tmp_path / "pwned"
    assert main(["run", "--out", str(out), *TINY_RUN]) == 0
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).unlink(missing_ok=True)
    _plant(out / "checkpoint.pt", marker, gradasym_like)
    capsys.readouterr()
    assert main(["run", "--resume", "--out", str(out), *TINY_RUN]) == 2
    err = _one_line_error(capsys)
    assert not marker.exists()  # nothing was executed
    assert "checkpoint.pt" in err and "not loaded" in err


def test_planted_checkpoint_alone_is_refused_without_running_it(tmp_path, capsys) -> None:
    """A folder holding only a crafted checkpoint (not a gradasym run's)."""
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    _plant(out / "checkpoint.pt", marker, gradasym_like=False)
    assert main(["run", "--resume", "--out", str(out), *TINY_RUN]) == 2
    assert "not loaded" in _one_line_error(capsys) and not marker.exists()


def test_planted_checkpoint_runs_no_code_in_the_sweep_driver(tmp_path, capsys) -> None:
    """A rerun sweep meets a run without summary whose checkpoint was planted: it resumes the run
    (the runner loads the checkpoint with weights_only=True), no code runs, the run fails in one line."""
    out, marker = tmp_path / "sweep", tmp_path / "pwned"
    argv = ["sweep", "--out", str(out), "--axis", "agent.actor_lr=0.1", "--axis", "agent.critic_lr=0.1",
            "--seeds", "1", "--no-live", *[a for a in TINY_RUN if a != "--quiet"]]
    assert main(argv) == 0
    (run,) = (out / "runs").iterdir()
    (run / "summary.json").unlink()
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).unlink(missing_ok=True)
    _plant(run / "checkpoint.pt", marker)
    capsys.readouterr()
    code = main(argv)
    assert not marker.exists()
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "not loaded" in (out / "summary.csv").read_text()  # the run's one-line error


def test_new_checkpoints_are_plain_data(tmp_path) -> None:
    """What a run saves loads with weights_only=True and no allow-list at all."""
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *TINY_RUN, "--set", "run.eval_interval=1", "--keep-replay"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["episodes_done"] == 2
    loaded, _ = RunFolder(out).load_checkpoint()
    assert isinstance(loaded["states"], np.ndarray) and loaded["states"].dtype == np.float64


def test_plain_state_round_trip_is_exact() -> None:
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3) / 3, "b": [np.float64(1) / 3, np.int64(-7)],
             "c": (np.bool_(True), 2, "x", None), "t": torch.ones(2)}
    back = restore_state(torch.load(_saved(plain_state(state)), weights_only=True))
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], state["a"])
    assert type(back["b"][0]) is np.float64 and back["b"][0] == state["b"][0] and type(back["b"][1]) is np.int64
    assert back["c"] == (True, 2, "x", None) and type(back["c"][0]) is np.bool_ and torch.equal(back["t"], state["t"])
    with pytest.raises(TypeError, match="checkpoint value .x is a object"):
        plain_state({"x": object()})


def _saved(obj) -> "io.BytesIO":
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_older_checkpoints_with_numpy_still_load_and_objects_do_not(tmp_path) -> None:
    old = tmp_path / "old.pt"
    torch.save({"config": {}, "states": np.ones((2, 7)), "x": np.float64(0.5)}, old)  # as gradasym <= 0.1 saved
    state = _torch_load(old)
    assert state["states"].shape == (2, 7) and state["x"] == 0.5
    torch.save({"config": {}, "x": np.array([object()], dtype=object)}, old)
    with pytest.raises(UnsafeCheckpointError, match="not loaded"):
        _torch_load(old)


def test_only_shipped_presets_are_read(tmp_path, capsys) -> None:
    evil = tmp_path / "x" / "evil.toml"
    evil.parent.mkdir()
    evil.write_text('[agent]\nactor_lr = 0.5\n')
    rel = os.path.relpath(evil.with_suffix(""), Path(__file__).resolve().parents[1] / "src/gradasym/presets")
    for name in (rel, str(evil)):
        with pytest.raises(ConfigError, match="is a path; --preset takes only the names .* --config"):
            load_config(presets=[name])
    assert main(["run", "--preset", rel, "--out", str(tmp_path / "r"), *TINY_RUN]) == 2
    assert "--config" in _one_line_error(capsys) and not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config(presets=["nope"])


def test_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")  # 9**9 values
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        read_config_file(f)
    assert time.perf_counter() - t0 < 10
    f.write_text("base: &b {gamma: 0.9}\nagent:\n  <<: *b\n  batch_size: 32\n")  # ordinary aliases still work
    assert read_config_file(f)["agent"] == {"gamma": 0.9, "batch_size": 32}


# ------------------------------------------------------------------ item 3: ordinary input
def test_resume_of_a_missing_run_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "missing"
    assert main(["run", "--resume", "--out", str(out), *TINY_RUN]) == 2
    assert "holds no run to resume" in _one_line_error(capsys) and not out.exists()


@pytest.mark.parametrize("name, text, message", [
    ("c.yaml", "run:\n  seed: 1\nrun:\n  episodes: 3\n", "key 'run' is given twice"),
    ("c.yaml", "run:\n  seed: 1\n  seed: 2\n", "key 'seed' is given twice"),
    ("c.json", '{"run": {"seed": 1}, "run": {"episodes": 3}}', "key 'run' is given twice"),
    ("c.yaml", "run:\n  seed: 017\n", "leading 0, which YAML 1.1 reads as an octal number \\(15\\)"),
    ("c.yaml", "run:\n  seed: 1:30\n", "base-60"),
])
def test_yaml_surprises_are_refused(tmp_path, name, text, message) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_plain_yaml_numbers_still_read(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("run:\n  seed: 17\n  episodes: 0x10\n  log_interval: 1_0\nagent:\n  gamma: 0.5\n")
    cfg = load_config(f)
    assert (cfg.run.seed, cfg.run.episodes, cfg.run.log_interval, cfg.agent.gamma) == (17, 16, 10, 0.5)


def test_log_interval_longer_than_the_run_warns(tmp_path, capsys) -> None:
    assert main(["run", "--out", str(tmp_path / "r"), *TINY_RUN, "--log-interval", "5"]) == 0
    assert "run.log_interval = 5 is more than run.episodes = 2: the run writes no tracking rows" in \
        capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "r2"), *TINY_RUN, "--log-interval", "2"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_monitor_callback_refuses_settings_its_monitor_contradicts() -> None:
    sb3 = pytest.importorskip("gradasym.integrations.sb3")
    with pytest.raises(ValueError, match="squash='softsign' conflicts with the given monitor's squash='tanh'"):
        sb3.SaturationMonitorCallback(monitor=ActorCriticMonitor(), squash="softsign")
    with pytest.raises(ValueError, match="saturation_threshold"):
        sb3.SaturationMonitorCallback(monitor=ActorCriticMonitor(), saturation_threshold=0.5)
    sb3.SaturationMonitorCallback(monitor=ActorCriticMonitor(squash="softsign"), squash="softsign")  # agrees


def test_hidden_activation_hook_refuses_non_module_types() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    for bad in (int, (int,), (), "ReLU"):
        with pytest.raises(TypeError, match="types= expects an nn.Module class"):
            HiddenActivationHook(net, types=bad)
    assert len(HiddenActivationHook(net, types=nn.ReLU).layers) == 1


def test_threads_above_the_cores_are_refused(tmp_path, capsys) -> None:
    assert main(["run", "--threads", "100000", "--out", str(tmp_path / "r"), *TINY_RUN]) == 2
    assert "run.threads = 100000 is more than the" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_devices_and_fifos_are_not_read_as_files(tmp_path, capsys) -> None:
    assert main(["run", "--config", "/dev/null", "--out", str(tmp_path / "r"), *TINY_RUN]) == 2
    assert "/dev/null is not a regular file" in _one_line_error(capsys)
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError):
        read_json(fifo)


def test_fifo_as_summary_does_not_hang_a_resume(tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *TINY_RUN]) == 0
    (out / "summary.json").unlink()
    os.mkfifo(out / "summary.json")
    proc = subprocess.run([sys.executable, "-m", "gradasym.cli", "run", "--resume", "--out", str(out), *TINY_RUN],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr
    assert "summary.json is unreadable; it is rewritten" in proc.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_huge_grids_are_refused_before_expansion() -> None:
    spec = SweepSpec(base=Config(), axes={"agent.batch_size": list(range(1, 1001))}, seeds=list(range(1000)))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"the grid has 1,000,000 runs .* more than a sweep takes \\({MAX_SWEEP_RUNS:,}\\)"):
        spec.expand()
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("command", [["run", *TINY_RUN], ["sweep", "--no-live"]])
def test_integers_beyond_int64_are_refused_before_work(tmp_path, capsys, command) -> None:
    out = tmp_path / "o"
    assert main([command[0], "--out", str(out), *command[1:], "--episodes", "1e23"]) == 2
    assert "run.episodes = 1e+23 is too large" in _one_line_error(capsys)
    assert not out.exists()  # no sweep.json left behind


# ------------------------------------------------------------------ item 3: the monitor's inputs
def _monitor_with_one_update() -> tuple[ActorCriticMonitor, dict, dict]:
    m = ActorCriticMonitor(n_agents=2)
    grads, params = {"l0.weight": torch.randn(2, 3, 4)}, {"l0.weight": torch.randn(2, 3, 4)}
    m.observe_params(params)
    m.observe_update(1, grads, None, params)
    return m, grads, params


def _same_state(a: dict, b: dict) -> bool:
    return repr(a) == repr(b)


def test_observe_update_refuses_a_step_beyond_int64_and_changes_nothing() -> None:
    m, grads, params = _monitor_with_one_update()
    before = m.state_dict()
    for step in (2**70, -2**63):
        with pytest.raises(ValueError, match="outside the int64 range"):
            m.observe_update(step, grads, None, {"l0.weight": params["l0.weight"] + 1})
    assert _same_state(m.state_dict(), before)


@pytest.mark.parametrize("make", [lambda: torch.randn(2, 3, 4).to_sparse(),
                                  lambda: torch.empty(2, 3, 4, device="meta")])
def test_sparse_and_meta_tensors_are_refused(make) -> None:
    m, grads, params = _monitor_with_one_update()
    before = m.state_dict()
    with pytest.raises(TypeError, match="expected dense tensors with data"):
        m.observe_update(2, {"l0.weight": make()}, None, params)
    with pytest.raises(TypeError, match="expected dense tensors with data"):
        m.observe_update(2, grads, None, {"l0.weight": make()})
    assert _same_state(m.state_dict(), before)


@pytest.mark.parametrize("key, value", [("actor_stop", [1, 2]), ("frozen", torch.zeros(3, dtype=torch.bool)),
                                        ("n_updates", "7"), ("prev_actor", [1.0]), ("max_abs", None),
                                        ("last_sat", None), ("actor_layers", "l0")])
def test_load_state_dict_names_the_bad_field(key, value) -> None:
    m, _, _ = _monitor_with_one_update()
    state = m.state_dict()
    state[key] = value
    fresh = ActorCriticMonitor(n_agents=2)
    before = fresh.state_dict()
    with pytest.raises(ValueError, match=f"field '{key}' must be"):
        fresh.load_state_dict(state)
    assert _same_state(fresh.state_dict(), before)


def test_layer_of_must_be_callable() -> None:
    with pytest.raises(TypeError, match="layer_of must be a function"):
        ActorCriticMonitor(layer_of=5)
    ActorCriticMonitor(layer_of=lambda key: key)
