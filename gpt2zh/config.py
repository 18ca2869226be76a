"""Model and training configs: dataclasses validated on construction, named presets
in `configs/*.json` (minGPT's registry, litgpt's `from_name`), every field
overridable with `key=value`."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


class ConfigError(Exception):
    pass


def _configs_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "configs", here / "configs"):  # checkout / editable install, or wheel
        if cand.is_dir():
            return cand
    raise ConfigError("cannot find the configs/ directory of presets")


@dataclass
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_ctx: int = 256             # training window
    n_positions: int | None = None  # position table size; defaults to n_ctx
    dropout: float = 0.0
    vocab_size: int = 0          # taken from the shards' tokenizer, padded to a multiple of 64

    def __post_init__(self):
        if self.n_positions is None:
            self.n_positions = self.n_ctx
        for name in ("n_layer", "n_head", "n_embd", "n_ctx"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_ctx > self.n_positions:
            raise ConfigError(f"n_ctx ({self.n_ctx}) must be <= n_positions ({self.n_positions})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @staticmethod
    def padded_vocab(n: int, multiple: int = 64) -> int:
        # Matmuls on a vocabulary padded to 64 run on tensor-core friendly shapes.
        return (n + multiple - 1) // multiple * multiple


@dataclass
class TrainConfig:
    batch_size: int = 8          # global batch, in windows, per optimizer step
    grad_accum: int = 1          # micro-batches per optimizer step (batch_size is split across them)
    lr: float = 3e-4             # fixed (the notes' recipe), unless a cool-down is asked for
    warmup_steps: int = 0        # opt-in linear warm-up, then the fixed rate
    cooldown: float = 0.0        # a linear decay to 0 over this last fraction of the steps (or of --max-minutes)
    optimizer: str = "adamw"     # adamw | muon (Muon on the blocks' matrices, AdamW on the rest)
    muon_momentum: float = 0.95
    muon_precision: str = "auto"  # Newton-Schulz in: auto (bf16 where matmuls run natively in it) | fp32 | bf16
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    stride: int | None = None    # window starts this many tokens apart; None = n_ctx // 2
    max_steps: int | None = None
    epochs: float | None = None  # used when max_steps is None
    eval_interval: int = 200
    eval_max_tokens: int | None = None  # cap on validation tokens per evaluation (None: all)
    save_steps: int = 500
    keep_last: int = 2
    log_interval: int = 10
    seed: int = 1337
    precision: str = "auto"      # auto (bf16 on capable GPUs, fp32 elsewhere) | fp32 | bf16 | fp16
    compile: str = "auto"        # auto (on for CUDA) | on | off
    fused_adamw: str = "auto"    # auto (on for CUDA) | on | off: AdamW's fused kernel
    prefetch: int = 4            # batches prepared ahead in a background thread

    def __post_init__(self):
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be >= 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.cooldown < 1:
            raise ConfigError(f"cooldown must be a fraction of the run in [0, 1), got {self.cooldown}")
        if self.optimizer not in ("adamw", "muon"):
            raise ConfigError(f"optimizer must be adamw or muon, got {self.optimizer!r}")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if self.muon_precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"muon_precision must be auto, fp32 or bf16, got {self.muon_precision!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        for name in ("compile", "fused_adamw"):
            if getattr(self, name) not in ("auto", "on", "off"):
                raise ConfigError(f"{name} must be auto, on or off, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError("max_steps must be >= 0")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError("epochs must be > 0")
        if self.stride is not None and self.stride < 1:
            raise ConfigError("stride must be >= 1")
        for name in ("eval_interval", "save_steps", "keep_last", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "custom"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, name: str = "custom") -> "RunConfig":
        try:
            return cls(model=ModelConfig(**d.get("model", {})), train=TrainConfig(**d.get("train", {})),
                       name=d.get("name", name))
        except TypeError as e:
            raise ConfigError(f"config {name}: {e}") from None

    @classmethod
    def from_name(cls, name: str) -> "RunConfig":
        """A preset from configs/NAME.json, or a path to a JSON file of the same shape."""
        path = Path(name)
        if not (path.suffix == ".json" and path.exists()):
            path = _configs_dir() / f"{name}.json"
        if not path.exists():
            raise ConfigError(f"no config {name!r}; presets: {', '.join(preset_names())}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, name=path.stem)

    def override(self, items: list[str]) -> "RunConfig":
        """Apply `key=value` items; a key names a field of model or train (unique across both)."""
        model, train = asdict(self.model), asdict(self.train)
        types = {f.name: f.type for f in fields(ModelConfig)} | {f.name: f.type for f in fields(TrainConfig)}
        tied = self.model.n_positions == self.model.n_ctx
        given = set()
        for item in items:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected key=value")
            key, raw = item.split("=", 1)
            key = key.strip().replace("-", "_")
            target = model if key in model else train if key in train else None
            if target is None:
                raise ConfigError(f"override {item!r}: unknown field {key!r}; fields: {', '.join(sorted(types))}")
            target[key] = _parse_value(raw, str(types[key]), key)
            given.add(key)
        if tied and "n_positions" not in given:  # a preset's position table follows its window
            model["n_positions"] = model["n_ctx"]
        return RunConfig.from_dict({"model": model, "train": train}, self.name)


def _parse_value(raw: str, typ: str, key: str):
    raw = raw.strip()
    if raw.lower() in ("none", "null") and "None" in typ:
        return None
    try:
        if typ.startswith("int"):
            return int(raw)
        if typ.startswith("float"):
            return float(raw)
        if typ.startswith("bool"):
            return raw.lower() in ("1", "true", "yes", "on")
        return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected {typ}") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in _configs_dir().glob("*.json"))
