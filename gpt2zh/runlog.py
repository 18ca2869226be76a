"""What a training run tells its user as it goes: log.jsonl (one JSON record per line),
loss.png (redrawn every 30 s and at each evaluation), Accelerate's trackers when asked, and in
a notebook a live livelossplot plot."""
from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
from pathlib import Path

from .config import RunConfig
from .progress import notebook_kind


def read_log(path: Path) -> list[dict]:
    """The records of a log.jsonl; a damaged line (power loss, full disk: usually the last) is
    skipped with a warning that names the file."""
    records, bad = [], []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad.append(n)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} damaged line(s) (line {', '.join(map(str, bad[:5]))}"
                      f"{' ...' if len(bad) > 5 else ''}); the run goes on from its checkpoint", stacklevel=2)
    return records


def plot_run(records: list[dict], path: Path, title: str = "") -> None:
    """loss.png: training loss at every log interval and validation loss at each evaluation
    (markers, so that one evaluation shows), and tokens/s below."""
    # a Figure of its own rather than pyplot's: the process's backend (a notebook's inline one) is left alone
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    speed = [(r["step"], r["tokens_per_s"]) for r in records if "tokens_per_s" in r]
    fig = Figure(figsize=(8, 6))
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if train:
        ax.plot(*zip(*train), "-", color="tab:blue", lw=1, marker="." if len(train) < 60 else None,
                label="training loss (mean over each log interval)")
    if val:
        tokens = next((r.get("val_tokens") for r in reversed(records) if r.get("val_tokens")), None)
        ax.plot(*zip(*val), "-o", color="tab:orange", ms=5,
                label="validation loss" + (f" ({tokens:,} tokens)" if tokens else ""))
        best = min(val, key=lambda v: v[1])
        ax.annotate(f"best {best[1]:.3f} (ppl {math.exp(min(best[1], 50)):.1f})", best, textcoords="offset points",
                    xytext=(-6, 10), ha="right", fontsize=8)
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "training", fontsize=10)
    if speed:
        ax2.plot(*zip(*speed), "-", color="tab:green", lw=1, marker="." if len(speed) < 60 else None)
    ax2.set_ylabel("tokens/s")
    ax2.set_xlabel("optimizer step")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


class RunLog:
    """log.jsonl (one JSON record per line), loss.png, and Accelerate's trackers if asked."""

    PLOT_EVERY_S = 30.0   # redraw at log intervals at most this often (and at every evaluation)

    def __init__(self, out: Path, enabled: bool, accelerator, log_with: str | None, run: RunConfig,
                 live: "LivePlot | None" = None):
        self.enabled = enabled
        self.live = live if enabled else None
        self.path = out / "log.jsonl"
        self.plot_path = out / "loss.png"
        self.accelerator, self.log_with = accelerator, log_with
        self.records: list[dict] = []
        self.title = f"gpt2zh train: {out.name}"
        self._plotted = 0.0
        if log_with:
            flat = {f"{k}.{kk}": vv for k, v in run.to_dict().items() if isinstance(v, dict) for kk, vv in v.items()}
            accelerator.init_trackers("gpt2zh", config={k: v for k, v in flat.items() if v is not None})

    def resume_at(self, step: int) -> None:
        """Forget records past the checkpoint a run resumes from (a killed run may have logged
        further); keep the rest so the plot shows the whole run."""
        if not self.enabled or not self.path.exists():
            return
        self.records = [r for r in read_log(self.path) if r.get("step", 0) <= step]
        if self.live is not None:   # the plot shows the whole run too
            for r in self.records:
                self.live.add(r, draw=False)
        tmp = self.path.with_name(".log.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        if self.log_with:
            self.accelerator.log({k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))},
                                 step=record["step"])
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.records.append(record)
        if self.live is not None:
            self.live.add(record)
        if "val_loss" in record or time.time() - self._plotted > self.PLOT_EVERY_S:
            self.plot()

    def plot(self, final: bool = False) -> None:
        if self.enabled and self.records:
            plot_run(self.records, self.plot_path, self.title)
            self._plotted = time.time()
        if final and self.live is not None:
            self.live.draw()



# ----------------------------------------------------------------------------
# The live plot in a notebook


def live_plot_for(requested: bool | None) -> tuple["LivePlot | None", str | None]:
    """(the live plot, or None; a notice, or None): on by default in a notebook, off elsewhere;
    asked for where there is no notebook, a notice says why there is none (a terminal has no
    cell to draw in: loss.png is the plot there)."""
    if requested is False:
        return None, None
    if notebook_kind() is None:
        return None, ("no live plot: it is drawn in a Jupyter notebook, and this is not one; loss.png is redrawn "
                      "every 30 s and at each evaluation" if requested else None)
    try:
        return LivePlot(), None
    except ImportError as e:
        return None, f"no live plot: {e}. Install it with `pip install livelossplot`"


class LivePlot:
    """livelossplot's PlotLosses in a notebook cell: training loss at every log interval,
    validation loss and perplexity at every evaluation, each series against its own steps
    (`current_step`), redrawn at most every EVERY_S seconds (and at each evaluation and at the
    end). It draws from the records the log already has, so it adds no GPU synchronisation.
    The figure goes to one display slot updated in place, so that the cell's progress bar and
    messages stay (livelossplot's default would clear the whole cell each time)."""

    EVERY_S = 10.0

    def __init__(self, every_s: float | None = None):
        from livelossplot import PlotLosses
        from livelossplot.outputs import MatplotlibPlot

        self.every_s = self.EVERY_S if every_s is None else every_s
        self.output = MatplotlibPlot(cell_size=(6, 4), max_cols=2, before_plots=self._size,
                                     after_plots=self._show, after_subplot=self._label)
        self.plot = PlotLosses(outputs=[self.output], mode="notebook", step_names="optimizer step",
                               groups={"loss (nats per token)": ["loss", "val_loss"], "validation perplexity": ["val_ppl"]},
                               metric_to_name={"loss": "training", "val_loss": "validation", "val_ppl": "validation"})
        self.handle = None
        self.drawn = 0          # how many times it was drawn (the tests count them)
        self._last = 0.0
        self._pending = False

    def add(self, record: dict, draw: bool = True) -> None:
        """One record of the log: a training record (loss) or an evaluation (val_loss)."""
        step = record.get("step")
        if step is None:
            return
        if "loss" in record:
            self.plot.update({"loss": record["loss"]}, current_step=step)
            self._pending = True
        if "val_loss" in record:
            ppl = record.get("val_ppl", math.exp(min(record["val_loss"], 50)))
            self.plot.update({"val_loss": record["val_loss"], "val_ppl": ppl}, current_step=step)
        if draw and ("val_loss" in record or (self._pending and time.monotonic() - self._last >= self.every_s)):
            self.draw()

    def draw(self) -> None:
        if self.plot.logger.log_history:
            self.plot.send()
            self._pending = False

    # -- livelossplot's hooks

    @staticmethod
    def _size(fig, axes, groups: int) -> None:
        fig.set_size_inches(12, 4)

    @staticmethod
    def _label(ax, group: str, x_label: str) -> None:
        ax.set_title(group, fontsize=10)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        for line in ax.lines:   # loss.png's colours; markers, since one evaluation is one point
            line.set_color({"training": "tab:blue", "validation": "tab:orange"}.get(line.get_label(), "tab:gray"))
            if len(line.get_xdata()) < 60:
                line.set_marker("o")
                line.set_markersize(4)
        ax.legend(loc="upper right", fontsize=8)

    def _show(self, fig) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=80)
        plt.close(fig)
        image = Image(data=png.getvalue(), format="png")
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)
        self.drawn += 1
        self._last = time.monotonic()
