"""The sweep's live view and log lines (issue 22, item 5): a steady ETA, counts that agree, run ids that fit
the terminal with their seed, the final table in grid order, SB3 units and integer stop steps, and what the
seconds of batched runs are."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gradasym import algos
from gradasym.io import write_json
from gradasym.sweep import SweepSpec, run_sweep
from gradasym.sweep.view import LiveView, LogView, RunProgress, eta_seconds, fit_run_id

SB3_KEYS = dict(algos.get("td3").summary_keys)
LONG_IDS = [f"alr0.001_clr0.0001_batch-size64_layernorm+large-actor_s{s}" for s in range(4)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _text(view: LiveView) -> str:
    view.console.print(view._render())
    return view.console.export_text()


def _console(width: int) -> Console:
    return Console(width=width, file=io.StringIO(), record=True)


def _sb3_runs(ids: list[str], **kw: Any) -> list[RunProgress]:
    return [RunProgress(i, 30000, 1, unit="environment steps", stop_unit="gradient steps", keys=SB3_KEYS, **kw)
            for i in ids]


def test_eta_is_the_remaining_work_at_the_average_pace_so_far() -> None:
    assert eta_seconds(120.0, 1.5, 3) == pytest.approx(120.0)
    assert eta_seconds(0.0, 0.0, 3) is None and eta_seconds(10.0, 0.0, 3) is None
    assert eta_seconds(50.0, 4.0, 4) == 0.0


def test_eta_stays_steady_while_runs_start_and_end_in_waves() -> None:
    """16 runs of 4 minutes on 4 workers (16 minutes in all), progress every 10 s: from one minute to
    the next the ETA never moves by more than a minute beyond the minute that passed, and it is right
    within 20 % once a tenth of the work is done (rich's 30-second window swung between 2 and 26 min)."""
    clock = Clock()
    ids = [f"alr0.1_clr0.1_s{i}" for i in range(16)]
    view = LiveView([RunProgress(i, 240, 5) for i in ids], console=_console(120), clock=clock)
    etas = []
    for second in range(0, 16 * 60 + 1, 10):
        clock.t = float(second)
        wave, into = divmod(second, 240)
        for k, rid in enumerate(ids):
            if k // 4 < wave and view.runs[rid].ended is None:
                view.done(rid, "finished", None, None)
            elif k // 4 == wave:
                view.started(rid) if into == 0 else view.progress(rid, {"done": into, "total": 240})
        if second % 60 == 0 and second:
            etas.append((second, view.eta()))
            text = _text(view)
            assert re.search(r"ETA \d:\d\d:\d\d", text)
    for (t0, e0), (t1, e1) in zip(etas, etas[1:]):
        assert abs((e0 - e1) - (t1 - t0)) <= 60, etas
    for t, e in etas:
        if t >= 96:
            assert e == pytest.approx(16 * 60 - t, rel=0.2, abs=1.0)


def test_bar_count_and_table_title_count_the_same_runs() -> None:
    """"4/16 runs" beside "finished 1": the bar counted a running run's fraction; now both count ended runs."""
    view = LiveView([RunProgress(f"r_s{i}", 10, 5) for i in range(4)], n_skipped=1, console=_console(120))
    view.done("r_s0", "finished", None, None)
    view.done("r_s1", "failed", None, "RuntimeError: boom")
    for rid in ("r_s2", "r_s3"):
        view.started(rid)
        view.progress(rid, {"done": 9, "total": 10})  # 90 % each: the old bar showed 4/5 runs
    text = _text(view)
    ended = re.search(r"(\d+)/(\d+) runs ended", text)
    title = re.search(r"finished (\d+) · failed (\d+)", text)
    assert ended and title, text
    assert int(ended.group(1)) == int(title.group(1)) + int(title.group(2)) == 3 and ended.group(2) == "5"


@pytest.mark.parametrize("width", [60, 100, 200])
def test_run_ids_fit_the_terminal_and_keep_their_seed(width) -> None:
    view = LiveView(_sb3_runs(LONG_IDS), console=_console(width))
    for rid in LONG_IDS[:3]:
        view.started(rid)
        view.progress(rid, {"done": 15000, "total": 30000, "return": -3.25})
    view.done(LONG_IDS[0], "finished", {"steps_run": 30000, "stopping_step": 19000.0, "final_return": -2.5}, None)
    lines = _text(view).splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    rows = [line for line in lines if line.startswith("│")]
    for seed in range(3):
        assert any(re.search(rf"alr0\.001\S*_s{seed} ", row) for row in rows), "\n".join(lines)
    if width >= 100:  # wide enough for every column
        assert any("19000 " in row for row in rows) and not any("19000.0" in row for row in rows)


def test_fit_run_id_cuts_the_middle_never_the_seed() -> None:
    rid = LONG_IDS[2]
    assert fit_run_id(rid, 200) == rid
    short = fit_run_id(rid, 20)
    assert len(short) == 20 and short.endswith("_s2") and short.startswith("alr0.001_clr") and "…" in short


def test_final_table_lists_the_runs_in_grid_order() -> None:
    ids = [f"alr{a}_clr0.1_s0" for a in ("0.0001", "0.001", "0.01", "0.1")]
    clock = Clock()
    view = LiveView([RunProgress(i, 10, 5) for i in ids], console=_console(120), clock=clock)
    for k, rid in enumerate(reversed(ids)):  # they end in the reverse of the grid order
        clock.t = float(k)
        view.done(rid, "finished", None, None)
    view.final = True  # as set by __exit__ before the last refresh
    rows = [line for line in _text(view).splitlines() if line.startswith("│")]
    assert [next(i for i in ids if i in row) for row in rows] == ids


def test_final_table_of_an_interrupted_sweep_shows_pending_runs_and_says_what_it_leaves_out() -> None:
    view = LiveView([RunProgress(f"alr0.1_clr0.1_s{i}", 10, 5) for i in range(205)], console=_console(120))
    view.done("alr0.1_clr0.1_s0", "finished", None, None)
    view.final = True
    text = _text(view)
    assert "[]" not in text and "pending" in text and "finished" in text
    assert "… and 5 more runs (summary.csv)" in text


def test_stop_is_an_integer_in_the_log_lines_too() -> None:
    lines: list[str] = []
    view = LogView(_sb3_runs(LONG_IDS[:1]), log=lines.append)
    view.done(LONG_IDS[0], "finished", {"steps_run": 30000, "stopping_step": 19000.0, "seconds_per_step": 0.002},
              None)
    assert "actors stopped at: 19000 gradient steps" in lines[-1]


def _fake_sb3_runner(cfg: Any, out_dir: str | Path, resume: bool = True, progress: Any = None,
                     show_progress: bool = False) -> dict:
    """A finished TD3 run folder in no time (the sweep's bookkeeping, not SB3, is under test)."""
    out = Path(out_dir)
    summary_path = out / "summary.json"
    if summary_path.exists():
        import json

        return json.loads(summary_path.read_text())
    write_json(out / "config.json", cfg.to_dict())
    summary = {"status": "finished", "error": None, "algo": "td3", "env": cfg.env.id,
               "actor_lr": cfg.agent.actor_lr, "critic_lr": cfg.agent.critic_lr, "seed": cfg.run.seed,
               "steps_requested": cfg.run.steps, "steps_run": cfg.run.steps, "stopping_step": 120.0,
               "final_return": -3.0, "seconds_per_step": 0.001}
    write_json(summary_path, summary)
    return summary


def test_a_rerun_of_a_finished_sb3_sweep_shows_sb3_units(tmp_path, monkeypatch) -> None:
    import gradasym.sweep.core as core

    td3 = algos.get("td3").default_config()
    td3.run.steps = 300
    spec = SweepSpec(base=td3, axes={"agent.actor_lr": [1e-3, 0.1]}, seeds=[1])
    made: list[dict] = []
    real = core.make_view

    def spy(runs, n_skipped, **kw):
        made.append({"runs": runs, "n_skipped": n_skipped, **kw})
        return real(runs, n_skipped, **kw)

    monkeypatch.setattr(core, "make_view", spy)
    for _ in range(2):
        run_sweep(spec, tmp_path / "s", runner=_fake_sb3_runner, live=False, log=lambda s: None)
    rerun = made[-1]
    assert rerun["runs"] == [] and rerun["n_skipped"] == 2
    assert rerun["units"] == ("environment steps", "gradient steps")
    view = LiveView([], n_skipped=2, units=rerun["units"], console=_console(120))
    text = re.sub(r"\s+", " ", _text(view))
    assert "environment steps" in text and "gradient steps" in text and "episode" not in text
