"""Read run and sweep folders (``docs/architecture.md``) robustly into pandas.

Result folders are read while sweeps are still writing them, after crashes, or
half copied, so nothing here raises on a missing or malformed file: every reader
returns what exists plus a list of human-readable problems, which the report
shows. Only pandas/pyarrow are imported (no matplotlib), so the sweep can call
:func:`summarize_sweep` to write ``summary.parquet``.

Accepted layouts for :func:`load_results`:

* a sweep folder (``sweep.json``, ``runs/<run_id>/``, ``summary.parquet``);
* a single run folder (``summary.json`` / ``config.json`` / ``episodes.parquet``);
* a folder whose sub-folders are run folders (e.g. ``SWEEP/runs``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..errors import describe
from ..io import atomic_write
from ..schemas import check_summary, check_table, frame_view, read_metadata

__all__ = [
    "SUMMARY_COLUMNS",
    "RunData",
    "ResultSet",
    "load_results",
    "read_run",
    "read_summary",
    "summarize_sweep",
    "write_sweep_summary",
    "runs_frame",
    "parse_run_id",
    "presets_label",
    "run_grad_death_episode",
]

#: Columns of the sweep summary table (``docs/architecture.md``, "Sweep folder").
SUMMARY_COLUMNS: list[str] = [
    "run_id", "actor_lr", "critic_lr", "seed", "presets", "stopping_episode",
    "actors_stopped", "critic_stopped", "max_abs_preactivation",
    "final_saturation_ratio", "reward_first10", "reward_last10",
    "seconds_per_episode", "episodes_run", "status", "error",
]

#: Keys of a run's ``summary.json`` (``docs/architecture.md``, "Run folder").
SUMMARY_KEYS: list[str] = [
    "status", "error", "actor_lr", "critic_lr", "seed", "presets", "actor_update",
    "episodes_requested", "episodes_run", "stopping_episode", "per_agent_stop_episode",
    "per_agent_grad_death_episode", "all_frozen_at_end", "critic_stopped",
    "critic_stop_episode", "max_abs_preactivation", "final_saturation_ratio",
    "final_rho", "reward_first10", "reward_last10", "seconds_total",
    "seconds_per_episode", "early_stopped", "version",
]

RUN_MARKERS = ("summary.json", "config.json", "episodes.parquet", "tracking.parquet")
_RUN_ID = re.compile(r"^alr(?P<alr>[^_]+)_clr(?P<clr>[^_]+)(?:_(?P<preset>.+?))?_s(?P<seed>-?\d+)$")

# Statuses the report adds to the runner's ("running", "finished", "failed").
STATUS_NO_SUMMARY = "no summary"   # folder exists, summary.json missing/unreadable
STATUS_PENDING = "pending"          # listed in sweep.json, no folder yet


@dataclass
class RunData:
    """Everything one run folder holds; absent files are ``None`` and noted in ``problems``."""

    path: Path
    run_id: str
    summary: dict[str, Any]
    config: dict[str, Any] | None = None
    episodes: pd.DataFrame | None = None
    tracking: pd.DataFrame | None = None
    tracking_agents: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)
    summary_source: str = "summary.json"

    @property
    def status(self) -> str:
        """The run's status (``finished``, ``running``, ``failed``, ``no summary``...)."""
        return str(self.summary.get("status") or STATUS_NO_SUMMARY)


@dataclass
class ResultSet:
    """The runs found under one results folder, with what is missing."""

    path: Path
    kind: Literal["sweep", "run", "runs", "empty"]
    runs: list[RunData] = field(default_factory=list)
    sweep: dict[str, Any] | None = None
    pending: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    label: str = ""


# ------------------------------------------------------------------ small readers
def _read_json(path: Path) -> tuple[Any, str | None]:
    """Parse a JSON file; return ``(None, problem)`` instead of raising."""
    if not path.is_file():
        return None, f"{path.name} missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} unreadable ({describe(exc)})"


def _read_parquet(path: Path, config: dict[str, Any] | None = None, summary: dict[str, Any] | None = None,
                  check: bool = False) -> tuple[pd.DataFrame | None, str | None]:
    """Read a Parquet table (CSV twin as fallback); ``(None, problem)`` when impossible. With
    ``check`` (a run's own table), one of another run or with the wrong columns
    (:func:`gradasym.schemas.check_table` against ``config``/``summary``) is ``(None, problem)`` too."""
    if path.is_file():
        try:
            frame = pd.read_parquet(path)
            meta = read_metadata(path) if check else {}
        except Exception as exc:  # pyarrow raises many types on truncated files
            return None, f"{path.name} unreadable ({type(exc).__name__})"
        problem = check_table(path.name, frame_view(path.name, frame, meta), config, summary) if check else None
        return (None, f"{problem}; not used") if problem else (frame, None)
    csv = path.with_suffix(".csv")
    if csv.is_file():
        try:
            return pd.read_csv(csv), None
        except Exception as exc:
            return None, f"{csv.name} unreadable ({type(exc).__name__})"
    return None, f"{path.name} missing"


def parse_run_id(run_id: str) -> dict[str, Any]:
    """Learning rates, preset and seed encoded in ``alr{a}_clr{c}[_{preset}]_s{seed}``.

    Returns an empty dict when ``run_id`` does not follow the pattern.
    """
    m = _RUN_ID.match(run_id)
    if not m:
        return {}
    out: dict[str, Any] = {"seed": int(m["seed"]), "presets": [m["preset"]] if m["preset"] else []}
    for key, name in (("alr", "actor_lr"), ("clr", "critic_lr")):
        try:
            out[name] = float(m[key])
        except ValueError:
            pass
    return out


def presets_label(presets: Any) -> str:
    """Canonical string for a preset list (``"layernorm+reward-norm"``; ``""`` = none)."""
    if presets is None or (isinstance(presets, float) and math.isnan(presets)):
        return ""
    if isinstance(presets, str):
        return presets
    try:
        return "+".join(str(p) for p in presets)
    except TypeError:
        return str(presets)


def _nested(d: dict[str, Any] | None, *keys: str) -> Any:
    """``d[k1][k2]...`` or None."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


#: The viable criterion's window: it compares the mean return of the first and of the last
#: 10 % of a run's episodes (``reward_first10`` / ``reward_last10``, SB3 ``return_first10`` /
#: ``final_return``); a window holds at least one episode.
IMPROVEMENT_WINDOW = 0.1


def _first10_last10(episodes: pd.DataFrame | None) -> tuple[float | None, float | None]:
    """Mean episode reward over the first / last 10 % of the episodes run (at least one)."""
    if episodes is None or "reward" not in episodes or len(episodes) == 0:
        return None, None
    r = episodes.sort_values("episode")["reward"] if "episode" in episodes else episodes["reward"]
    k = max(1, int(round(IMPROVEMENT_WINDOW * len(r))))
    return float(r.iloc[:k].mean()), float(r.iloc[-k:].mean())


def _all_stopped_from_episodes(episodes: pd.DataFrame | None, n_agents: int | None) -> int | None:
    """First episode where ``actors_stopped == n_agents`` (the run's stopping episode)."""
    if episodes is None or not n_agents or "actors_stopped" not in episodes:
        return None
    hit = episodes.loc[episodes["actors_stopped"] >= n_agents, "episode"]
    return int(hit.min()) if len(hit) else None


# ------------------------------------------------------------------ summaries
def _complete_summary(raw: dict[str, Any] | None, run_id: str, config: dict[str, Any] | None,
                      episodes: pd.DataFrame | None) -> dict[str, Any]:
    """Fill every contract key, taking what is missing from config, run id or episodes."""
    s: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    if raw:
        s.update(raw)
    from_id = parse_run_id(run_id)
    fallbacks = {
        "actor_lr": _nested(config, "agent", "actor_lr"),
        "critic_lr": _nested(config, "agent", "critic_lr"),
        "seed": _nested(config, "run", "seed"),
        "presets": _nested(config, "presets"),
        "actor_update": _nested(config, "agent", "actor_update"),
        "episodes_requested": _nested(config, "run", "episodes"),
        "version": _nested(config, "version"),
    }
    for key, value in fallbacks.items():
        if s.get(key) is None:
            s[key] = value if value is not None else from_id.get(key)
    if s.get("presets") is None:
        s["presets"] = []
    if s.get("episodes_run") is None and episodes is not None:
        s["episodes_run"] = int(episodes["episode"].max()) if "episode" in episodes and len(episodes) else 0
    if s.get("reward_first10") is None or s.get("reward_last10") is None:
        first, last = _first10_last10(episodes)
        s["reward_first10"] = s["reward_first10"] if s.get("reward_first10") is not None else first
        s["reward_last10"] = s["reward_last10"] if s.get("reward_last10") is not None else last
    if raw is None:
        s["status"] = STATUS_NO_SUMMARY
        s["stopping_episode"] = _all_stopped_from_episodes(episodes, _nested(config, "env", "n_agents"))
    return s


def read_summary(run_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """A run's ``summary.json`` with every contract key present, plus problems found.

    When ``summary.json`` is missing or unreadable the summary is reconstructed
    from ``config.json``, the run id and ``episodes.parquet`` (status
    ``"no summary"``).
    """
    run_dir = Path(run_dir)
    problems: list[str] = []
    raw, problem = _read_json(run_dir / "summary.json")
    config, cproblem = _read_json(run_dir / "config.json")
    raw, problem = _checked_summary(raw, problem, config)
    if problem:
        problems.append(problem)
    if cproblem:
        problems.append(cproblem)
    episodes = None
    if raw is None or raw.get("reward_first10") is None:
        episodes, _ = _read_parquet(run_dir / "episodes.parquet")
    summary = _complete_summary(raw, run_dir.name, config if isinstance(config, dict) else None, episodes)
    return summary, problems


def read_run(run_dir: str | Path, agents: bool = False) -> RunData:
    """Read one run folder; never raises for missing or broken files.

    ``tracking_agents.parquet`` is only read when ``agents`` is True (the report
    does not need it; it is the largest table).
    """
    run_dir = Path(run_dir)
    problems: list[str] = []
    raw, problem = _read_json(run_dir / "summary.json")
    config, cproblem = _read_json(run_dir / "config.json")
    if not isinstance(config, dict):
        config = None
    raw, problem = _checked_summary(raw, problem, config)
    episodes, eproblem = _read_parquet(run_dir / "episodes.parquet", config, raw, check=True)
    tracking, tproblem = _read_parquet(run_dir / "tracking.parquet", config, raw, check=True)
    agent_table, aproblem = (_read_parquet(run_dir / "tracking_agents.parquet", config, raw, check=True) if agents
                             else (None, None))
    if eproblem == "episodes.parquet missing" and raw is not None and raw.get("status") == "finished" \
            and ((run_dir / "checkpoint.pt").is_file() or (run_dir / "checkpoint.prev.pt").is_file()):
        eproblem += (f" although the run finished (`gradasym run --resume --out {run_dir}` restores it from "
                     "the checkpoint)")
    problems += [p for p in (problem, cproblem, eproblem, tproblem, aproblem) if p]
    summary = _complete_summary(raw, run_dir.name, config, episodes)
    return RunData(
        path=run_dir, run_id=run_dir.name, summary=summary, config=config,
        episodes=_sorted(episodes), tracking=_sorted(tracking), tracking_agents=agent_table,
        problems=problems, summary_source="summary.json" if raw is not None else "reconstructed",
    )


def _checked_summary(raw: Any, problem: str | None, config: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``summary.json``'s content if it is a valid summary of this run (:func:`gradasym.schemas.check_summary`
    against ``config.json``), else ``(None, problem)``: the report then reconstructs the summary."""
    if problem is not None:
        return None, problem
    bad = check_summary(raw, config if isinstance(config, dict) else None)
    if bad:
        return None, f"{bad}; not used" if isinstance(raw, dict) else bad
    return raw, None


def _sorted(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """Sort by episode (robust to tables written out of order)."""
    if df is None or "episode" not in df:
        return df
    return df.sort_values("episode", kind="stable").reset_index(drop=True)


def _summary_row(run_id: str, s: dict[str, Any]) -> dict[str, Any]:
    """One summary-table row (``SUMMARY_COLUMNS``) from a completed summary dict."""
    per_agent = s.get("per_agent_stop_episode")
    actors_stopped = (sum(v is not None for v in per_agent) if isinstance(per_agent, (list, tuple)) else None)
    row = {c: s.get(c) for c in SUMMARY_COLUMNS}
    row.update(run_id=run_id, presets=presets_label(s.get("presets")), actors_stopped=actors_stopped)
    return row


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def _run_dirs(runs_root: Path) -> list[Path]:
    """Sub-folders of ``runs_root`` (sorted), ignoring hidden/temporary ones."""
    if not runs_root.is_dir():
        return []
    return sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _typed_summary(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The summary rows as a DataFrame with stable dtypes (nullable ints, floats, strings)."""
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for col in ("actor_lr", "critic_lr", "max_abs_preactivation", "final_saturation_ratio",
                "reward_first10", "reward_last10", "seconds_per_episode"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("seed", "stopping_episode", "actors_stopped", "episodes_run"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    df["critic_stopped"] = df["critic_stopped"].astype("boolean")
    for col in ("run_id", "presets", "status", "error"):
        df[col] = df[col].astype("string")
    return df


def summarize_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run of a sweep, from each run's ``summary.json`` (``SUMMARY_COLUMNS``).

    ``actors_stopped`` counts the agents with a stop episode; ``presets`` is the
    preset list joined with ``+`` (``""`` for the baseline). Runs without a
    readable ``summary.json`` get a row reconstructed from ``config.json`` and
    ``episodes.parquet`` (status ``"no summary"``); runs listed in ``sweep.json``
    without a folder get status ``"pending"``. Accepts the sweep folder, its
    ``runs`` folder, or a single run folder.
    """
    root = Path(sweep_dir)
    if _is_run_dir(root):
        dirs = [root]
    else:
        dirs = _run_dirs(root / "runs") if (root / "runs").is_dir() else _run_dirs(root)
    rows = [_summary_row(d.name, read_summary(d)[0]) for d in dirs]
    meta, _ = _read_json(root / "sweep.json")
    present = {d.name for d in dirs}
    for rid in _sweep_run_ids(meta):
        if rid not in present:
            s = _complete_summary({"status": STATUS_PENDING}, rid, None, None)
            rows.append(_summary_row(rid, s))
    return _typed_summary(rows)


def write_sweep_summary(sweep_dir: str | Path) -> pd.DataFrame:
    """Write ``summary.parquet`` and ``summary.csv`` (atomically) into ``sweep_dir``; return the table."""
    root = Path(sweep_dir)
    df = summarize_sweep(root)
    atomic_write(root / "summary.parquet", lambda p: df.to_parquet(p, index=False))
    atomic_write(root / "summary.csv", lambda p: df.to_csv(p, index=False))
    return df


# ------------------------------------------------------------------ sweep.json
def _sweep_run_ids(meta: Any) -> list[str]:
    """Run ids listed in ``sweep.json`` (``run_ids``, or ``runs`` as ids/dicts/mapping)."""
    if not isinstance(meta, dict):
        return []
    for key in ("run_ids", "runs"):
        value = meta.get(key)
        if isinstance(value, dict):
            return [str(k) for k in value]
        if isinstance(value, list):
            ids = []
            for item in value:
                if isinstance(item, str):
                    ids.append(item)
                elif isinstance(item, dict):
                    rid = item.get("run_id", item.get("id"))
                    if rid is not None:
                        ids.append(str(rid))
            return ids
    return []


# ------------------------------------------------------------------ result sets
def load_results(path: str | Path, label: str | None = None) -> ResultSet:
    """Load a sweep folder, a single run folder or a folder of run folders.

    Never raises for content problems; a path that does not exist gives an empty
    result set whose ``problems`` say so.
    """
    root = Path(path)
    label = label or _default_label(root)
    if not root.exists():
        return ResultSet(root, "empty", problems=[f"{root} does not exist"], label=label)
    if _is_run_dir(root):
        run = read_run(root)
        return ResultSet(root, "run", runs=[run], label=label)
    meta, meta_problem = _read_json(root / "sweep.json")
    if (root / "runs").is_dir() or meta is not None:
        rs = ResultSet(root, "sweep", sweep=meta if isinstance(meta, dict) else None, label=label)
        if meta_problem:
            rs.problems.append(meta_problem)
        listed = set(_sweep_run_ids(meta))
        dirs = _run_dirs(root / "runs")
        if listed:  # a folder under runs/ that sweep.json does not list is not this sweep's: never counted
            for d in dirs:
                if d.name not in listed:
                    rs.problems.append(f"runs/{d.name} is not a run of this sweep (sweep.json does not list it); "
                                       "left out")
            dirs = [d for d in dirs if d.name in listed]
        rs.runs = [read_run(d) for d in dirs]
        _merge_sweep_table(rs, root)
        present = {r.run_id for r in rs.runs}
        rs.pending = [rid for rid in _sweep_run_ids(meta) if rid not in present]
        if not rs.runs:
            rs.problems.append("no run folders under runs/ yet")
        return rs
    dirs = [d for d in _run_dirs(root) if _is_run_dir(d)]
    if dirs:
        return ResultSet(root, "runs", runs=[read_run(d) for d in dirs], label=label)
    problems = [f"{root} holds no sweep or run folders"]
    if meta_problem and (root / "sweep.json").exists():
        problems.append(meta_problem)  # a damaged sweep.json: say so, not only that nothing is there
    return ResultSet(root, "empty", problems=problems, label=label)


def _table_value(v: Any) -> Any:
    """A summary-table cell as a plain Python value (None for missing)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _merge_sweep_table(rs: ResultSet, root: Path) -> None:
    """Use the sweep's ``summary.parquet`` where a run's own ``summary.json`` is missing.

    The sweep records the status and error of runs that died before writing their
    summary; rows whose run has no folder at all become runs of their own (unless
    merely pending).
    """
    table, _ = _read_parquet(root / "summary.parquet")
    if table is None or "run_id" not in table:
        return
    rows = {str(r["run_id"]): {k: _table_value(v) for k, v in r.items()} for r in table.to_dict("records")}
    by_id = {r.run_id: r for r in rs.runs}
    for rid, row in rows.items():
        run = by_id.get(rid)
        if run is not None and run.summary_source == "reconstructed":
            for key in ("status", "error", "episodes_run", "stopping_episode", "critic_stopped",
                        "max_abs_preactivation", "final_saturation_ratio", "final_rho", "reward_first10",
                        "reward_last10", "seconds_per_episode", "episodes_requested"):
                if row.get(key) is not None:
                    run.summary[key] = row[key]
            run.summary_source = "summary.parquet"
        elif run is None and row.get("status") not in (None, STATUS_PENDING, "pending"):
            raw = {k: v for k, v in row.items() if k in SUMMARY_KEYS and v is not None}
            raw["presets"] = [p for p in str(row.get("presets") or "").split("+") if p]
            summary = _complete_summary(raw, rid, None, None)
            rs.runs.append(RunData(path=root / "runs" / rid, run_id=rid, summary=summary,
                                   problems=["run folder missing (row of summary.parquet)"],
                                   summary_source="summary.parquet"))


def _default_label(root: Path) -> str:
    """A short name for a results folder (its name, or parent name for ``.../runs``)."""
    name = root.resolve().name if root.exists() else root.name
    if name == "runs" and root.resolve().parent.name:
        return root.resolve().parent.name
    return name or str(root)


def runs_frame(rs: ResultSet) -> pd.DataFrame:
    """One row per run of ``rs`` with the report's derived columns.

    Besides the summary keys: ``run_id``, ``set`` (the result set's label),
    ``group`` (preset label), ``n_agents``, ``stopped`` (all actors stopped),
    ``stop_value`` (stopping episode, or the episodes run when the actors never all
    stopped: the paper's convention of writing the training length), ``censored``
    (= not stopped), ``finished``, ``has_tracking``/``has_episodes``,
    ``grad_death_episode`` (:func:`run_grad_death_episode`) and ``provenance`` (the
    run's ``summary.json`` ``provenance`` dict, or None).
    """
    rows = []
    for run in rs.runs:
        s = run.summary
        row = {k: s.get(k) for k in SUMMARY_KEYS}
        row.update(run_id=run.run_id, set=rs.label, group=presets_label(s.get("presets")),
                   n_agents=_nested(run.config, "env", "n_agents") or _list_len(s.get("per_agent_stop_episode")),
                   has_tracking=run.tracking is not None and len(run.tracking) > 0,
                   has_episodes=run.episodes is not None and len(run.episodes) > 0,
                   summary_source=run.summary_source,
                   grad_death_episode=run_grad_death_episode(s.get("per_agent_grad_death_episode")),
                   provenance=s.get("provenance") if isinstance(s.get("provenance"), dict) else None,
                   trainer=s.get("trainer") if isinstance(s.get("trainer"), str) else None)
        rows.append(row)
    df = pd.DataFrame(rows, columns=SUMMARY_KEYS + ["run_id", "set", "group", "n_agents", "has_tracking",
                                                    "has_episodes", "summary_source", "grad_death_episode",
                                                    "provenance", "trainer"])
    for col in ("actor_lr", "critic_lr", "stopping_episode", "episodes_run", "episodes_requested",
                "max_abs_preactivation", "final_saturation_ratio", "final_rho", "reward_first10",
                "reward_last10", "seconds_per_episode", "seconds_total", "critic_stop_episode",
                "grad_death_episode"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["stopped"] = df["stopping_episode"].notna()
    df["censored"] = ~df["stopped"]
    df["stop_value"] = df["stopping_episode"].where(df["stopped"], df["episodes_run"])
    df["finished"] = df["status"] == "finished"
    df["status"] = df["status"].fillna(STATUS_NO_SUMMARY)
    return df


def run_grad_death_episode(per_agent: Any) -> int | None:
    """Run-level gradient-death episode: from when on every actor's gradient was dead.

    ``per_agent`` is ``summary.json`` ``per_agent_grad_death_episode``: per agent, the
    first episode of its current, still ongoing run of dead gradients (norm below
    ``run.grad_death_threshold`` or exactly 0), None while alive. When every agent has
    one, the run's episode is their maximum (the first episode from which all actors'
    gradients stayed dead to the end); otherwise None (some actor's gradient is alive).
    """
    if not isinstance(per_agent, (list, tuple)) or not per_agent:
        return None
    values = []
    for v in per_agent:
        if v is None or isinstance(v, bool):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        values.append(f)
    return int(max(values))


def _list_len(value: Any) -> int | None:
    return len(value) if isinstance(value, (list, tuple)) else None
