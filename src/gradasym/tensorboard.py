"""TensorBoard scalars of a run (``run.tensorboard``, ``--tensorboard``): ``RUN/tensorboard/``.

The scalars are the rows the runner already keeps (``Trainer.episode_rows`` and
``Trainer.tracking_rows``, i.e. the columns of ``episodes.parquet`` and
``tracking.parquet``), written with ``torch.utils.tensorboard.SummaryWriter`` (the
``tensorboard`` extra) at every checkpoint and when the run ends, with the episode as
the step. Tags (``docs/tensorboard.md``):

* ``episode/<column>`` for every numeric column of ``episodes.parquet`` except
  ``episode`` (booleans as 0/1);
* ``tracking/<column>`` for every numeric column of ``tracking.parquet`` except
  ``episode``, per-layer ones (``tracking/actor_grad_norm_l0`` ...) included.

A NaN that only means "not measured at this episode" is not written: ``eval_reward``
of an episode without evaluation and the losses of an episode without an update.

Resuming neither duplicates nor loses steps: ``tensorboard/written.json`` records the
last episode whose rows were flushed to the event files. A (re)started run continues
after ``min(that, episodes in the checkpoint)`` and opens its writer with
``purge_step`` just after it, so TensorBoard hides the steps a killed process wrote
past its last checkpoint; they are written again by the resumed run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from .config import ConfigError
from .io import read_json, write_json

DIRNAME = "tensorboard"
MARKER = "written.json"
INSTALL_HINT = "pip install 'gradasym[tensorboard]'"

# Values that are NaN by construction when nothing was measured at that step.
_UNMEASURED_WITHOUT_UPDATE = ("critic_loss", "actor_loss")


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``; ConfigError naming the extra when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            f"--tensorboard (run.tensorboard) needs the 'tensorboard' extra: {INSTALL_HINT}"
        ) from None
    return SummaryWriter


def require() -> None:
    """Fail fast (before any training) when TensorBoard logging cannot work."""
    summary_writer_class()


def _scalars(row: dict[str, Any], prefix: str) -> Iterable[tuple[str, float]]:
    """(tag, value) of a row's numeric columns, skipping the step and unmeasured NaNs."""
    for key, value in row.items():
        if key == "episode" or isinstance(value, str) or value is None:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isnan(v) and (key == "eval_reward"
                              or (key in _UNMEASURED_WITHOUT_UPDATE and not row.get("updated", True))):
            continue
        yield f"{prefix}/{key}", v


class TensorBoardLog:
    """The event files of one run folder, fed with the trainer's rows that are not written yet."""

    def __init__(self, run_dir: str | Path, episodes_in_checkpoint: int) -> None:
        writer_cls = summary_writer_class()
        self.dir = Path(run_dir) / DIRNAME
        has_events = self.dir.is_dir() and any(self.dir.glob("events.out.tfevents.*"))
        marker = read_json(self.dir / MARKER) if has_events else None
        last = int(marker["episode"]) if isinstance(marker, dict) and "episode" in marker else 0
        #: last episode whose rows are in the event files (and will stay visible)
        self.written = min(last, episodes_in_checkpoint)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = writer_cls(log_dir=str(self.dir),
                                 purge_step=self.written + 1 if has_events else None)

    def write(self, trainer: Any) -> None:
        """Write the rows of episodes after :attr:`written`, flush, and record the new mark."""
        last = self.written
        for row in trainer.episode_rows:
            if row["episode"] > last:
                for tag, v in _scalars(row, "episode"):
                    self.writer.add_scalar(tag, v, global_step=int(row["episode"]))
        for row in trainer.tracking_rows:
            if row["episode"] > last:
                for tag, v in _scalars(row, "tracking"):
                    self.writer.add_scalar(tag, v, global_step=int(row["episode"]))
        self.writer.flush()
        self.written = max(last, int(trainer.episodes_done))
        write_json(self.dir / MARKER, {"episode": self.written})

    def close(self, trainer: Any | None = None) -> None:
        """Write what is left (when ``trainer`` is given), then close the event file."""
        try:
            if trainer is not None:
                self.write(trainer)
        finally:
            self.writer.close()


def open_for_run(enabled: bool, run_dir: str | Path, trainer: Any) -> TensorBoardLog | None:
    """The run's :class:`TensorBoardLog` when ``enabled`` (``run.tensorboard``), else None."""
    if not enabled:
        return None
    return TensorBoardLog(run_dir, trainer.episodes_done)
