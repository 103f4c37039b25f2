import time

import pytest

from tffreeze_server.core.errors import Cancelled, DeadlineExceeded, Internal, InvalidArgument
from tffreeze_server.workers import WorkerPool


@pytest.fixture()
def pool():
    p = WorkerPool(size=1, target="pool_tasks:handle", max_tasks=3).start()
    yield p
    p.close()


def run(pool, kind, payload=None, **kw):
    events = list(pool.run(kind, payload or {}, **kw))
    assert events[-1][0] == "result"
    return events


def test_progress_then_result_and_worker_reuse(pool):
    events = run(pool, "echo", {"a": 1})
    assert ("progress", "working", "halfway", 0.5) in events
    assert events[-1][1]["payload"] == {"a": 1}
    assert run(pool, "echo")[-1][1]["pid"] == events[-1][1]["pid"]  # warm worker reused


def test_crash_fails_only_that_request(pool):
    before = run(pool, "echo")[-1][1]["pid"]
    with pytest.raises(Internal) as err:
        run(pool, "abort")
    assert "worker crashed (signal SIGABRT)" in err.value.message and "keeps serving" in err.value.message
    after = run(pool, "echo")[-1][1]["pid"]
    assert after != before and pool.alive() == 1


def test_errors_cross_the_process_boundary(pool):
    with pytest.raises(InvalidArgument, match="that input is bad"):
        run(pool, "invalid")
    with pytest.raises(Internal, match="RuntimeError: unexpected"):
        run(pool, "bug")
    assert run(pool, "echo")[-1][0] == "result"


def test_deadline_kills_and_replaces_the_worker(pool):
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline"):
        run(pool, "sleep", {"seconds": 60}, timeout=1.0)
    assert time.monotonic() - start < 10
    assert run(pool, "echo")[-1][0] == "result"


def test_cancel_stops_the_worker(pool):
    flag = {"cancel": False}
    gen = pool.run("sleep", {"seconds": 60}, cancelled=lambda: flag["cancel"])
    assert next(gen)[1] == "queued"
    flag["cancel"] = True
    with pytest.raises(Cancelled):
        list(gen)
    assert run(pool, "echo")[-1][0] == "result"


def test_workers_recycled_after_max_tasks(pool):
    pids = [run(pool, "echo")[-1][1]["pid"] for _ in range(5)]
    assert len(set(pids)) == 2  # max_tasks=3
