"""The command line: flags reach the config, bad input fails fast and clearly."""

from __future__ import annotations

import json
import re

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
        (["run", "--freeze-tolerance", "nan"], "run.freeze_tolerance must be a finite number >= 0"),
        (["run", "--set", "agent.eps_decay=nan"], "agent.eps_decay must be a finite number > 0"),
        (["run", "--set", "agent.per_alpha=nan"], "agent.per_alpha must be a finite number >= 0"),
        (["run", "--set", "agent.output_init=-1"], "agent.output_init must be a finite number >= 0"),
        (["run", "--set", "agent.per_beta_increment=-5"], "agent.per_beta_increment must be a finite number >= 0"),
        (["run", "--preset", "squashed-gaussian", "--set", "agent.entropy_coef=nan"], "agent.entropy_coef"),
        (["run", "--seed", "9223372036854775808"], "got 9223372036854775808"),
    ],
)
def test_bad_input_is_a_clear_error_before_work(tmp_path, capsys, argv, message) -> None:
    rc = main([*argv, "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("gradasym: error: ") and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing started


def test_integer_flags_are_exact() -> None:
    """``--seed`` keeps every digit (no float on the way) and integer flags read like ``--set``."""
    cfg = config_from_args(parse("run", "--seed", "9223372036854775807", "--episodes", "1e3"))
    assert cfg.run.seed == 2**63 - 1 and cfg.run.episodes == 1000
    cfg = config_from_args(parse("run", "--set", "run.seed=9007199254740993"))
    assert cfg.run.seed == 9007199254740993


@pytest.mark.parametrize("value", ["1.5", "ten"])
def test_integer_flags_refuse_non_integers(capsys, value) -> None:
    with pytest.raises(SystemExit) as info:
        parse("run", "--episodes", value)
    assert info.value.code == 2
    assert f"argument --episodes: expected an integer, got '{value}'" in capsys.readouterr().err


def test_unreadable_config_files_are_one_line(tmp_path, capsys) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    folder = tmp_path / "somedir.toml"
    folder.mkdir()
    for path, message in ((binary, "not a text config file"), (folder, "is a directory, not a config file")):
        assert main(["run", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gradasym: error: ") and message in err and len(err.strip().splitlines()) == 1


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


def _subparsers(parser):
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


@pytest.mark.parametrize("command", ["", "run", "sweep", "reproduce", "report", "presets"])
def test_help_has_no_raw_restructuredtext(command) -> None:
    """`gradasym --help` shows the module docstring: ``code`` and :role:`x` markup are removed."""
    parser = build_parser()
    text = (_subparsers(parser)[command] if command else parser).format_help()
    assert "``" not in text and not re.search(r":(func|class|meth|mod|data):`", text), text
    if not command:
        assert "gradasym run        one training run" in text


@pytest.mark.parametrize("command", ["run", "sweep", "reproduce", "report", "presets"])
def test_every_option_states_its_default(command) -> None:
    import argparse

    parser = _subparsers(build_parser())[command]
    assert parser.description, f"`gradasym {command} --help` opens with no description"
    for action in parser._actions:
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.help == argparse.SUPPRESS:  # hidden: a retired option kept for its one-line error
            assert action.default is None, action.option_strings
            continue
        text = (action.help or "") % {"default": action.default} if action.help else ""
        assert "default" in text or (action.default not in (None, False, []) and str(action.default) in text), (
            f"gradasym {command} {'/'.join(action.option_strings)}: help does not state the default: {text!r}")


def test_run_flag_help_shows_the_config_default() -> None:
    run = _subparsers(build_parser())["run"]
    helps = {a.option_strings[0]: a.help for a in run._actions if a.option_strings}
    assert "(default: 0.0001)" in helps["--actor-lr"] and "(default: 1)" in helps["--threads"]
    assert "(default: 2000)" in helps["--episodes"] and "default: off" in helps["--tensorboard"]


def test_tensorboard_flag_reaches_the_config() -> None:
    assert config_from_args(parse("run", "--tensorboard")).run.tensorboard is True
    assert config_from_args(parse("run")).run.tensorboard is False
    assert config_from_args(parse("sweep", "--tensorboard")).run.tensorboard is True


@pytest.mark.parametrize("algo_args, resumable, expected", [
    ([], True, "rerun the same command with --resume"),
    (["--algo", "td3", "--env", "Pendulum-v1", "--steps", "100"], True, "rerun the same command with --resume"),
    (["--algo", "td3", "--env", "Pendulum-v1", "--steps", "100"], False, "td3 runs cannot resume"),
])
def test_interrupted_run_says_what_a_rerun_does_for_its_algorithm(tmp_path, capsys, monkeypatch,
                                                                  algo_args, resumable, expected) -> None:
    """Ctrl-C during `gradasym run`: exit 130 and a hint that is true for the algorithm (SB3 runs resume;
    an algorithm that could not gets the other hint)."""
    from gradasym.algos.base import Algorithm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Algorithm, "runner", property(lambda self: interrupted))
    for cls in Algorithm.__subclasses__():
        monkeypatch.setattr(cls, "runner", property(lambda self: interrupted))
        if not resumable:
            monkeypatch.setattr(cls, "can_resume", False)
    assert main(["run", *algo_args, "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and expected in err
    if not resumable:
        assert "--resume to continue" not in err


# ---------------------------------------------------------------- --out: files and folders of other results
TINY_RUN = ["--episodes", "2", "--n-agents", "12", "--batch-size", "8", "--set", "env.k_channel=4",
            "--set", "env.n_units=3", "--set", "agent.memory_capacity=500", "--quiet"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv", [
    ["run", "--out", "afile", *TINY_RUN],
    ["sweep", "--out", "afile", "--episodes", "2", "--no-live"],
    ["reproduce", "--out", "afile", "--no-live"],
    ["report", "afile"],
    ["report", "results", "--out", "afile"],
])
def test_out_that_is_a_file_is_one_line_exit_2(tmp_path, capsys, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "results").mkdir()
    assert main(argv) == 2
    assert "afile is a file, not a folder" in _one_line_error(capsys)
    assert (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "results"]  # nothing written


def _sweep_folder(d):
    (d / "runs" / "alr0.1_clr0.1_s42").mkdir(parents=True)
    (d / "runs" / "alr0.1_clr0.1_s42" / "config.json").write_text("{}")
    (d / "sweep.json").write_text("{}")


def _run_folder(d):
    d.mkdir()
    for name in ("config.json", "summary.json", "checkpoint.pt"):
        (d / name).write_text("{}")


def _foreign_summary(d):
    d.mkdir()
    (d / "summary.json").write_text('{"status": "x"}')


@pytest.mark.parametrize("make, argv, message", [
    (_sweep_folder, ["run", *TINY_RUN], "holds a sweep (sweep.json, runs); a run is not written into a sweep folder"),
    (_sweep_folder, ["run", "--resume", *TINY_RUN], "holds a sweep"),
    (_foreign_summary, ["run", *TINY_RUN], "holds summary.json but no config.json or checkpoint"),
    (_run_folder, ["sweep", "--episodes", "2", "--no-live"],
     "holds a run (config.json, summary.json, checkpoint.pt); a sweep is not written into a run folder"),
    (_run_folder, ["reproduce", "--no-live"], "holds a run (config.json, summary.json, checkpoint.pt)"),
])
def test_out_holding_other_results_is_refused_before_work(tmp_path, capsys, make, argv, message) -> None:
    out = tmp_path / "o"
    make(out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main([argv[0], "--out", str(out), *argv[1:]]) == 2
    err = _one_line_error(capsys)
    assert message in err and str(out) in err and "choose another --out" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before  # nothing written or removed


def test_a_resumed_run_says_from_which_episode(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), *TINY_RUN, "--keep-replay"]) == 0  # kept: the run can be extended
    assert "resuming" not in capsys.readouterr().err
    loud = [a for a in TINY_RUN if a != "--quiet"]
    assert main(["run", "--out", str(out), *loud, "--keep-replay", "--episodes", "3", "--resume"]) == 0
    assert f"{out}: resuming from episode 2 of 3" in capsys.readouterr().err


def test_checkpoint_on_a_full_disk_is_one_line_and_resumes(tmp_path, capsys, monkeypatch) -> None:
    """A checkpoint that does not fit: one line naming the file (exit 1, as any full disk), the earlier
    checkpoints stay loadable and --resume continues (torch.save's own writer raised a RuntimeError)."""
    import torch
    from fulldisk import FullDisk

    import gradasym.io

    monkeypatch.setattr(gradasym.io, "open", FullDisk(full_from=3, room=4096), raising=False)  # the start and episode 2 fit
    out = tmp_path / "r"
    argv = ["run", "--out", str(out), *TINY_RUN, "--episodes", "6", "--checkpoint-interval", "2"]
    assert main(argv) == 1
    err = _one_line_error(capsys)
    assert err.startswith(f"gradasym: error: no space left on the device writing {out / 'checkpoint.pt'}")
    assert torch.load(out / "checkpoint.pt", weights_only=False)["episodes_done"] == 2
    assert torch.load(out / "checkpoint.prev.pt", weights_only=False)["episodes_done"] == 0
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["episodes_run"] == 6
