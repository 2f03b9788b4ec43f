"""Results of the retired batched trainer (docs/sweeps.md, "Batched runs (retired)") stay usable.

``tests/data/batched_sweep`` is a sweep folder written by the batched trainer itself (made by
``tests/data/make_batched_sweep.py`` at commit 054d87e, the last with that trainer): two runs
trained as one batch and stopped like Ctrl-C after episode 4, the 3-episode run finished, the
9-episode run interrupted with its checkpoint at episode 3; both record ``"trainer": "batched"``.
Such a folder resumes run by run with the single-run trainer (a resumed run is recorded as
``mixed``, with one warning), reports, and an old ``--batch-runs`` command line is one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from gradasym import algos
from gradasym.cli import main

SAMPLE = Path(__file__).parent / "data" / "batched_sweep"
FINISHED_RUN = "alr0.0001_clr0.001_episodes3_s1"
STARTED_RUN = "alr0.0001_clr0.001_episodes9_s1"
WARNING = "was trained by the batched trainer so far (retired, docs/sweeps.md); going on with the single-run trainer"


@pytest.fixture()
def sample(tmp_path: Path) -> Path:
    """A writable copy of the sample sweep folder."""
    out = tmp_path / "sweep"
    shutil.copytree(SAMPLE, out)
    return out


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_the_sample_is_what_the_batched_trainer_wrote() -> None:
    """The premise of the tests below (a changed sample would make them pass vacuously)."""
    table = pd.read_parquet(SAMPLE / "summary.parquet").set_index("run_id")
    assert dict(table["trainer"]) == {FINISHED_RUN: "batched", STARTED_RUN: "batched"}
    assert dict(table["status"]) == {FINISHED_RUN: "finished", STARTED_RUN: "interrupted"}
    started = _summary(SAMPLE / "runs" / STARTED_RUN)
    assert started["episodes_run"] == 3 and started["provenance"]["git_commit"].startswith("054d87e")
    doc = json.loads((SAMPLE / "sweep.json").read_text())  # sweep.json never recorded batch options
    assert not [key for key in doc if "batch" in key] and "batch_runs" not in json.dumps(doc)


def test_a_batched_sweep_resumes_run_by_run(sample: Path, capsys: pytest.CaptureFixture) -> None:
    """`gradasym sweep --out F` continues the sweep: the finished batched run is kept as it is, the
    interrupted one resumes from its checkpoint with the single-run trainer (one warning, recorded
    as mixed); the summary's trainer column says both."""
    before = (sample / "runs" / FINISHED_RUN / "episodes.parquet").read_bytes()
    assert main(["sweep", "--out", str(sample), "--no-live"]) == 0
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1, err
    table = pd.read_parquet(sample / "summary.parquet").set_index("run_id")
    assert dict(table["status"]) == {FINISHED_RUN: "finished", STARTED_RUN: "finished"}
    assert dict(table["trainer"]) == {FINISHED_RUN: "batched", STARTED_RUN: "mixed"}
    assert (sample / "runs" / FINISHED_RUN / "episodes.parquet").read_bytes() == before
    old = pd.read_parquet(SAMPLE / "runs" / STARTED_RUN / "episodes.parquet")
    new = pd.read_parquet(sample / "runs" / STARTED_RUN / "episodes.parquet")
    assert len(old) == 3 and len(new) == 9  # resumed at episode 3, not restarted
    pd.testing.assert_frame_equal(new.iloc[:3], old, check_exact=True)
    assert main(["sweep", "--out", str(sample), "--no-live"]) == 0  # all finished: nothing to do, no warning
    assert WARNING not in capsys.readouterr().err


def test_a_run_folder_trained_batched_resumes_with_the_single_run_trainer(sample: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    from gradasym.algos.ccm_madrl.runner import run_experiment

    run = sample / "runs" / STARTED_RUN
    cfg = algos.config_from_dict(json.loads((run / "config.json").read_text()))
    summary = run_experiment(cfg, run)
    assert capsys.readouterr().err.count(WARNING) == 1
    assert summary["trainer"] == "mixed" and summary["status"] == "finished" and summary["episodes_run"] == 9
    again = run_experiment(cfg, run)  # nothing left to do: the record stays, no warning
    assert again["trainer"] == "mixed" and "going on" not in capsys.readouterr().err
    done = sample / "runs" / FINISHED_RUN  # finished batched: kept as it is
    kept = run_experiment(algos.config_from_dict(json.loads((done / "config.json").read_text())), done)
    assert kept["trainer"] == "batched" and "going on" not in capsys.readouterr().err


def test_a_mixed_run_goes_on_as_mixed(sample: Path, capsys: pytest.CaptureFixture) -> None:
    """A run already continued once (``mixed`` in its checkpoint) stays mixed, and says so."""
    import torch

    from gradasym.algos.ccm_madrl.runner import run_experiment

    run = sample / "runs" / STARTED_RUN
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["trainer"] == "batched"
    state["trainer"] = "mixed"
    torch.save(state, run / "checkpoint.pt")
    cfg = algos.config_from_dict(json.loads((run / "config.json").read_text()))
    assert run_experiment(cfg, run)["trainer"] == "mixed"
    assert capsys.readouterr().err.count("was trained by both trainers so far") == 1


def test_the_report_reads_a_batched_sweep(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    assert main(["report", str(sample), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "report.html").stat().st_size > 0


@pytest.mark.parametrize("command", ["sweep", "reproduce"])
@pytest.mark.parametrize("value", ["auto", "off", "4"])
def test_the_retired_batch_runs_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, command: str,
                                                   value: str) -> None:
    """An old command line gets one line saying the option was retired and why (not argparse's
    'unrecognized arguments'), before any work: nothing is written."""
    out = tmp_path / "out"
    assert main([command, "--batch-runs", value, "--out", str(out), "--no-live"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"gradasym {command}: error: --batch-runs was retired with the batched trainer")
    assert "docs/sweeps.md" in err and not out.exists()
    with pytest.raises(SystemExit):  # the option is not a general escape: other unknown options stay argparse's
        main([command, "--batch-runs-x", "2", "--out", str(out)])
    assert "unrecognized arguments" in capsys.readouterr().err
