"""The sampling settings `generate` and `serve` share: a torch-free module, so that the
command line can show their defaults without importing torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from .repetition import RepetitionConfig


class GenerationError(Exception):
    pass


@dataclass
class SamplingConfig:
    length: int = 2000            # characters to write per sample
    temperature: float = 0.9
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.0   # sign-aware; 1.0 = off
    penalty_window: int = 64          # recent tokens it looks at
    seed: int | None = None
    num_samples: int = 1
    batch_size: int = 1
    repetition: RepetitionConfig = field(default_factory=RepetitionConfig)

    def __post_init__(self):
        if self.length < 1:
            raise ValueError("length must be >= 1 character")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError("top_k must be >= 0 and repetition_penalty > 0")
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")
