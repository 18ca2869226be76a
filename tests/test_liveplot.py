"""The live plot (issue 17): drawn in a notebook only, at most every EVERY_S seconds at log
intervals and at each evaluation, each series against its own steps. The drawing itself runs
in a real kernel in tests/test_notebook.py."""
from __future__ import annotations

import matplotlib.pyplot as plt

from gpt2zh import runlog
from gpt2zh.runlog import LivePlot, live_plot_for


def test_plain_python_never_draws_live():
    assert live_plot_for(None) == (None, None)           # not a notebook: nothing, silently
    plot, notice = live_plot_for(True)                    # asked for: a notice says why not
    assert plot is None and "not one" in notice and "loss.png" in notice
    assert live_plot_for(False) == (None, None)


def test_redrawn_no_more_often_than_its_interval_and_at_each_evaluation(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(runlog.time, "monotonic", lambda: clock[0])
    live = LivePlot(every_s=10)
    drawn = []
    def show(fig):   # what a kernel would display, counted
        drawn.append(clock[0])
        plt.close(fig)
        live._last = clock[0]

    monkeypatch.setattr(live.output, "_after_plots", show)
    for step in range(1, 101):                            # a log record a second
        clock[0] += 1
        live.add({"step": step, "loss": 8 - step / 50, "tokens_per_s": 1000.0})
        if step % 25 == 0:
            live.add({"step": step, "val_loss": 8 - step / 60, "val_ppl": 100.0 - step})
    gaps = [b - a for a, b in zip(drawn, drawn[1:])]
    assert 9 <= len(drawn) <= 14 and all(g >= 10 or (t % 25 == 0) for g, t in zip(gaps, drawn[1:]))
    history = live.plot.logger.log_history
    assert [x.step for x in history["loss"]] == list(range(1, 101))
    assert [x.step for x in history["val_loss"]] == [25, 50, 75, 100] == [x.step for x in history["val_ppl"]]
