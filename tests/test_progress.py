"""Progress reads well in a log: a line at the start, at most one every EVERY_S seconds, one at the end."""

import io

from hyperrec import progress as P


def test_lines_in_a_log_are_throttled_and_complete(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = P.LineProgress(total=100, desc="epoch 1/2", unit="step", stream=out)
    for _ in range(100):  # 100 steps over 50 simulated seconds
        now[0] += 0.5
        bar.update()
    bar.set_postfix(events=12345)
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1/2: 0/100 step (0%), 0 s"
    assert len(lines) == 1 + 5 + 1  # start, one per 10 s of the 50, end
    assert lines[-1] == "epoch 1/2: 100/100 step (100%), 2.0 step/s, 50 s, events=12,345"
    assert "\r" not in out.getvalue()


def test_the_end_is_not_printed_twice(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = P.LineProgress(total=2, desc="tuning", unit="point", stream=out)
    bar.update()
    now[0] = 10.0
    bar.update()  # due at 10 s: the line that says 2/2
    bar.close()
    assert out.getvalue().splitlines() == ["tuning: 0/2 point (0%), 0 s", "tuning: 2/2 point (100%), 0.2 point/s, 10 s"]


def test_a_log_gets_lines_and_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.setattr(P, "interactive", lambda stream=None: False)
    assert isinstance(P.progress(range(3), desc="x"), P.LineProgress)
    assert list(P.progress(range(3), desc="x")) == [0, 1, 2]
    monkeypatch.setattr(P, "interactive", lambda stream=None: True)
    assert type(P.progress(range(3), desc="x")).__name__ == "tqdm"


def test_ray_workers_follow_what_the_driver_sees(monkeypatch):
    monkeypatch.setattr(P, "interactive", lambda stream=None: False)
    P.mark_driver_output()
    assert isinstance(P.worker_progress(5, "epoch 1/1"), P.LineProgress)
