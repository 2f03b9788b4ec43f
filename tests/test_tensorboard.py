"""--tensorboard: every episode and tracking metric as TensorBoard scalars, no step lost or doubled on resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from gradasym.cli import main  # noqa: E402
from gradasym.config import ConfigError, load_config  # noqa: E402
from gradasym.algos.ccm_madrl.runner import run_experiment  # noqa: E402

TINY = {"env.n_agents": 12, "env.k_channel": 4, "env.n_units": 3, "agent.batch_size": 8,
        "run.log_interval": 2, "run.checkpoint_interval": 4, "run.tensorboard": True}


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def check_against_tables(run_dir: Path, board: dict[str, list[tuple[int, float]]]) -> None:
    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    tracking = pd.read_parquet(run_dir / "tracking.parquet")
    assert [s for s, _ in board["episode/reward"]] == list(episodes["episode"])  # every step once, in order
    assert [v for _, v in board["episode/reward"]] == pytest.approx(list(episodes["reward"]), rel=1e-6)
    trained = episodes[episodes["updated"]]
    assert [s for s, _ in board["episode/critic_loss"]] == list(trained["episode"])  # no NaN of untrained ones
    assert [v for _, v in board["episode/actors_frozen"]] == list(episodes["actors_frozen"].astype(float))
    for column in tracking.columns.drop(["episode", "eval_reward"]):
        tag = f"tracking/{column}"
        assert [s for s, _ in board[tag]] == list(tracking["episode"]), tag
        assert [v for _, v in board[tag]] == pytest.approx(list(tracking[column].astype(float)), rel=1e-5,
                                                           nan_ok=True), tag


def test_cli_run_writes_every_metric_as_scalars(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["run", "--episodes", "8", "--tensorboard", "--out", str(out), "--quiet"]
    for key, value in TINY.items():
        if key != "run.tensorboard":
            argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    board = scalars(out)
    assert {"episode/reward", "episode/epsilon", "episode/actors_stopped", "tracking/rho",
            "tracking/actor_grad_norm_l0", "tracking/critic_grad_norm_l2", "tracking/saturation_ratio",
            "tracking/saturation_dim0", "tracking/preact_max_abs"} <= set(board)
    assert "episode/eval_reward" not in board  # never evaluated: nothing invented
    check_against_tables(out, board)


def test_resume_after_a_crash_neither_doubles_nor_loses_steps(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(overrides={**TINY, "run.episodes": 10, "run.keep_replay": True})  # extended below

    def crash(info: dict) -> None:
        if info["episode"] == 6:  # the last checkpoint holds 4 episodes, the event file 6
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(cfg, out, progress=crash)
    assert [s for s, _ in scalars(out)["episode/reward"]] == [1, 2, 3, 4, 5, 6]
    run_experiment(cfg, out, resume=True)
    board = scalars(out)
    check_against_tables(out, board)
    assert [s for s, _ in board["episode/reward"]] == list(range(1, 11))
    # extending a finished run continues after its last step
    more = load_config(overrides={**TINY, "run.episodes": 12, "run.keep_replay": True})
    run_experiment(more, out, resume=True)
    board = scalars(out)
    check_against_tables(out, board)
    assert [s for s, _ in board["episode/reward"]] == list(range(1, 13))


def test_turning_it_on_for_a_resumed_run_writes_the_whole_history(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment(load_config(overrides={**TINY, "run.tensorboard": False, "run.episodes": 4, "run.keep_replay": True}), out)
    assert not (out / "tensorboard").exists()
    run_experiment(load_config(overrides={**TINY, "run.episodes": 6}), out, resume=True)
    check_against_tables(out, scalars(out))


def test_missing_extra_is_a_clear_error_before_anything_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"gradasym\[tensorboard\]"):
        run_experiment(load_config(overrides={**TINY, "run.episodes": 2}), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert main(["run", "--tensorboard", "--episodes", "2", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "tensorboard" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_sweep_flag_gives_every_run_its_scalars(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--out", str(out), "--actor-lr", "0.1", "--critic-lr", "0.1", "--seeds", "1", "2",
            "--episodes", "4", "--tensorboard", "--no-live"]
    for key, value in TINY.items():
        if key != "run.tensorboard":
            argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    runs = sorted((out / "runs").iterdir())
    assert [r.name for r in runs] == ["alr0.1_clr0.1_s1", "alr0.1_clr0.1_s2"]
    for run_dir in runs:
        check_against_tables(run_dir, scalars(run_dir))
