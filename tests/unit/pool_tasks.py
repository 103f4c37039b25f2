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
        "data_dir": sorted(os.listdir(os.path.dirname(payload["outside_dir"]))),
        "root": sorted(os.listdir("/")),
    }
