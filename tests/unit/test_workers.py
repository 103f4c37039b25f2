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


def run(pool, kind, payload=None, files=None, on_result=None, **kw):
    """Run a task; ``files``: {name: bytes} staged as its inputs; ``on_result(task)`` is
    called while its folders still exist. Returns the events but the "task" one."""
    def stage(in_dir):
        for name, data in (files or {}).items():
            with open(os.path.join(in_dir, name), "wb") as fh:
                fh.write(data)

    events, task = [], None
    for event in pool.run(kind, payload or {}, stage=stage, **kw):
        if event[0] == "task":
            task = event[1]
            continue
        if event[0] == "result" and on_result is not None:
            on_result(task)
        events.append(event)
    assert events[-1][0] == "result"
    return events


def test_progress_then_result_each_task_in_a_fresh_process_of_the_warm_worker(pool):
    events = run(pool, "echo", {"a": 1})
    assert ("progress", "working", "halfway", 0.5) in events
    value = events[-1][1]
    assert value["payload"]["a"] == 1 and {"workdir", "out_dir"} <= set(value["payload"])
    again = run(pool, "echo")[-1][1]
    assert again["worker"] == value["worker"]  # the same warm worker (imported once)...
    assert again["pid"] != value["pid"]  # ...but every task runs in a new process


def test_crash_fails_only_that_request(pool):
    before = run(pool, "echo")[-1][1]["worker"]
    with pytest.raises(FailedPrecondition) as err:  # TensorFlow crashing on an upload is not INTERNAL
        run(pool, "abort")
    assert "worker crashed (signal SIGABRT)" in err.value.message and "keeps serving" in err.value.message
    assert err.value.reason == "ERROR_REASON_WORKER_CRASHED"
    after = run(pool, "echo")[-1][1]["worker"]
    assert after == before  # only the task's process died; the warm worker serves on


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


def test_deadline_kills_the_task_not_the_warm_worker(pool):
    worker = run(pool, "echo")[-1][1]["worker"]
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline"):
        run(pool, "sleep", {"seconds": 60}, timeout=1.0)
    assert time.monotonic() - start < 10
    assert run(pool, "echo")[-1][1]["worker"] == worker


def test_cancel_stops_the_task(pool):
    flag = {"cancel": False}
    gen = pool.run("sleep", {"seconds": 60}, cancelled=lambda: flag["cancel"])
    assert next(gen)[1] == "queued"
    flag["cancel"] = True
    with pytest.raises(Cancelled):
        list(gen)
    assert run(pool, "echo")[-1][0] == "result"


def test_workers_recycled_after_max_tasks(pool):
    first = {run(pool, "echo")[-1][1]["worker"] for _ in range(3)}  # max_tasks=3
    assert len(first) == 1
    pids = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not pids or pids[-1] in first):
        pids.append(run(pool, "echo")[-1][1]["worker"])
    assert pids[-1] not in first  # the warmed replacement took over
    assert pool.alive() == 1  # and the old worker was stopped


def _sandbox_or_skip(tmp_path, readable=()):
    """(a worker sandbox, its tasks folder tmp_path/tasks): the sandbox binds only that
    folder (and ``readable``), as the server's binds DATA/tasks."""
    from tffreeze_server import sandbox

    if sandbox.find_bwrap() is None and not os.environ.get("TFFREEZE_REQUIRE_SANDBOX"):
        pytest.skip("bwrap (bubblewrap) is not installed; `make setup` installs it and CI requires it")
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    return sandbox.create("bwrap", readable=[str(p) for p in readable], writable=[str(tasks)]), tasks


@pytest.mark.parametrize("sandboxed", [False, True])
def test_recycling_never_makes_a_call_wait_for_the_replacement_to_warm(tmp_path, sandboxed):
    """The replacement imports (here: sleeps 3 s) while the old worker keeps serving;
    in the sandbox too (whose workers die with the thread that started them, so all
    are started from the pool's own long-lived thread)."""
    box, tasks = _sandbox_or_skip(tmp_path) if sandboxed else (None, tmp_path)
    p = WorkerPool(size=1, target="pool_tasks:slow_warm", max_tasks=2, sandbox=box, tasks_root=str(tasks)).start()
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


def test_sandboxed_task_sees_its_inputs_read_only_its_output_folder_nothing_else(tmp_path, monkeypatch):
    """A task's sandbox: its staged input readable but not writable (a hard link into
    the store must not be writable through it), its output folder writable, the data
    directory, other tasks and the network out of reach, the server's environment
    not passed on."""
    import socket

    box, tasks = _sandbox_or_skip(tmp_path)
    private = tmp_path / "blobs"
    private.mkdir()
    (private / "secret").write_bytes(b"store")
    monkeypatch.setenv("TFFREEZE_TEST_SECRET", "token-123")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    p = WorkerPool(size=1, target="pool_tasks:probe", sandbox=box, tasks_root=str(tasks)).start()
    seen = {}

    def on_result(task):
        with open(os.path.join(task.in_dir, "model.ckpt.index"), "rb") as fh:
            seen["input"] = fh.read()
        with open(os.path.join(task.out_dir, "g.pb"), "rb") as fh:
            seen["output"] = fh.read()

    try:
        got = run(p, "probe", {"input_file": "/tmp/in/model.ckpt.index", "output_file": "/tmp/out/g.pb",
                               "outside_file": str(private / "secret"), "outside_dir": str(private),
                               "port": listener.getsockname()[1]}, files={"model.ckpt.index": b"index"},
                  on_result=on_result)[-1][1]
    finally:
        p.close()
        listener.close()
    assert seen == {"input": b"index", "output": b"x"}
    assert got["read_input"] == "allowed" and got["write_output"] == "allowed"
    assert got["write_input"] != "allowed" and got["read_outside"] != "allowed" and got["write_home"] != "allowed"
    assert got["connect"] != "allowed" and got["secret_env"] is None
    assert not (private / "dropped").exists()
    assert got["data_dir"] in ("FileNotFoundError", "PermissionError", []), got  # the data directory is not there
    # The root holds the system and the Python installation the worker runs (a project cloned into an
    # ordinary user's home brings its venv's top folder, home, and only the paths bound under it).
    from tffreeze_server.sandbox import _python_paths
    bound_tops = {p.split("/")[1] for p in _python_paths() if p.startswith("/")}
    assert not {"home", "srv", "root"} & (set(got["root"]) - bound_tops), (got["root"], bound_tops)


def _stage(task, name, data):
    with open(os.path.join(task.in_dir, name), "wb") as fh:
        fh.write(data)


def test_two_tasks_at_once_cannot_see_or_touch_each_other(tmp_path):
    """Two tasks run at the same time in one pool: neither lists, reads or writes the
    other's folder (by the server's paths), and each sees only its own process."""
    import threading

    box, tasks = _sandbox_or_skip(tmp_path)
    p = WorkerPool(size=2, target="pool_tasks:hostile", sandbox=box, tasks_root=str(tasks)).start()
    victim = {}
    try:
        def on_result(task):
            with open(os.path.join(task.out_dir, "frozen.pb"), "rb") as fh:
                victim["output"] = fh.read()

        def hold():
            victim["value"] = run(p, "hold", {"seconds": 3, "mark": "victim"},
                                  files={"model.ckpt.index": b"victim's secret"}, on_result=on_result)[-1][1]

        t = threading.Thread(target=hold)
        t.start()
        deadline = time.monotonic() + 30
        while not [d for d in os.listdir(tasks) if os.path.exists(os.path.join(tasks, d, "in", "model.ckpt.index"))] \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        folder = next(os.path.join(tasks, d) for d in os.listdir(tasks)
                      if os.path.exists(os.path.join(tasks, d, "in", "model.ckpt.index")))
        time.sleep(0.5)  # the victim's task is running
        got = run(p, "neighbour", {"other_input": os.path.join(folder, "in", "model.ckpt.index"),
                                   "other_output": os.path.join(folder, "out", "frozen.pb"),
                                   "tasks_root": str(tasks)}, files={"mine": b"x"})[-1][1]
        t.join()
        assert victim["value"] == ["model.ckpt.index"]
        assert victim["output"] == b"victim"
    finally:
        p.close()
    assert got["read_input"] != "victim's secret" and got["write_output"] != "allowed", got
    assert got["list_tasks"] in ([], "PermissionError", "FileNotFoundError"), got
    assert got["own_input"] == ["mine"]
    assert got["pid"] == 1 and got["reached"] == [], got  # alone in its PID namespace, no other process reachable


def test_a_descriptor_kept_by_a_task_is_gone_before_its_result(tmp_path):
    """A task forks a process that keeps a descriptor on its output and rewrites it
    later: the result is only handed over once every process of the task is gone,
    so the output the server then copies can no longer change."""
    box, tasks = _sandbox_or_skip(tmp_path)
    p = WorkerPool(size=1, target="pool_tasks:hostile", sandbox=box, tasks_root=str(tasks)).start()
    seen = {}

    def on_result(task):
        out = os.path.join(task.out_dir, "frozen.pb")
        seen["holders"] = [pid for pid in os.listdir("/proc") if pid.isdigit() and _holds(pid, out)]
        time.sleep(2.5)  # past the moment the lingering process would have rewritten it
        with open(out, "rb") as fh:
            seen["output"] = fh.read()

    try:
        run(p, "linger", {"seconds": 2}, on_result=on_result)
    finally:
        p.close()
    assert seen == {"holders": [], "output": b"honest"}


def _holds(pid: str, path: str) -> bool:
    """The process has a descriptor open on the file at ``path`` (same inode, whatever
    path its own mount namespace gives it)."""
    target = os.stat(path)
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat("/proc/%s/fd/%s" % (pid, fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


@pytest.mark.parametrize("kind", ["pickle", "huge", "bad_error"])
def test_the_server_trusts_no_frame_a_task_sends(tmp_path, kind):
    """A task writes frames of its own making: a pickle that would run a command if
    unpickled, a frame declaring 2 GiB, a frame of the wrong shape. Each ends that
    task with FAILED_PRECONDITION; nothing runs, the pool keeps serving."""
    marker = tmp_path / "pwned"
    p = WorkerPool(size=1, target="pool_tasks:hostile").start()
    try:
        with pytest.raises(FailedPrecondition) as err:
            run(p, kind, {"marker": str(marker)})
        assert err.value.reason == "ERROR_REASON_WORKER_CRASHED"
        assert "malformed" in err.value.message
        assert run(p, "echo")[-1][0] == "result"
    finally:
        p.close()
    assert not marker.exists()


def test_a_task_over_its_memory_budget_is_resource_exhausted_and_the_pool_recovers():
    """Finding 6, the kernel's part: each task's process has a data limit of the warm
    worker's size plus its budget (RLIMIT_DATA). Allocating past it, in Python or inside
    TensorFlow, ends that task with RESOURCE_EXHAUSTED naming the limit; the next task
    runs in the same warm worker, its resident size far below the budget."""
    budget = 256 << 20
    p = WorkerPool(size=1, target="pool_tasks:allocate", task_memory=budget).start()
    try:
        warm_kb = run(p, "rss")[-1][1]
        for kind, payload in (("python", {"bytes": 1 << 30}), ("tensorflow", {"elements": 1 << 28})):
            with pytest.raises(ResourceExhausted) as err:
                run(p, kind, payload)
            assert err.value.reason == "ERROR_REASON_MEMORY_LIMIT", err.value.message
            assert "256 MiB" in err.value.message or "task-memory-bytes" in err.value.message
        assert run(p, "tensorflow", {"elements": 1000})[-1][1] == 1000.0
        assert run(p, "python", {"bytes": 100 << 20})[-1][1] == 100 << 20  # within the budget
        assert run(p, "rss")[-1][1] * 1024 < warm_kb * 1024 + budget
    finally:
        p.close()


def test_packages_below_tmp_stay_importable_in_a_task(tmp_path, monkeypatch):
    """A Python installation or package folder under /tmp (a clone in /tmp, say) is bound
    into the worker's sandbox; each task's own /tmp must not hide it: a module imported
    only when the task runs still imports, read-only."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "late_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(lib))
    box, tasks = _sandbox_or_skip(tmp_path, readable=[lib])
    assert str(lib).startswith("/tmp/")
    p = WorkerPool(size=1, target="pool_tasks:late_import", sandbox=box, tasks_root=str(tasks)).start()
    try:
        assert run(p, "import", {"module": "late_module"})[-1][1] == 42
    finally:
        p.close()


def _worker_pids(pool):
    return [w.process.pid for w in list(pool._all) if w.is_alive()]


def _kill_workers(pool, pids):
    import signal

    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(w.process.pid in pids and w.process.poll() is None for w in list(pool._all)):
        time.sleep(0.05)


@pytest.mark.parametrize("sandboxed", [False, True])
def test_a_worker_killed_while_idle_is_never_handed_a_call(tmp_path, sandboxed):
    """SIGKILL of an idle warm worker (from outside: an operator, the system): the next call
    runs on its replacement, not on the dead worker (which failed as 'out of memory')."""
    box, tasks = _sandbox_or_skip(tmp_path) if sandboxed else (None, tmp_path)
    p = WorkerPool(size=1, target="pool_tasks:handle", sandbox=box, tasks_root=str(tasks)).start()
    try:
        before = run(p, "echo")[-1][1]["worker"]
        _kill_workers(p, _worker_pids(p))
        after = run(p, "echo")[-1][1]["worker"]  # no error
        assert after != before
        assert p.alive() == 1
    finally:
        p.close()


def test_a_call_whose_workers_are_killed_under_it_is_retried_once_and_the_next_call_works():
    """Both warm workers killed in the middle of a call: the call is retried on a new worker
    (its progress says so) and succeeds; so does the next call."""
    import threading

    p = WorkerPool(size=2, target="pool_tasks:handle").start()
    try:
        for _ in range(2):
            run(p, "echo")
        timer = threading.Timer(1.0, lambda: _kill_workers(p, _worker_pids(p)))
        timer.start()
        events = run(p, "sleep", {"seconds": 3})
        timer.join()
        assert events[-1] == ("result", "slept")
        assert any(e[0] == "progress" and "retrying" in e[2] for e in events), events
        assert run(p, "echo")[-1][0] == "result"
        assert p.alive() == 2
    finally:
        p.close()


def test_a_call_that_loses_its_worker_twice_fails_unavailable_and_names_it():
    import threading

    from tffreeze_server.core.errors import Unavailable

    p = WorkerPool(size=1, target="pool_tasks:handle").start()
    try:
        run(p, "echo")
        stop = threading.Event()

        kills = []

        def kill_running():
            while not stop.is_set() and len(kills) < 2:
                time.sleep(1.0)
                pids = _worker_pids(p)
                kills.extend(pids)
                _kill_workers(p, pids)
                for _ in range(200):  # wait for the replacement to warm and take the retry
                    if stop.is_set() or any(w.ready for w in list(p._all) if w.process.pid not in kills):
                        break
                    time.sleep(0.05)

        t = threading.Thread(target=kill_running)
        t.start()
        with pytest.raises(Unavailable) as err:
            run(p, "sleep", {"seconds": 30}, timeout=60)
        stop.set()
        t.join()
        assert err.value.reason == "ERROR_REASON_WORKER_CRASHED"
        assert "SIGKILL" in err.value.message and "out of memory" not in err.value.message
        assert run(p, "echo")[-1][0] == "result"
    finally:
        p.close()


def test_a_task_whose_sandbox_cannot_be_entered_is_unavailable_not_a_malformed_upload(tmp_path):
    """The task never saw its upload: the failure is the machine's (SANDBOX_UNAVAILABLE), not
    'the task sent a malformed message' (WORKER_CRASHED) nor INTERNAL."""
    from tffreeze_server.core.errors import Unavailable

    box, tasks = _sandbox_or_skip(tmp_path)
    p = WorkerPool(size=1, target="pool_tasks:broken_box", sandbox=box, tasks_root=str(tasks)).start()
    try:
        for _ in range(2):  # and the worker is not blamed: the next call says the same
            with pytest.raises(Unavailable) as err:
                run(p, "echo")
            assert err.value.reason == "ERROR_REASON_SANDBOX_UNAVAILABLE", err.value.message
            assert "sandbox" in err.value.message and "not looked at" in err.value.message
    finally:
        p.close()


def test_a_task_stopped_while_its_sandbox_is_set_up_says_why_it_was_stopped(tmp_path):
    """A kill reaching a task still entering its sandbox ends it as "could not enter": a call
    cancelled (or a server stopping) meanwhile says that, not SANDBOX_UNAVAILABLE (a CI run saw
    a server's drain running out reported to a queued C# freeze as a sandbox failure)."""
    box, tasks = _sandbox_or_skip(tmp_path)
    p = WorkerPool(size=1, target="pool_tasks:broken_box", sandbox=box, tasks_root=str(tasks)).start()
    try:
        flag = {"cancel": False}

        def stage(in_dir):
            flag["cancel"] = True  # the stop arrives as the task is handed over

        with pytest.raises(Cancelled):
            list(p.run("echo", {}, stage=stage, cancelled=lambda: flag["cancel"]))
    finally:
        p.close()
