"""Sweeps: grids x seeds of runs, resumable, on local processes, Ray or SLURM.

Public API (see ``docs/sweeps.md``)::

    from gradasym.sweep import SweepSpec, run_sweep, SweepResult, reproduce

    spec = SweepSpec(base=load_config(...), seeds=[42, 43])   # default axes: the paper's 4x4 grid
    table = run_sweep(spec, "results/grid", workers=2)
    SweepResult.from_table(table).exit_code
"""

from .commands import add_cli
from .backends import Job, RunInterrupted, Runner, execute_run
from .core import (SweepInterrupted, SweepResult, collect_summary, default_runner, exit_code, load_spec,
                   resolve_threads, run_sweep)
from .reproduction import (DEFAULT_SEEDS, FULL_EARLY_STOP, FULL_EARLY_STOP_PATIENCE, FULL_EPISODES,
                        REDUCED_EARLY_STOP, REDUCED_EARLY_STOP_PATIENCE, REDUCED_EPISODES,
                        print_stopping_grid, reproduce, reproduce_spec, stopping_grid)
from .spec import (PAPER_LEARNING_RATES, RunSpec, SweepSpec, build_base_config, format_value, make_run_id,
                   paper_axes, parse_axis, parse_preset_combo)
from .store import (EXTRA_COLUMNS, SUMMARY_COLUMNS, SweepError, SweepMismatchError, atomic_write,
                    read_summary, write_summary)

__all__ = [
    "add_cli", "DEFAULT_SEEDS", "EXTRA_COLUMNS", "FULL_EARLY_STOP", "FULL_EARLY_STOP_PATIENCE", "FULL_EPISODES",
    "Job", "PAPER_LEARNING_RATES", "REDUCED_EARLY_STOP", "REDUCED_EARLY_STOP_PATIENCE",
    "REDUCED_EPISODES", "RunInterrupted", "RunSpec", "Runner", "SUMMARY_COLUMNS", "SweepError",
    "SweepInterrupted", "SweepMismatchError", "SweepResult", "SweepSpec", "atomic_write",
    "build_base_config", "collect_summary", "default_runner", "execute_run",
    "exit_code", "format_value", "load_spec", "make_run_id", "paper_axes", "parse_axis",
    "parse_preset_combo", "print_stopping_grid", "read_summary", "reproduce", "reproduce_spec",
    "resolve_threads", "run_sweep", "stopping_grid", "write_summary",
]
