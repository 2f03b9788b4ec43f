"""The sweep folder on disk: atomic writes, ``sweep.json``, the summary table, a lock.

Layout (``docs/architecture.md``, "Sweep folder")::

    SWEEP/
      sweep.json            # resolved grid: base config, axes, seeds, run ids, per-run overrides
      summary.parquet       # one row per (configuration, seed); also summary.csv
      runs/<run_id>/...     # one run folder each (written by the runner)

Every file here is written to a temporary file in the same folder and moved into
place with ``os.replace``, so a reader (or a crash) never sees a half-written file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..io import NotRegularFileError, atomic_write, require_regular_file
from ..runfolder import FolderLock
from ..schemas import check_summary
from ..runfolder import config_differences as _config_differences

SWEEP_JSON = "sweep.json"
SUMMARY_PARQUET = "summary.parquet"
SUMMARY_CSV = "summary.csv"
RUNS_DIR = "runs"
LOCK_FILE = ".sweep.lock"
SWEEP_FORMAT = 1

#: Summary columns in the order of ``docs/architecture.md``; extra columns follow.
SUMMARY_COLUMNS: list[str] = [
    "run_id", "actor_lr", "critic_lr", "seed", "presets", "stopping_episode",
    "actors_stopped", "critic_stopped", "max_abs_preactivation", "final_saturation_ratio",
    "reward_first10", "reward_last10", "seconds_per_episode", "episodes_run", "status", "error",
]
#: Extra columns (after the contract's), useful to the report.
EXTRA_COLUMNS: list[str] = [
    "n_agents", "episodes_requested", "early_stopped", "critic_stop_episode", "final_rho",
    "all_frozen_at_end", "seconds_total", "run_dir", "trainer",
]
_DTYPES: dict[str, str] = {
    "actor_lr": "float64", "critic_lr": "float64", "seed": "Int64",
    "stopping_episode": "Int64", "actors_stopped": "Int64", "critic_stopped": "boolean",
    "max_abs_preactivation": "float64", "final_saturation_ratio": "float64",
    "reward_first10": "float64", "reward_last10": "float64", "seconds_per_episode": "float64",
    "episodes_run": "Int64", "n_agents": "Int64", "episodes_requested": "Int64",
    "early_stopped": "boolean", "critic_stop_episode": "Int64", "final_rho": "float64",
    "all_frozen_at_end": "boolean", "seconds_total": "float64",
}

#: Run states as they appear in the summary's ``status`` column.
FINISHED, FAILED, RUNNING, PENDING, INTERRUPTED = "finished", "failed", "running", "pending", "interrupted"

#: Config fields that may differ between a run's saved config and a rerun's
#: (thread counts depend on the number of workers, TensorBoard output is a copy of the
#: tables, and ``keep_replay`` only says what a finished run's checkpoint keeps: none
#: changes what is computed).
IGNORED_CONFIG_FIELDS: set[tuple[str, str]] = {("run", "threads"), ("run", "tensorboard"), ("run", "keep_replay")}


class SweepError(RuntimeError):
    """A sweep cannot start (e.g. the folder belongs to another grid or is in use)."""


class SweepMismatchError(SweepError):
    """The folder already holds a sweep with a different grid or run configs."""


# ------------------------------------------------------------------ reading
def read_json(path: str | Path) -> dict[str, Any] | None:
    """Read a JSON object, or None if the file is missing or unreadable."""
    try:
        data = json.loads(require_regular_file(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError, NotRegularFileError):
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------ run folders
def run_dir(out_dir: str | Path, run_id: str) -> Path:
    """``out_dir/runs/<run_id>``."""
    return Path(out_dir) / RUNS_DIR / run_id


def read_run_summary(path: str | Path) -> dict[str, Any] | None:
    """A run folder's ``summary.json`` (None when absent, unreadable or with values of the wrong type).

    An unreadable summary makes the run look unfinished, so the next sweep resumes it
    from its checkpoint and the runner rewrites the file. A summary of another run (copied:
    :func:`gradasym.schemas.check_summary` against the folder's ``config.json``) is never read
    (the sweep refuses such a folder before it starts, ``core._prepare_folder``).
    """
    summary = read_json(Path(path) / "summary.json")
    if summary is None or not summary_is_valid(summary):
        return None
    return summary if check_summary(summary, read_json(Path(path) / "config.json")) is None else None


def summary_is_valid(summary: dict[str, Any]) -> bool:
    """Every summary column the table types (:data:`_DTYPES`) holds a value of that type (or null)."""
    status = summary.get("status")
    if status is not None and not isinstance(status, str):
        return False
    for key, dtype in _DTYPES.items():
        value = summary.get(key)
        if value is None:
            continue
        if dtype == "boolean":
            ok = isinstance(value, bool)
        elif dtype == "Int64":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            return False
    per_agent = summary.get("per_agent_stop_episode")
    return per_agent is None or isinstance(per_agent, list)


def run_status(path: str | Path) -> str:
    """``finished`` / ``failed`` / ``running`` (left by a crash) / ``pending`` (no summary)."""
    summary = read_run_summary(path)
    if summary is None:
        return PENDING
    return str(summary.get("status") or RUNNING)


def config_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Dotted fields whose values differ between two ``Config.to_dict()`` dicts.

    :func:`gradasym.runfolder.config_differences` (fields present in both, ``version``
    skipped) without :data:`IGNORED_CONFIG_FIELDS`.
    """
    return _config_differences(saved, wanted, IGNORED_CONFIG_FIELDS)


# ------------------------------------------------------------------ summary table
def _count_stopped(summary: dict[str, Any]) -> int | None:
    per_agent = summary.get("per_agent_stop_episode")
    if isinstance(per_agent, list):
        return sum(1 for v in per_agent if v is not None)
    value = summary.get("actors_stopped")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summary_row(
    run: dict[str, Any],
    summary: dict[str, Any] | None,
    status: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One row of the sweep summary from a run's ``sweep.json`` entry and its ``summary.json``.

    ``run`` is a :meth:`RunSpec.to_dict` entry (``run_id``, ``actor_lr``, ``critic_lr``,
    ``seed``, ``presets`` = all presets of the config, ``n_agents``, ``episodes``, ``overrides``). ``status``/``error``
    override the file's (e.g. ``running`` while a run is in progress, or the
    exception of a runner that died before writing its summary).
    """
    s = summary or {}
    presets = run.get("presets") or []
    row: dict[str, Any] = {
        "run_id": run["run_id"],
        "actor_lr": run["actor_lr"],
        "critic_lr": run["critic_lr"],
        "seed": run["seed"],
        "presets": "+".join(presets),  # "" = baseline (as gradasym.report.load.presets_label)
        "stopping_episode": s.get("stopping_episode"),
        "actors_stopped": _count_stopped(s) if s else None,
        "critic_stopped": s.get("critic_stopped"),
        "max_abs_preactivation": s.get("max_abs_preactivation"),
        "final_saturation_ratio": s.get("final_saturation_ratio"),
        "reward_first10": s.get("reward_first10"),
        "reward_last10": s.get("reward_last10"),
        "seconds_per_episode": s.get("seconds_per_episode"),
        "episodes_run": s.get("episodes_run"),
        "status": status or (str(s.get("status") or RUNNING) if s else PENDING),
        "error": error if error is not None else s.get("error"),
        "n_agents": run.get("n_agents"),
        "episodes_requested": s.get("episodes_requested", run.get("episodes")),
        "early_stopped": s.get("early_stopped"),
        "critic_stop_episode": s.get("critic_stop_episode"),
        "final_rho": s.get("final_rho"),
        "all_frozen_at_end": s.get("all_frozen_at_end"),
        "seconds_total": s.get("seconds_total"),
        "run_dir": f"{RUNS_DIR}/{run['run_id']}",
        "trainer": s.get("trainer"),  # CCM-MADRL: single (batched / mixed: folders from before its retirement)
    }
    from gradasym import algos  # noqa: PLC0415 - the algorithm's own summary keys (SB3: steps, returns)

    if run.get("algo") and run["algo"] != algos.DEFAULT_ALGO:
        row["algo"] = run["algo"]
        row["n_agents"] = run.get("n_actors")
        for key in algos.get(run["algo"]).summary_columns:
            row.setdefault(key, s.get(key))
    for key, value in (run.get("overrides") or {}).items():
        if key in ("agent.actor_lr", "agent.critic_lr", "run.seed"):
            continue
        row[key] = "x".join(map(str, value)) if isinstance(value, list) else value
    return row


def build_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the contract's columns first and stable dtypes."""
    rows = list(rows)
    df = pd.DataFrame(rows)
    extra_axes = [c for c in df.columns if c not in SUMMARY_COLUMNS and c not in EXTRA_COLUMNS]
    columns = SUMMARY_COLUMNS + EXTRA_COLUMNS + extra_axes
    df = df.reindex(columns=columns)
    for col, dtype in _DTYPES.items():
        if col in df:
            df[col] = pd.array([None if _missing(v) else v for v in df[col]], dtype=dtype) if len(df) else df[col].astype(dtype)
    for col in ("run_id", "presets", "status", "error", "run_dir", "trainer"):
        values = df[col].astype(object).where(df[col].notna(), None)
        # pandas >= 3 reads strings back as its "str" dtype; match it so that the
        # returned table equals the one read from summary.parquet.
        df[col] = values.astype("str") if _PANDAS_STR else values
    return df


_PANDAS_STR = int(pd.__version__.split(".")[0]) >= 3


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def write_summary(out_dir: str | Path, table: pd.DataFrame) -> None:
    """Write ``summary.parquet`` and ``summary.csv`` atomically."""
    out_dir = Path(out_dir)
    atomic_write(out_dir / SUMMARY_PARQUET, lambda p: table.to_parquet(p, index=False))
    atomic_write(out_dir / SUMMARY_CSV, lambda p: table.to_csv(p, index=False))


def read_summary(out_dir: str | Path) -> pd.DataFrame:
    """Read a sweep folder's ``summary.parquet``."""
    return pd.read_parquet(Path(out_dir) / SUMMARY_PARQUET)


# ------------------------------------------------------------------ sweep.json
def grid_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why the grid ``new`` cannot continue the sweep recorded in ``old`` (empty = it can).

    A sweep may be continued with the same grid or a larger one (more seeds, more
    axis values, more preset combinations): the base config must be the same (up to
    ``run.seed`` and ``run.threads``) and every run id of ``old`` must be in ``new`` with the
    same overrides and presets.
    """
    reasons: list[str] = []
    old_base = json.loads(json.dumps(old.get("base_config", {})))
    new_base = json.loads(json.dumps(new.get("base_config", {})))
    for b in (old_base, new_base):
        if isinstance(b.get("run"), dict):
            b["run"].pop("seed", None)
    diffs = config_differences(old_base, new_base)
    if old_base.get("presets") != new_base.get("presets"):
        diffs.append(f"presets: {old_base.get('presets')} -> {new_base.get('presets')}")
    if diffs:
        reasons.append("base config differs: " + "; ".join(diffs[:8]) + (" ..." if len(diffs) > 8 else ""))
    new_runs = {r["run_id"]: r for r in new.get("runs", [])}
    missing = []
    for r in old.get("runs", []):
        other = new_runs.get(r["run_id"])
        if other is None:
            missing.append(r["run_id"])
        elif json.loads(json.dumps(other.get("overrides"))) != r.get("overrides") or other.get("presets") != r.get("presets"):
            reasons.append(f"run {r['run_id']} has different overrides/presets")
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        reasons.append(f"the new grid lacks runs of the existing sweep: {', '.join(missing[:5])}{more}")
    return reasons


# ------------------------------------------------------------------ lock
class SweepLock(FolderLock):
    """The exclusive lock ``SWEEP/.sweep.lock``, so two drivers never share a folder.

    A :class:`gradasym.runfolder.FolderLock`: created with its owner already in it,
    a lock of a dead process on this host is taken over, an unreadable lock or one
    from another host is reported (delete the file if no sweep is running), and
    ``release`` deletes only its own lock. Raises :class:`SweepError` when busy.
    """

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(out_dir, LOCK_FILE, error=SweepError, busy="{folder} is in use by another sweep")
