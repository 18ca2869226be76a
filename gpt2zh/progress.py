"""Progress that fits where it is shown: widgets in a notebook (`tqdm.auto`), a live bar on a
terminal, and plain lines in a log. When stderr is not a terminal (a SLURM log, `nohup`, `tee`
into a file), a carriage-return stream would write one line per update: 212 lines for one
validation pass. There a bar prints one plain line every 30 seconds or 10% instead, and one
at the end.
"""
from __future__ import annotations

import sys
import time


def notebook_kind() -> str | None:
    """'jupyter' or 'colab' when this runs in a notebook kernel, else None."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return {"ZMQInteractiveShell": "jupyter", "Shell": "colab"}.get(type(shell).__name__) if shell else None


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where stderr is a widget-capable cell output)."""
    return notebook_kind() == "jupyter"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class PlainLines:
    """The part of tqdm's interface gpt2zh uses, printed as plain lines for logs."""

    EVERY_S = 30.0
    EVERY_FRACTION = 0.1

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it", initial: int = 0,
                 file=None, unit_scale: bool = False, **_ignored):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.unit_scale = desc, unit, unit_scale
        self.n = self._start = initial
        self.file = file or sys.stderr
        self.postfix = ""
        self._t0 = self._last_t = time.monotonic()
        self._last_n = initial
        self._closed = False

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _count(self, n: float) -> str:
        if not self.unit_scale:
            return f"{int(n):,}"
        for k, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if n >= k:
                return f"{n / k:.1f}{unit}"
        return f"{int(n)}"

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        parts = [f"{self.desc}:" if self.desc else ""]
        if self.total:
            parts.append(f"{100 * self.n / self.total:3.0f}% {self._count(self.n)}/{self._count(self.total)} "
                         f"{self.unit}")
        else:
            parts.append(f"{self._count(self.n)} {self.unit}")
        done = self.n - self._start
        timing = f"{_clock(elapsed)} elapsed"
        if self.total and done > 0 and self.n < self.total:
            timing += f", {_clock(elapsed / done * (self.total - self.n))} left"
        parts.append(f"[{timing}]")
        if self.postfix:
            parts.append(self.postfix)
        return " ".join(p for p in parts if p)

    def _due(self) -> bool:
        if time.monotonic() - self._last_t >= self.EVERY_S:
            return True
        if self.total:
            step = max(1, self.total * self.EVERY_FRACTION)
            return int(self.n // step) > int(self._last_n // step)
        return False

    def _print(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self._last_t, self._last_n = time.monotonic(), self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._due():
            self._print()

    def refresh(self) -> None:
        pass   # a log gets its lines on schedule, not on every change

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        print(s, file=self.file, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._last_n:
                self._print()


class _Off(PlainLines):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self._closed = True


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """A progress bar for where it is shown (see the module's docstring); `disable`: none at all
    (`write` still prints). Takes tqdm's arguments."""
    if disable:
        return _Off(iterable, **kwargs)
    if in_notebook():
        from tqdm.auto import tqdm

        kwargs.pop("dynamic_ncols", None)
        return tqdm(iterable, **kwargs)
    if getattr(kwargs.get("file") or sys.stderr, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, **kwargs)
    return PlainLines(iterable, **kwargs)
