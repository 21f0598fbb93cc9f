"""app.workers: jobs on a thread pool report through signals; cancel is cooperative."""

from __future__ import annotations

import threading

from app.workers import Worker, WorkerPool


def _collect(w: Worker) -> dict:
    got: dict = {"progress": [], "order": []}
    s = w.signals
    s.started.connect(lambda: got["order"].append("started"))
    s.progress.connect(lambda d, t, m: got["progress"].append((d, t, m)))
    s.result.connect(lambda r: (got.__setitem__("result", r), got["order"].append("result")))
    s.error.connect(lambda e: (got.__setitem__("error", e), got["order"].append("error")))
    s.failed.connect(lambda e: got.__setitem__("failed", e))
    s.cancelled.connect(lambda: got["order"].append("cancelled"))
    s.finished.connect(lambda: got["order"].append("finished"))
    return got


def test_function_and_generator_jobs(qtbot):
    pool = WorkerPool()

    def job(a, b):
        assert threading.current_thread() is not threading.main_thread()
        return a + b

    w = Worker(job, 2, b=3)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pool.start(w)
    assert got["result"] == 5 and got["order"] == ["started", "result", "finished"]

    def gen(n):
        for i in range(n):
            yield i + 1, n, f"step {i + 1}"
        return "done"

    w = Worker(gen, 3)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pool.start(w)
    assert got["progress"] == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert got["result"] == "done"
    assert pool.shutdown()


def test_errors_and_cooperative_cancel(qtbot):
    pool = WorkerPool()

    def bad():
        raise ValueError("length must be at least 1 step")

    w = Worker(bad)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pool.start(w)
    assert got["error"] == "length must be at least 1 step" and "result" not in got
    assert isinstance(got["failed"], ValueError) and str(got["failed"]) == got["error"]

    def shaped():  # a generator job returns its result; a yielded non-progress item is a bug, not the result
        yield 1, 2, "half"
        yield "the result?"

    w = Worker(shaped)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pool.start(w)
    assert isinstance(got["failed"], TypeError) and got["error"].startswith("Unexpected error: TypeError")
    assert "result" not in got and got["progress"] == [(1, 2, "half")]

    gate = threading.Event()
    running = threading.Event()
    closed = []

    def slow():
        running.set()
        try:
            for i in range(100):
                gate.wait(5)
                yield i, 100, ""
        finally:
            closed.append(True)

    w = Worker(slow)
    got = _collect(w)
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pool.start(w)
        assert running.wait(5)
        w.cancel()
        gate.set()
    assert got["order"][-2:] == ["cancelled", "finished"] and "result" not in got
    assert closed == [True] and len(got["progress"]) <= 1  # the generator was closed at its next step
    assert pool.shutdown()
