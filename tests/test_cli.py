"""The command line: flags reach the config, bad input fails fast and clearly."""

from __future__ import annotations

import json

import pytest

from gradasym.cli import build_parser, config_from_args, main


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_run_flags_map_to_config_fields() -> None:
    args = parse("run", "--actor-lr", "0.1", "--critic-lr", "0.01", "--episodes", "7", "--seed", "3",
                 "--actor-update", "simultaneous", "--mode", "TOBM", "--n-agents", "20",
                 "--steps-per-episode", "5", "--log-interval", "2", "--no-early-stop",
                 "--preset", "layernorm", "--set", "agent.gamma=0.9")
    cfg = config_from_args(args)
    assert (cfg.agent.actor_lr, cfg.agent.critic_lr, cfg.run.episodes, cfg.run.seed) == (0.1, 0.01, 7, 3)
    assert cfg.agent.actor_update == "simultaneous" and cfg.env.mode == "TOBM" and cfg.env.n_agents == 20
    assert cfg.env.steps_per_episode == 5 and cfg.run.log_interval == 2 and cfg.run.early_stop is False
    assert cfg.presets == ["layernorm"] and cfg.agent.gamma == 0.9


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--actor-lr", "-1"], "agent.actor_lr"),
        (["run", "--preset", "unknown-thing"], "unknown preset"),
        (["run", "--n-agents", "3"], "constraint"),
        (["run", "--actor-update", "parallel"], "actor_update"),
        (["run", "--set", "agent.gamma"], "SECTION.FIELD=VALUE"),
        (["run", "--seed", "-1"], "run.seed must be an integer"),
        (["run", "--batch-size", "20000"], "larger than agent.memory_capacity"),
        (["run", "--n-agents", "10000000"], "GiB of memory is available"),  # ~17 TB
    ],
)
def test_bad_input_is_a_clear_error_before_work(tmp_path, capsys, argv, message) -> None:
    rc = main([*argv, "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("gradasym: error: ") and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing started


def test_run_command_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(["run", "--episodes", "6", "--n-agents", "12", "--batch-size", "8", "--log-interval", "2",
               "--set", "env.k_channel=4", "--set", "env.n_units=3", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes_run"] == 6 and summary["status"] == "finished"
    assert '"status": "finished"' in capsys.readouterr().out


def test_presets_command_lists_descriptions(capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "layernorm" in out and "LayerNorm" in out
