"""Settings declared once.

A tunable field of a config dataclass is declared with `knob(...)`: its default, its help
text and its range live in the field's metadata. Everything else is derived from that one
declaration: the range check at construction, the command-line flags of `generate` and
`serve` (`--top-k` for `top_k`), the fields of the completions API and the defaults the
server shows at `/v1/defaults`. Torch-free, so the command line stays fast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


class SettingError(ValueError):
    """A setting out of its range or of the wrong type; `name` is the field as the user wrote it."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Knob:
    name: str                 # the API field; the CLI flag is --name-with-dashes
    attr: str                 # the dataclass attribute (differs where the API name reads better)
    kind: type                # int, float or str
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False    # low itself is not allowed
    choices: tuple = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, v):
        """The value, checked for type and range (SettingError naming the field otherwise)."""
        if self.kind is str:
            if not isinstance(v, str):
                raise SettingError(self.name, f"'{self.name}' must be a string, got {_show(v)}")
            if self.choices and v not in self.choices:
                raise SettingError(self.name, f"'{self.name}' must be one of {', '.join(self.choices)}, got {v!r}")
            return v
        # bool is an int to Python, never a number to a user
        ok = not isinstance(v, bool) and (isinstance(v, int) if self.kind is int else isinstance(v, (int, float)))
        if not ok:
            what = "an integer" if self.kind is int else "a number"
            raise SettingError(self.name, f"'{self.name}' must be {what}, got {_show(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise SettingError(self.name, f"'{self.name}' must be a finite number, got {v}")
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise SettingError(self.name, f"'{self.name}' must be {'>' if self.low_open else '>='} {self.low}, got {v}")
        if self.high is not None and v > self.high:
            raise SettingError(self.name, f"'{self.name}' must be <= {self.high}, got {v}")
        return self.kind(v)


def _show(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def knob(default, help: str, low=None, high=None, *, low_open: bool = False, choices: tuple = (),
         name: str | None = None):
    """A dataclass field that is a user-facing setting."""
    return field(default=default, metadata={"knob": dict(help=help, low=low, high=high, low_open=low_open,
                                                         choices=tuple(choices), name=name)})


def knobs_of(cls) -> list[Knob]:
    out = []
    for f in fields(cls):
        m = f.metadata.get("knob")
        if m is None:
            continue
        out.append(Knob(name=m["name"] or f.name, attr=f.name, kind=type(f.default), default=f.default,
                        help=m["help"], low=m["low"], high=m["high"], low_open=m["low_open"], choices=m["choices"]))
    return out


def check_knobs(obj) -> None:
    """Range and type check of every knob of a dataclass instance (call from __post_init__)."""
    for k in knobs_of(type(obj)):
        setattr(obj, k.attr, k.check(getattr(obj, k.attr)))
