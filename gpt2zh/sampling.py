"""The sampling settings `generate` and `serve` share: a torch-free module, so that the
command line can show their defaults without importing torch. Each user setting is declared
once here (`options.knob`); the CLI flags, the API fields and `/v1/defaults` derive from it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .options import Knob, SettingError, check_knobs, knob, knobs_of
from .repetition import RepetitionConfig


class GenerationError(Exception):
    pass


@dataclass
class SamplingConfig:
    length: int = 2000            # characters to write per sample
    # below 0.01, logits / temperature can overflow float32 (the API's 0 means greedy instead)
    temperature: float = knob(0.9, "sampling temperature", 0.01, 100.0)
    top_k: int = knob(40, "keep the k most likely tokens (0 = off)", 0, 2 ** 31 - 1)
    top_p: float = knob(0.95, "nucleus: keep tokens up to this probability mass", 0.0, 1.0, low_open=True)
    # 1.3 over 128 tokens, by bench/chapters.py: the one set-up that kept the 15-minute model inside the
    # human bands (fixation, 4-gram, distinct-2, guard) and left no collapsed window in the demo-like
    # model's chapters (1.0 over 64, the notes' way: one character over 20% in 49-91% of its windows)
    repetition_penalty: float = knob(1.3, "sign-aware penalty on tokens of the last --penalty-window tokens "
                                          "(1.0 = off)", 0.1, 10.0)
    penalty_window: int = knob(128, "tokens the repetition penalty sees", 1, 1_000_000)
    # OpenAI's definitions: logit - count * frequency_penalty - (count > 0) * presence_penalty, counted
    # over the text generated so far
    presence_penalty: float = knob(0.0, "OpenAI's presence penalty over the text generated so far", -2.0, 2.0)
    frequency_penalty: float = knob(0.0, "OpenAI's frequency penalty over the text generated so far", -2.0, 2.0)
    seed: int | None = None
    num_samples: int = 1
    batch_size: int = 1
    repetition: RepetitionConfig = field(default_factory=RepetitionConfig)

    def __post_init__(self):
        if self.length < 1:
            raise SettingError("length", "length must be >= 1 character")
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")
        check_knobs(self)

    @staticmethod
    def knobs() -> list[Knob]:
        """Every user setting of sampling and repetition, by its API/CLI name."""
        return knobs_of(SamplingConfig) + knobs_of(RepetitionConfig)

    def with_knobs(self, values: dict, **other) -> "SamplingConfig":
        """A copy with the knobs in `values` (by API/CLI name; missing ones keep this config's)
        and the other fields in `other`. SettingError names a knob out of range."""
        own = {k.name: k.attr for k in knobs_of(SamplingConfig)}
        rep = {k.name: k.attr for k in knobs_of(RepetitionConfig)}
        unknown = set(values) - own.keys() - rep.keys()
        if unknown:
            raise SettingError(sorted(unknown)[0], f"unknown setting {sorted(unknown)[0]!r}")
        r = replace(self.repetition, **{rep[n]: v for n, v in values.items() if n in rep})
        return replace(self, repetition=r, **{own[n]: v for n, v in values.items() if n in own}, **other)

    def knob_values(self) -> dict:
        """{API name: value} of every knob (what `/v1/defaults` shows)."""
        return {**{k.name: getattr(self, k.attr) for k in knobs_of(SamplingConfig)},
                **{k.name: getattr(self.repetition, k.attr) for k in knobs_of(RepetitionConfig)}}
