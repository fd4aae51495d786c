"""Progress where stderr is not a terminal: a line now and then with the time left, at the latest pace."""

from __future__ import annotations

import gstrim.progress as progress


def test_log_lines_give_the_time_left_at_the_latest_pace(monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 25.0, 26.0])  # start; then one reading per advance
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 5.0)
    monkeypatch.setattr(progress, "_enabled", True)
    lines = []
    monkeypatch.setattr(progress, "log", lines.append)
    with progress.task("trim", 10) as advance:  # stderr is captured by pytest: not a terminal
        advance(1, N="900")  # t=10: 10 s a step so far
        advance(3)  # t=20: 3 steps in 10 s
        advance(1, N="800")  # t=25: 1 step in 5 s
        advance(1)  # t=26: under the period, silent
    # the fields stay as last given (a training loop reads its loss from the device only now and then)
    assert lines == ["trim: 1/10 in 10s, about 1m30s left  N 900", "trim: 4/10 in 20s, about 20s left  N 900",
                     "trim: 5/10 in 25s, about 25s left  N 800"]


def test_no_lines_when_quiet_or_turned_off(monkeypatch):
    monkeypatch.setattr(progress, "_enabled", False)
    with progress.task("x", 3) as advance:
        advance()  # a no-op
    assert progress.duration(3725) == "1h02m" and progress.duration(65) == "1m05s" and progress.duration(4) == "4s"


def test_no_estimate_from_a_period_of_too_few_steps(monkeypatch):
    clock = iter([0.0, 60.0, 120.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 5.0)
    monkeypatch.setattr(progress, "_enabled", True)
    lines = []
    monkeypatch.setattr(progress, "log", lines.append)
    with progress.task("trim", 3000) as advance:
        advance(3)  # a minute spent scoring, 3 steps: under 1 % of the task, no estimate
        advance(97)  # 97 in the next minute: the pace of that minute
    assert lines == ["trim: 3/3000 in 1m00s", "trim: 100/3000 in 2m00s, about 29m54s left"]
