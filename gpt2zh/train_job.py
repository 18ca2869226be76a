"""What `gpt2zh train` is asked to do, and how it fails: a torch-free module, so that the
command line checks a job and reports errors without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig


class TrainingError(Exception):
    pass


class DivergedError(TrainingError):
    """The loss went NaN or infinite: the run stopped (its own exit code)."""


@dataclass
class TrainJob:
    data: str
    out: str
    run: RunConfig
    resume: bool = False
    init_from: str | None = None
    max_minutes: float | None = None   # wall-clock budget; stops with an evaluation and a checkpoint
    log_with: str | None = None        # an Accelerate tracker, e.g. "tensorboard"
    progress: bool = True
    live_plot: bool | None = None      # livelossplot in a notebook: None = on when in one, True = asked for
    peak_tflops: float | None = None
