import os
import time

import pytest

from tffreeze_server.core.errors import (Cancelled, DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument,
                                         ResourceExhausted)
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
    with pytest.raises(FailedPrecondition) as err:  # TensorFlow crashing on an upload is not INTERNAL
        run(pool, "abort")
    assert "worker crashed (signal SIGABRT)" in err.value.message and "keeps serving" in err.value.message
    assert err.value.reason == "ERROR_REASON_WORKER_CRASHED"
    after = run(pool, "echo")[-1][1]["pid"]
    assert after != before and pool.alive() == 1


def test_a_worker_killed_by_the_system_is_resource_exhausted(pool):
    """SIGKILL we did not send (the OOM killer's) reads as out of memory."""
    with pytest.raises(ResourceExhausted) as err:
        run(pool, "oom")
    assert "SIGKILL" in err.value.message and "out of memory" in err.value.message
    assert run(pool, "echo")[-1][0] == "result"


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
    first = {run(pool, "echo")[-1][1]["pid"] for _ in range(3)}  # max_tasks=3
    assert len(first) == 1
    pids = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not pids or pids[-1] in first):
        pids.append(run(pool, "echo")[-1][1]["pid"])
    assert pids[-1] not in first  # the warmed replacement took over
    assert pool.alive() == 1  # and the old worker was stopped


def _sandbox_or_skip(tmp_path):
    from tffreeze_server import sandbox

    if sandbox.find_bwrap() is None and not os.environ.get("TFFREEZE_REQUIRE_SANDBOX"):
        pytest.skip("bwrap (bubblewrap) is not installed; `make setup` installs it and CI requires it")
    return sandbox.create("bwrap", readable=[str(tmp_path)], writable=[str(tmp_path)])


@pytest.mark.parametrize("sandboxed", [False, True])
def test_recycling_never_makes_a_call_wait_for_the_replacement_to_warm(tmp_path, sandboxed):
    """The replacement imports (here: sleeps 3 s) while the old worker keeps serving;
    in the sandbox too (whose workers die with the thread that started them, so all
    are started from the pool's own long-lived thread)."""
    box = _sandbox_or_skip(tmp_path) if sandboxed else None
    p = WorkerPool(size=1, target="pool_tasks:slow_warm", max_tasks=2, sandbox=box).start()
    try:
        run(p, "echo")  # the first call waits for the first worker to warm
        waits, pids = [], set()
        for _ in range(12):
            start = time.monotonic()
            pids.add(run(p, "echo")[-1][1]["worker"])
            waits.append(time.monotonic() - start)
            time.sleep(0.3)
        assert len(pids) >= 2, "the worker was never recycled"
        assert max(waits) < 2.0, waits  # no call waited the 3 s warm-up, no call hit a dead worker
    finally:
        p.close()


def test_sandboxed_worker_sees_inputs_read_only_one_writable_folder_no_network(tmp_path, monkeypatch):
    """The worker sandbox (bubblewrap): the staged input is readable but not writable
    (a hard link into the store must not be writable through it), the output folder
    is writable, the rest of the data directory and the network are out of reach,
    the server's environment is not passed on."""
    import socket

    from tffreeze_server import sandbox

    if sandbox.find_bwrap() is None and not os.environ.get("TFFREEZE_REQUIRE_SANDBOX"):
        pytest.skip("bwrap (bubblewrap) is not installed; `make setup` installs it and CI requires it")
    work, out, private = tmp_path / "work", tmp_path / "out", tmp_path / "blobs"
    for d in (work, out, private):
        d.mkdir()
    (work / "model.ckpt.index").write_bytes(b"index")
    (private / "secret").write_bytes(b"store")
    monkeypatch.setenv("TFFREEZE_TEST_SECRET", "token-123")
    box = sandbox.create("bwrap", readable=[str(work)], writable=[str(out)])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    p = WorkerPool(size=1, target="pool_tasks:probe", sandbox=box).start()
    try:
        got = run(p, "probe", {"input_file": str(work / "model.ckpt.index"), "output_file": str(out / "g.pb"),
                               "outside_file": str(private / "secret"), "outside_dir": str(private),
                               "port": listener.getsockname()[1]})[-1][1]
    finally:
        p.close()
        listener.close()
    assert got["read_input"] == "allowed" and got["write_output"] == "allowed"
    assert got["write_input"] != "allowed" and got["read_outside"] != "allowed" and got["write_home"] != "allowed"
    assert got["connect"] != "allowed" and got["secret_env"] is None
    assert (work / "model.ckpt.index").read_bytes() == b"index" and not (private / "dropped").exists()
    assert (out / "g.pb").read_bytes() == b"x"
    assert got["data_dir"] == ["out", "work"]  # the store beside them is not there at all
    assert "home" not in got["root"] and "srv" not in got["root"], got["root"]
