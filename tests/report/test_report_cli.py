"""`gradasym report` on the command line."""

from __future__ import annotations

from gradasym.cli import main


def test_report_command_writes_html(small_sweep, large_actor_sweep, tmp_path, capsys) -> None:
    out = tmp_path / "rep"
    rc = main(["report", str(small_sweep), "--compare", str(large_actor_sweep), "--out", str(out),
               "--margin", "0.1", "--title", "CLI report"])
    assert rc == 0
    html = (out / "report.html").read_text()
    assert "CLI report" in html and "10%" in html
    assert "report written to" in capsys.readouterr().out


def test_report_command_missing_folder_is_an_error(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_report_command_refuses_a_margin_that_would_change_the_verdict(single_run, tmp_path, capsys) -> None:
    for bad in ("nan", "inf", "-0.05", "-inf"):
        out = tmp_path / f"rep_{bad}"
        assert main(["report", str(single_run), "--out", str(out), f"--margin={bad}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gradasym: error: margin must be a finite number >= 0") and "Traceback" not in err
        assert not out.exists()
