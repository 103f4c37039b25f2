"""TensorFlow work in warm, reused worker processes.

Each worker is a separate Python process (``python -m tffreeze_server.workers``,
inside the sandbox when the server has one, see ``sandbox``) that imports
TensorFlow once and then serves tasks over a socket pair, sending progress
messages and one final result or error. A worker that dies (a crash inside
TensorFlow on a malformed upload), outlives the call's deadline or whose call
is cancelled is killed and replaced; only that request fails. Workers are
recycled after ``max_tasks`` tasks to bound memory growth: the replacement is
started and warmed while the old worker keeps serving, so recycling never
makes a call wait for a TensorFlow import.
"""

from __future__ import annotations

import argparse
import importlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Callable, Iterator, Optional, Tuple

from . import metrics
from .core.errors import Cancelled, DeadlineExceeded, FailedPrecondition, FreezeError, Internal, ResourceExhausted

DEFAULT_TARGET = "tffreeze_server.tasks:handle"
QUEUED = "queued"  # the stage of a task waiting for a worker; the servicer maps stages to the contract
_WARM_TIMEOUT = 300.0


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _worker_main(conn, target: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    handle = _load(target)
    handle("warm", {}, lambda *a: None)
    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, payload = task

        def progress(stage, message: str, fraction: float) -> None:
            conn.send(("progress", stage, message, float(fraction)))

        try:
            conn.send(("ok", handle(kind, payload, progress)))
        except FreezeError as exc:
            conn.send(("error", exc))
        except Exception as exc:  # a bug or an unexpected TensorFlow failure
            traceback.print_exc(file=sys.stderr)
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            conn.send(("error", Internal("%s: %s" % (type(exc).__name__, detail))))


class _Worker:
    def __init__(self, target: str, sandbox=None):
        parent, child = socket.socketpair()
        argv = [sys.executable, "-m", "tffreeze_server.workers", "--fd", str(child.fileno()), "--target", target]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the server's imports, also for tests
        if sandbox is not None:
            argv = sandbox.wrap(argv, env)
        try:
            self.process = subprocess.Popen(argv, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.tasks = 0
        self.ready = False
        self.retiring = False

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def exitcode(self) -> Optional[int]:
        try:
            return self.process.wait(1)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self, timeout: float) -> bool:
        """Consume the worker's "ready" message (TensorFlow imported)."""
        if self.ready:
            return True
        if self.conn.poll(timeout):
            try:
                self.ready = self.conn.recv() == ("ready",)
            except (EOFError, OSError):
                return False
        return self.ready

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.conn.close()


class WorkerPool:
    def __init__(self, size: int = 1, target: str = DEFAULT_TARGET, max_tasks: int = 200, sandbox=None):
        self.size = max(1, size)
        self.target = target
        self.max_tasks = max_tasks
        self.sandbox = sandbox
        self._idle: "queue.Queue[_Worker]" = queue.Queue()
        self._all = set()
        self._lock = threading.Lock()
        self._closed = False
        # Every worker is started from this one long-lived thread: the sandbox kills its
        # worker when the thread that started it ends (bwrap --die-with-parent follows the
        # parent *thread*), so a worker started from a request's thread would die with it.
        self._spawn_requests: "queue.Queue" = queue.Queue()
        threading.Thread(target=self._spawner, name="tffreeze-worker-spawner", daemon=True).start()

    def _spawner(self) -> None:
        while True:
            request = self._spawn_requests.get()
            if request is None:
                return
            holder, done = request
            try:
                holder.append(_Worker(self.target, self.sandbox))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                holder.append(exc)
            done.set()

    def start(self) -> "WorkerPool":
        for _ in range(self.size):
            self._idle.put(self._spawn())
        return self

    def _spawn(self) -> _Worker:
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        holder, done = [], threading.Event()
        self._spawn_requests.put((holder, done))
        done.wait()
        if isinstance(holder[0], BaseException):
            raise holder[0]
        worker = holder[0]
        with self._lock:
            self._all.add(worker)
        return worker

    def _forget(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill() if kill else worker.stop()

    def _retire(self, worker: _Worker, kill: bool) -> None:
        """A worker that failed a task: replaced at once (no healthy worker to wait on)."""
        metrics.WORKER_RESTARTS.labels("crashed" if not worker.is_alive() else "stopped").inc()
        self._forget(worker, kill)
        if not self._closed:
            self._idle.put(self._spawn())

    def _replace_warm(self, old: _Worker) -> None:
        """Start a replacement, let it import TensorFlow while ``old`` keeps serving,
        then swap: ``old`` stops when it is next idle."""
        try:
            new = self._spawn()
        except RuntimeError:  # closed meanwhile
            return
        if not new.wait_ready(_WARM_TIMEOUT):
            self._forget(new, kill=True)
            old.retiring = False  # keep the old one; try again at its next release
            old.tasks = 0
            return
        old.retiring = True
        metrics.WORKER_RESTARTS.labels("recycled").inc()
        if self._closed:
            self._forget(new, kill=False)
            return
        self._idle.put(new)

    def _release(self, worker: _Worker) -> None:
        worker.tasks += 1
        if self._closed or worker.retiring:
            self._forget(worker, kill=False)
            return
        if worker.tasks == self.max_tasks:
            threading.Thread(target=self._replace_warm, args=(worker,), daemon=True).start()
        self._idle.put(worker)

    def _acquire(self, check) -> _Worker:
        while True:
            check()
            try:
                worker = self._idle.get(timeout=0.1)
            except queue.Empty:
                continue
            if worker.retiring:
                threading.Thread(target=self._forget, args=(worker, False), daemon=True).start()
                continue
            return worker

    def run(self, kind: str, payload: dict, timeout: Optional[float] = None,
            cancelled: Callable[[], bool] = lambda: False) -> Iterator[Tuple]:
        """Run a task; yields ("progress", stage, message, fraction) tuples and
        finally ("result", value). Errors raise ``core.errors`` exceptions."""
        deadline = time.monotonic() + timeout if timeout else None

        def check():
            if cancelled():
                raise Cancelled("the call was cancelled; the worker was stopped", "ERROR_REASON_CANCELLED")
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded("the %s did not finish within the call's deadline (%.0f s); the worker "
                                       "was stopped. Retry with a longer deadline (timeout)." % (kind, timeout),
                                       "ERROR_REASON_DEADLINE")

        yield ("progress", QUEUED, "waiting for a TensorFlow worker", 0.0)
        metrics.QUEUE_DEPTH.inc()
        try:
            worker = self._acquire(check)
        finally:
            metrics.QUEUE_DEPTH.dec()
        released = False
        try:
            worker.conn.send((kind, payload))
            while True:
                check()
                if worker.conn.poll(0.1):
                    try:
                        msg = worker.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None:
                        raise self._crash(worker, kind)
                    if msg[0] == "ready":
                        worker.ready = True
                    elif msg[0] == "progress":
                        yield msg
                    elif msg[0] == "ok":
                        released = True
                        self._release(worker)
                        yield ("result", msg[1])
                        return
                    elif msg[0] == "error":
                        released = True
                        self._release(worker)
                        raise msg[1]
                elif not worker.is_alive():
                    raise self._crash(worker, kind)
        finally:
            if not released:
                self._retire(worker, kill=True)

    @staticmethod
    def _crash(worker: _Worker, kind: str) -> FreezeError:
        """A worker that died during a task the server did not stop: killed by the
        system (SIGKILL: out of memory, most likely) is RESOURCE_EXHAUSTED; any other
        death (a TensorFlow CHECK failure or crash on the upload) FAILED_PRECONDITION."""
        code = worker.exitcode()
        sig = -code if code is not None and code < 0 else (code - 128 if code is not None and 128 < code < 160 else None)
        try:
            how = "signal %s" % signal.Signals(sig).name if sig else "exit code %s" % code
        except ValueError:
            how = "signal %d" % sig
        if sig == signal.SIGKILL:
            return ResourceExhausted("the TensorFlow worker was killed by the system (%s) during %s, most likely "
                                     "out of memory: the upload needs more memory than a worker here has. The "
                                     "server replaced the worker and keeps serving." % (how, kind),
                                     "ERROR_REASON_WORKER_CRASHED", signal=how)
        return FailedPrecondition("the TensorFlow worker crashed (%s) during %s; the upload triggers a TensorFlow "
                                  "failure. The server replaced the worker and keeps serving; check the upload's "
                                  "files, or report it with the upload." % (how, kind),
                                  "ERROR_REASON_WORKER_CRASHED", signal=how)

    def close(self) -> None:
        self._closed = True
        self._spawn_requests.put(None)
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.stop()

    def alive(self) -> int:
        with self._lock:
            return sum(1 for w in self._all if w.is_alive())


def main(argv=None) -> int:
    """The worker process: ``python -m tffreeze_server.workers --fd N --target MODULE:FUNC``."""
    p = argparse.ArgumentParser(description="a tffreeze TensorFlow worker (started by the server)")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--target", default=DEFAULT_TARGET)
    args = p.parse_args(argv)
    _worker_main(Connection(args.fd), args.target)
    return 0


__all__ = ["WorkerPool", "DEFAULT_TARGET"]


if __name__ == "__main__":
    sys.exit(main())
