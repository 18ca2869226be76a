"""Progress where it is shown (issue 17): a log gets plain lines every 30 s or 10%, not a
carriage-return stream; a terminal gets tqdm's bar; a notebook tqdm.auto's widgets."""
from __future__ import annotations

import io
import subprocess
import sys

from gpt2zh import progress
from gpt2zh.progress import PlainLines, in_notebook, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_tenth_and_one_at_the_end():
    log = io.StringIO()
    with progress_bar(total=212, desc="data (val)", unit="batch", file=log, leave=False) as bar:
        assert isinstance(bar, PlainLines)
        for _ in range(212):
            bar.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 10   # 10%, 20%, ... 100%
    assert lines[0].startswith("data (val):  10% 22/212 batch [") and lines[-1].startswith("data (val): 100% 212/212")


def test_a_log_gets_a_line_every_30_seconds_of_a_slow_job(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    bar = progress_bar(total=10_000, desc="train", unit="step", file=log, initial=100)
    for _ in range(20):            # 20 steps, 10 s each: 200 s, 0.2% of the run
        clock[0] += 10
        bar.update()
    bar.set_postfix_str("loss 5.100 | 3.2k tok/s")
    bar.write("step 120: validation loss 5.0")
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 6 + 1 + 1   # at 30, 60, ... 180 s; the message; the end
    assert lines[0] == "train:   1% 103/10,000 step [00:30 elapsed, 27:29:30 left]"   # (resumed at step 100: 10 s a step)
    assert lines[-1].endswith("left] loss 5.100 | 3.2k tok/s") and lines[-2] == "step 120: validation loss 5.0"


def test_a_terminal_gets_tqdm_and_plain_python_is_not_a_notebook():
    from tqdm import tqdm

    assert isinstance(progress_bar(total=3, file=Terminal()), tqdm)
    assert not in_notebook()
    off = progress_bar(range(3), disable=True)
    assert list(off) == [0, 1, 2]


def test_a_command_writing_to_a_log_writes_no_carriage_returns(tiny_run, novel_shards):
    p = subprocess.run([sys.executable, "-m", "gpt2zh", "eval", "--model", str(tiny_run), "--data", str(novel_shards)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and 1 <= p.stderr.count("(val):") <= 11, p.stderr
