"""Worker tasks for the pool tests: they crash, hang, fail and succeed on demand."""

import os
import time

from tffreeze_server.core.errors import InvalidArgument


WORKER_ID = os.urandom(8).hex()  # one per worker process (pids repeat inside the sandbox's namespace)


def handle(kind, payload, progress):
    if kind == "warm":
        return "warm"
    if kind == "echo":
        progress("working", "halfway", 0.5)
        return {"pid": os.getpid(), "worker": WORKER_ID, "payload": payload}
    if kind == "abort":
        os.abort()  # a crash inside native code, as a TensorFlow CHECK failure would be
    if kind == "oom":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    if kind == "sleep":
        time.sleep(payload["seconds"])
        return "slept"
    if kind == "invalid":
        raise InvalidArgument("that input is bad; fix it")
    if kind == "bug":
        raise RuntimeError("unexpected")
    raise ValueError(kind)


def slow_warm(kind, payload, progress):
    """A worker whose start (TensorFlow's import, in the real one) takes 3 s."""
    if kind == "warm":
        time.sleep(3)
        return "warm"
    return handle(kind, payload, progress)


def _listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__


def probe(kind, payload, progress):
    """Try, from inside the worker, what an upload must never do; report what happened."""
    if kind == "warm":
        return "warm"
    import socket

    def attempt(fn):
        try:
            fn()
            return "allowed"
        except OSError as exc:
            return type(exc).__name__

    def write(path):
        with open(path, "w") as fh:
            fh.write("x")

    def read(path):
        with open(path, "rb") as fh:
            fh.read()

    def connect():
        socket.create_connection(("127.0.0.1", payload["port"]), timeout=2).close()

    return {
        "write_input": attempt(lambda: write(payload["input_file"])),
        "write_output": attempt(lambda: write(payload["output_file"])),
        "read_input": attempt(lambda: read(payload["input_file"])),
        "read_outside": attempt(lambda: read(payload["outside_file"])),
        "write_home": attempt(lambda: write(os.path.join(payload["outside_dir"], "dropped"))),
        "connect": attempt(connect),
        "secret_env": os.environ.get("TFFREEZE_TEST_SECRET"),
        "data_dir": _listing(os.path.dirname(payload["outside_dir"])),
        "root": sorted(os.listdir("/")),
    }


def _task_socket() -> int:
    """The task's socket to the server (its only socket)."""
    import stat

    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                return int(name)
        except OSError:
            continue
    raise RuntimeError("no socket")


def hostile(kind, payload, progress):
    """What a task that runs attacker-influenced code could try against the server."""
    if kind == "warm":
        return "warm"
    fd = _task_socket()
    if kind == "pickle":
        # a frame holding a pickle that runs a command when unpickled, as Connection.recv would
        import pickle
        import struct

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch %s" % payload["marker"],))

        data = pickle.dumps(Evil())
        os.write(fd, struct.pack(">I", len(data)) + data)
        time.sleep(0.5)
        return "sent"
    if kind == "huge":  # a frame declaring 2 GiB
        import struct

        os.write(fd, struct.pack(">I", 2 << 30) + b"{")
        time.sleep(0.5)
        return "sent"
    if kind == "bad_error":  # a well-formed frame of the wrong shape
        import json
        import struct

        data = json.dumps({"t": "error", "code": "OK", "message": 5, "reason": "x", "metadata": []}).encode()
        os.write(fd, struct.pack(">I", len(data)) + data)
        time.sleep(0.5)
        return "sent"
    if kind == "linger":
        # keep a descriptor on the output in a process of its own, then report success
        path = os.path.join(payload["out_dir"], "frozen.pb")
        with open(path, "wb") as fh:
            fh.write(b"honest")
        child = os.fork()
        if child == 0:
            keep = os.open(path, os.O_WRONLY)
            time.sleep(payload.get("seconds", 5))
            os.pwrite(keep, b"REWRITTEN", 0)
            os._exit(0)
        time.sleep(0.3)
        return {"pid": os.getpid(), "child": child}
    if kind == "neighbour":
        # try the other task's folder, by the path the server uses and by /proc
        out = {}
        for what, path in (("read_input", payload["other_input"]), ("list_tasks", payload["tasks_root"])):
            try:
                out[what] = sorted(os.listdir(path)) if what == "list_tasks" else open(path, "rb").read().decode()
            except OSError as exc:
                out[what] = type(exc).__name__
        try:
            with open(payload["other_output"], "wb") as fh:
                fh.write(b"x")
            out["write_output"] = "allowed"
        except OSError as exc:
            out["write_output"] = type(exc).__name__
        import signal

        me = int(os.readlink("/proc/self"))  # this process, as the mounted /proc numbers it
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
        reached = []
        for pid in others:
            for probe in (lambda: os.listdir("/proc/%d/root/" % pid), lambda: os.readlink("/proc/%d/fd/0" % pid),
                          lambda: open("/proc/%d/environ" % pid, "rb").read()) + (
                          # kill() takes this namespace's numbers, where 1 is the task itself
                          (lambda: os.kill(pid, 0), lambda: os.kill(pid, signal.SIGKILL)) if pid != os.getpid() else ()):
                try:
                    probe()
                    reached.append(pid)
                except OSError:
                    pass
        out["reached"] = reached
        out["pid"] = os.getpid()
        out["own_input"] = sorted(os.listdir(payload["workdir"]))
        return out
    if kind == "hold":  # a task that waits, keeping its files
        with open(os.path.join(payload["out_dir"], "frozen.pb"), "wb") as fh:
            fh.write(payload["mark"].encode())
        time.sleep(payload["seconds"])
        return sorted(os.listdir(payload["workdir"]))
    return handle(kind, payload, progress)


def allocate(kind, payload, progress):
    """Allocate beyond the task's memory budget: in Python, or inside TensorFlow."""
    if kind == "warm":
        if payload.get("tf", True):
            import tensorflow  # noqa: F401
        return "warm"
    if kind == "python":
        blob = bytearray(payload["bytes"])
        return len(blob)
    if kind == "tensorflow":
        import tensorflow as tf

        return float(tf.reduce_sum(tf.fill([payload["elements"]], 1.0)).numpy())
    if kind == "rss":
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return handle(kind, payload, progress)


def late_import(kind, payload, progress):
    """Import a module only when the task runs (as TensorFlow's lazy modules do)."""
    if kind == "warm":
        return "warm"
    import importlib

    return importlib.import_module(payload["module"]).VALUE


def broken_box(kind, payload, progress):
    """A worker whose tasks cannot enter their sandbox (as where the machine refuses or runs
    out of user namespaces for this user)."""
    if kind == "warm":
        from tffreeze_server import taskbox

        def refuse(*args):
            raise taskbox.BoxError(1, "unshare: Operation not permitted")

        taskbox.enter = refuse
        return "warm"
    return handle(kind, payload, progress)
