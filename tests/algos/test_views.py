"""The sweep views in the units of the run's algorithm (no training)."""

from __future__ import annotations

import os

from gradasym import algos
from gradasym.sweep.view import LiveView, LogView, RunProgress


def _sb3_progress(run_id: str) -> RunProgress:
    plugin = algos.get("td3")
    return RunProgress(run_id, 20000, 1, unit=plugin.progress_unit, stop_unit=plugin.stop_unit,
                       keys=dict(plugin.summary_keys))


def test_live_view_shows_environment_and_gradient_steps():
    from rich.console import Console

    view = LiveView([_sb3_progress("a"), _sb3_progress("b")])
    with view:
        view.progress("a", {"done": 5000, "total": 20000, "return": -812.5, "saturation_ratio": 0.99,
                            "actors_stopped": 1, "seconds_per_unit": 0.004})
        view.done("b", "finished", {"steps_run": 20000, "stopping_step": 77, "final_return": -150.0,
                                    "seconds_per_step": 0.003, "actors_stopped": 1}, None)
    console = Console(width=160, record=True, file=open(os.devnull, "w"))
    console.print(view._render())
    text = console.export_text()
    assert "environment steps" in text and "stop (gradient steps)" in text and "s/environment step" in text
    assert "5000/20000" in text and "-812.5" in text and "20000/20000" in text and "77" in text
    assert "episode" not in text
    assert view.completed_units() == 1.25


def test_log_view_lines_name_the_units():
    lines: list[str] = []
    view = LogView([_sb3_progress("a")], log=lines.append)
    view.started("a")
    view.progress("a", {"done": 10000, "total": 20000, "return": -500.0})
    view.done("a", "finished", {"steps_run": 20000, "stopping_step": 120, "seconds_per_step": 0.002}, None)
    text = "\n".join(lines)
    assert "10000/20000 environment steps" in text
    assert "finished a: 20000 environment steps, actors stopped at: 120 gradient steps" in text
    assert "s per environment step" in text and "episode" not in text


def test_views_print_each_monitor_event_once():
    lines: list[str] = []
    view = LogView([_sb3_progress("a")], log=lines.append)
    view.started("a")
    death = {"event": "grad_death", "step": 82, "message": "gradient step 82: the actor's gradient died"}
    frozen = {"event": "actor_frozen", "step": 90, "message": "gradient step 90: the actor's weights froze"}
    view.progress("a", {"done": 1000, "total": 20000, "events": [death]})
    view.progress("a", {"done": 2000, "total": 20000, "events": [death]})  # already shown
    view.progress("a", {"done": 3000, "total": 20000})  # progress without events
    view.done("a", "finished", {"steps_run": 20000, "events": [death, frozen]}, None)  # one the progress missed
    events = [line for line in lines if "gradient step" in line]
    assert events == ["a: gradient step 82: the actor's gradient died", "a: gradient step 90: the actor's weights froze"]
