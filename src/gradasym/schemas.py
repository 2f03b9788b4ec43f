"""One check per kind of file a run folder holds, so that a damaged or foreign file is never read as valid.

A results folder is data that may have been copied, edited or half written. Every reader of a
run's files (``gradasym run --resume``, the sweep driver, the report) asks this module, per file
kind, whether the file is this run's and well formed; each check returns one line naming the
file and the problem, or None:

* ``summary.json`` (:func:`check_summary`): a JSON object whose number, flag and per-agent fields
  have their types, and which belongs to this run: its ``run_identity`` (:func:`run_identity`,
  written by every run) equals that of ``config.json``; a summary written before runs stored it
  is compared on the fields both files hold (seed, learning rates, presets);
* ``episodes.parquet``, ``tracking.parquet``, ``tracking_agents.parquet`` (:func:`check_table`):
  readable, with the algorithm's key columns (``Algorithm.table_columns``), every column numeric
  (or true/false, or empty), the
  ``run_identity`` stored in the Parquet metadata equal to ``config.json``'s, episodes numbered
  1..n and, for a finished run, not fewer than its summary's ``episodes_run`` (more: a run
  being extended, killed between writing its tables and its summary);
* ``checkpoint.pt`` (:func:`check_checkpoint`): the same nested keys, value kinds, tensor dtypes
  and shapes as the state a fresh run of the stored configuration produces (a first dimension
  that is empty there, a replay buffer's, may have any length), and an episode count that
  agrees with the stored rows. Called before anything is loaded into the trainer.

:func:`check_run_files` applies the first two to a folder (the checkpoint needs its trainer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Key of ``summary.json`` and of the tables' Parquet metadata holding :func:`run_identity`.
IDENTITY_KEY = "run_identity"
#: ``config.json`` fields left out of :func:`run_identity`: the gradasym version, the engine a run
#: resolved to (``engine_used``), and the fields a resumed run may change without becoming another run
#: (its length in episodes or steps, threads, device, engine, outputs): every runner's resumable fields.
IDENTITY_IGNORED: frozenset[tuple[str, str]] = frozenset({
    ("run", "episodes"), ("run", "steps"), ("run", "threads"), ("run", "device"), ("run", "tensorboard"),
    ("run", "keep_replay"), ("run", "engine")})
IDENTITY_IGNORED_TOP = ("version", "engine_used")
TABLES = ("episodes.parquet", "tracking.parquet", "tracking_agents.parquet")

#: ``summary.json`` fields that are numbers (or null) for every algorithm.
SUMMARY_NUMBERS = frozenset({
    "actor_lr", "critic_lr", "ent_coef_lr", "seed", "episodes_requested", "episodes_run", "stopping_episode",
    "critic_stop_episode", "max_abs_preactivation", "final_saturation_ratio", "final_rho", "reward_first10",
    "reward_last10", "seconds_total", "seconds_per_episode", "steps_requested", "steps_run", "gradient_steps",
    "actor_updates", "stopping_step", "grad_death_step", "critic_stop_step", "diverged_step",
    "actor_diverged_step", "critic_diverged_step", "return_first10", "final_return", "seconds_per_step"})
#: ``summary.json`` fields that are true/false (or null).
SUMMARY_FLAGS = frozenset({"critic_stopped", "all_frozen_at_end", "early_stopped", "diverged"})
#: ``summary.json`` fields that are lists of per-agent episodes (integers or null).
SUMMARY_PER_AGENT = frozenset({"per_agent_stop_episode", "per_agent_grad_death_episode", "per_agent_diverged_step"})
#: Fields of a summary compared with ``config.json`` when it has no ``run_identity`` (older runs).
_IDENTITY_FIELDS = {"seed": ("run", "seed"), "actor_lr": ("agent", "actor_lr"), "critic_lr": ("agent", "critic_lr"),
                    "actor_update": ("agent", "actor_update"), "tracking": ("run", "tracking")}


# ------------------------------------------------------------------ identity
def run_identity(config_record: dict[str, Any]) -> str:
    """A short hash of a run's ``config.json`` content without :data:`IDENTITY_IGNORED` and
    :data:`IDENTITY_IGNORED_TOP`: equal for the files of one run (also after it was resumed or extended), different for
    a run of another configuration or seed."""
    data = json.loads(json.dumps(config_record))  # tuples as lists, as in config.json
    for key in IDENTITY_IGNORED_TOP:
        data.pop(key, None)
    for section, name in IDENTITY_IGNORED:
        if isinstance(data.get(section), dict):
            data[section].pop(name, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------ summary.json
def check_summary(summary: Any, config: dict[str, Any] | None, types: bool = True) -> str | None:
    """The problem of a run's ``summary.json`` content (None: valid and this run's). ``config`` is
    its ``config.json`` (None: absent, only the types are checked); ``types=False`` checks only
    that it is this run's."""
    if not isinstance(summary, dict):
        return "summary.json is not a JSON object"
    problem = _summary_types(summary) if types else None
    return problem or _summary_identity(summary, config)


def _summary_types(summary: dict[str, Any]) -> str | None:
    if summary.get("status") is not None and not isinstance(summary.get("status"), str):
        return f"summary.json: status is {summary['status']!r}, not a text"
    for key in sorted(SUMMARY_NUMBERS & summary.keys()):
        if summary[key] is not None and not _number(summary[key]):
            return f"summary.json: {key} is {summary[key]!r}, not a number"
    for key in sorted(SUMMARY_FLAGS & summary.keys()):
        if summary[key] is not None and not isinstance(summary[key], bool):
            return f"summary.json: {key} is {summary[key]!r}, not true/false"
    for key in sorted(SUMMARY_PER_AGENT & summary.keys()):
        v = summary[key]
        if v is not None and not (isinstance(v, list) and all(e is None or _number(e) for e in v)):
            return f"summary.json: {key} is not a list of episodes"
    return None


def _summary_identity(summary: dict[str, Any], config: dict[str, Any] | None) -> str | None:
    if not isinstance(config, dict):
        return None
    stored = summary.get(IDENTITY_KEY)
    if stored is not None:
        if stored != run_identity(config):
            return ("summary.json belongs to another run (its run_identity differs from config.json's: "
                    "copied from another run folder?)")
        return None
    for key, (section, name) in _IDENTITY_FIELDS.items():  # written before runs stored their identity
        mine = config.get(section, {}).get(name) if isinstance(config.get(section), dict) else None
        if key in summary and summary[key] is not None and mine is not None and summary[key] != mine:
            return (f"summary.json belongs to another run ({key} {summary[key]!r}, config.json says {mine!r}: "
                    "copied from another run folder?)")
    presets = summary.get("presets")
    if isinstance(presets, list) and isinstance(config.get("presets"), list) \
            and sorted(map(str, presets)) != sorted(map(str, config["presets"])):
        return f"summary.json belongs to another run (presets {presets}, config.json says {config['presets']})"
    return None


# ------------------------------------------------------------------ tables
def table_metadata(config_record: dict[str, Any]) -> dict[str, str]:
    """The Parquet metadata a run's tables carry (:data:`IDENTITY_KEY`)."""
    return {IDENTITY_KEY: run_identity(config_record)}


@dataclass
class TableView:
    """What :func:`check_table` needs of a table: its columns (name -> numeric or boolean?), rows,
    the ``episode`` column's values (episode tables only) and its Parquet metadata."""

    numeric: dict[str, bool]
    rows: int
    episodes: list[Any] | None
    meta: dict[str, str]


def table_view(path: Path) -> TableView:
    """A :class:`TableView` of a Parquet file from its footer (and its ``episode`` column for
    ``episodes.parquet``), without reading the whole table."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    with pq.ParquetFile(path) as pf:
        schema = pf.schema_arrow
        numeric = {f.name: pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)
                   or pa.types.is_null(f.type) for f in schema}
        episodes = None
        if path.name == "episodes.parquet" and "episode" in schema.names:
            episodes = pf.read(columns=["episode"]).column("episode").to_pylist()
        return TableView(numeric, pf.metadata.num_rows, episodes, _metadata(schema.metadata))


def frame_view(name: str, frame: Any, meta: dict[str, str]) -> TableView:
    """A :class:`TableView` of a table already read into pandas (``meta``: :func:`read_metadata`)."""
    import pandas as pd  # noqa: PLC0415

    numeric = {str(c): bool(pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
                            or frame[c].isna().all()) for c in frame.columns}
    episodes = frame["episode"].tolist() if name == "episodes.parquet" and "episode" in frame.columns else None
    return TableView(numeric, len(frame), episodes, meta)


def read_metadata(path: Path) -> dict[str, str]:
    """A Parquet file's own key/value metadata (not pandas')."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    return _metadata(pq.read_schema(path).metadata)


def _metadata(raw: dict[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (raw or {}).items() if k != b"pandas"}


def _table_columns(config: dict[str, Any] | None, name: str) -> tuple[str, ...]:
    from gradasym import algos  # noqa: PLC0415 - the algorithm's own columns

    try:
        plugin = algos.get((config or {}).get("algo"))
    except Exception:  # noqa: BLE001 - an unknown algo: no column requirements
        return ()
    return tuple(getattr(plugin, "table_columns", {}).get(name, ()))


def check_table(name: str, table: TableView, config: dict[str, Any] | None,
                summary: dict[str, Any] | None = None) -> str | None:
    """The problem of a run's table ``name`` (None: valid and this run's)."""
    stored = table.meta.get(IDENTITY_KEY)
    if stored is not None and isinstance(config, dict) and stored != run_identity(config):
        return f"{name} belongs to another run (its run_identity differs from config.json's: copied?)"
    for column in _table_columns(config, name) if table.rows else ():  # no rows yet: no columns either
        if column not in table.numeric:
            return f"{name} lacks the column {column!r}"
    for column, numeric in table.numeric.items():  # every column of a run's tables is a number or a flag
        if not numeric:
            return f"{name}: column {column!r} does not hold numbers"
    if table.episodes is not None and table.rows:
        try:
            numbered = sorted(int(e) for e in table.episodes) == list(range(1, table.rows + 1))
        except (TypeError, ValueError):
            numbered = False
        if not numbered:
            return f"{name}: episodes are not numbered 1..{table.rows}"
    done = (summary or {}).get("episodes_run")  # fewer rows only: a run extended and killed before its
    if name == "episodes.parquet" and (summary or {}).get("status") == "finished" and _number(done) \
            and table.rows < done:  # summary was rewritten has more
        return f"{name} holds {table.rows} episodes, its finished run's summary.json {done}"
    return None


def check_run_files(run_dir: str | Path, config: dict[str, Any] | None, summary_types: bool = True) -> list[str]:
    """The problems of a run folder's ``summary.json`` and tables (absent files are not problems
    here: readers say so themselves), each one line starting with the file name.
    ``summary_types=False``: a summary with a value of the wrong type is not a problem here (a
    resumed run rewrites it, :func:`summary_type_problem` says so), one of another run is."""
    run_dir = Path(run_dir)
    from gradasym.io import read_json  # noqa: PLC0415

    problems: list[str] = []
    summary = None
    if (run_dir / "summary.json").is_file():
        try:
            summary = read_json(run_dir / "summary.json")
        except (OSError, ValueError):
            summary = None  # unreadable: the readers' own message
        else:
            problem = check_summary(summary, config, types=summary_types)
            if problem:
                problems.append(problem)
                summary = None
    for name in TABLES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            view = table_view(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on damaged files
            problems.append(f"{name} is unreadable ({type(exc).__name__})")
            continue
        problem = check_table(name, view, config, summary)
        if problem:
            problems.append(problem)
    return problems


def summary_type_problem(run_dir: str | Path) -> str | None:
    """The type problem of a run folder's ``summary.json`` (:func:`check_summary`), if any."""
    from gradasym.io import read_json  # noqa: PLC0415

    try:
        summary = read_json(Path(run_dir) / "summary.json")
    except (OSError, ValueError):
        return None
    return _summary_types(summary) if isinstance(summary, dict) else None


# ------------------------------------------------------------------ checkpoint.pt
#: Checkpoint keys a checkpoint written by an earlier gradasym may lack: their loaders restore the
#: documented default (monitor events implied by its recorded steps, no initial weights for the
#: plasticity distances, no weight decay).
CHECKPOINT_OPTIONAL: frozenset[str] = frozenset({"monitor.events", "monitor.plasticity", "agent.actor_optim.weight_decay"})
#: Checkpoint keys whose content is checked elsewhere: ``config`` by the run folder's stored-config check
#: (``RunFolder.check_config``: fields added since take their defaults), ``monitor.stats`` (the monitor's
#: last statistics, whose keys follow its instruments) by ``ActorCriticMonitor.load_state_dict``.
CHECKPOINT_UNCHECKED: frozenset[str] = frozenset({"config", "monitor.stats"})


def check_checkpoint(state: Any, template: dict[str, Any]) -> None:
    """Raise ``ValueError`` (one line naming the key) unless ``state`` has ``template``'s structure:
    the same keys at every level, the same kind of value (mapping, list, tensor, number, text) where
    both are set, tensors of the same dtype and shape (a dimension empty in the template, e.g. an
    empty replay buffer's, may have any length), and ``episodes_done`` equal to the episode rows."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    def kind(v: Any) -> str:
        if isinstance(v, np.generic) and not isinstance(v, np.bool_):
            return "a number"
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, (list, tuple)):
            return "a list"
        if isinstance(v, torch.Tensor):
            return "a tensor"
        if isinstance(v, bool):
            return "true/false"
        if isinstance(v, np.bool_):
            return "true/false"
        if _number(v):
            return "a number"
        if isinstance(v, np.ndarray):
            return "an array"
        return type(v).__name__

    def walk(want: Any, got: Any, where: str) -> None:
        if want is None or got is None:
            return  # optional values (None until set) are not compared
        if isinstance(want, dict):
            if not isinstance(got, dict):
                raise ValueError(f"checkpoint key {where or '<root>'} is {kind(got)}, not a mapping")
            missing = [k for k in want if k not in got and f"{where}.{k}".lstrip(".") not in CHECKPOINT_OPTIONAL]
            if missing:
                keys = ", ".join(f"{where}.{k}".lstrip(".") for k in missing[:3])
                raise ValueError(f"checkpoint lacks the key(s) {keys}")
            for k, v in want.items():
                path = f"{where}.{k}".lstrip(".")
                if k in got and path not in CHECKPOINT_UNCHECKED:
                    walk(v, got[k], path)
            return
        if isinstance(want, torch.Tensor):
            if not isinstance(got, torch.Tensor):
                raise ValueError(f"checkpoint key {where} is {kind(got)}, not a tensor")
            same = got.dtype == want.dtype and got.dim() == want.dim() and all(
                w == 0 or g == w for w, g in zip(want.shape, got.shape))
            if not same:
                have, need = (f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}" for t in (got, want))
                raise ValueError(f"checkpoint key {where} is a {have} tensor, this configuration needs {need}")
            return
        if isinstance(want, np.ndarray):
            if not (isinstance(got, np.ndarray) and tuple(got.shape) == tuple(want.shape)):
                raise ValueError(f"checkpoint key {where} has shape {getattr(got, 'shape', None)}, this "
                                 f"configuration needs {tuple(want.shape)}")
            return
        if kind(want) != kind(got) and not (kind(want) == "a number" and kind(got) == "a number"):
            raise ValueError(f"checkpoint key {where} is {kind(got)}, not {kind(want)}")
        if isinstance(want, (list, tuple)) and want and isinstance(want[0], (dict, torch.Tensor)) \
                and len(want) == len(got):  # fixed-length lists of parts (layers, parameters)
            for i, (w, g) in enumerate(zip(want, got)):
                walk(w, g, f"{where}[{i}]")

    walk(template, state, "")
    done, rows = state.get("episodes_done"), state.get("episode_rows")
    if isinstance(rows, list) and done is not None:
        if not isinstance(done, int) or isinstance(done, bool) or done != len(rows):
            raise ValueError(f"checkpoint says {done!r} episodes done but holds {len(rows)} episode rows")
        numbers = [r.get("episode") if isinstance(r, dict) else None for r in rows]
        if numbers != list(range(1, len(rows) + 1)):
            raise ValueError(f"checkpoint episode rows are not episodes 1..{len(rows)}")
        late = [r.get("episode") for r in state.get("tracking_rows") or [] if isinstance(r, dict)
                and not (_number(r.get("episode")) and r.get("episode") <= done)]
        if late:
            raise ValueError(f"checkpoint tracking rows name episode {late[0]!r}, after the {done} done")

