"""TensorFlow work in warm, reused worker processes.

Each worker is a spawned process that imports TensorFlow once and then serves
tasks over a pipe, sending progress messages and one final result or error.
A worker that dies (a crash inside TensorFlow on a malformed upload), outlives
the call's deadline or whose call is cancelled is killed and replaced; only
that request fails. Workers are recycled after ``max_tasks`` tasks to bound
memory growth.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Iterator, Optional, Tuple

from .core.errors import Cancelled, DeadlineExceeded, FreezeError, Internal

DEFAULT_TARGET = "tffreeze_server.tasks:handle"
QUEUED = "queued"  # the stage of a task waiting for a worker; the servicer maps stages to the contract


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
    def __init__(self, ctx, target: str):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, target), daemon=True,
                                   name="tffreeze-worker")
        self.process.start()
        child.close()
        self.tasks = 0

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.join(5)
        finally:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class WorkerPool:
    def __init__(self, size: int = 1, target: str = DEFAULT_TARGET, max_tasks: int = 200):
        self.size = max(1, size)
        self.target = target
        self.max_tasks = max_tasks
        self._ctx = mp.get_context("spawn")
        self._idle: "queue.Queue[_Worker]" = queue.Queue()
        self._all = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> "WorkerPool":
        for _ in range(self.size):
            self._idle.put(self._spawn())
        return self

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, self.target)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill() if kill else worker.stop()
        if not self._closed:
            self._idle.put(self._spawn())

    def _release(self, worker: _Worker) -> None:
        worker.tasks += 1
        if self._closed:
            worker.stop()
        elif worker.tasks >= self.max_tasks:
            threading.Thread(target=self._retire, args=(worker, False), daemon=True).start()
        else:
            self._idle.put(worker)

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
        while True:
            check()
            try:
                worker = self._idle.get(timeout=0.1)
                break
            except queue.Empty:
                continue
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
                    if msg[0] == "progress":
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
                elif not worker.process.is_alive():
                    raise self._crash(worker, kind)
        finally:
            if not released:
                self._retire(worker, kill=True)

    @staticmethod
    def _crash(worker: _Worker, kind: str) -> Internal:
        worker.process.join(1)
        code = worker.process.exitcode
        how = ("signal %s" % signal.Signals(-code).name) if code is not None and code < 0 else "exit code %s" % code
        return Internal("the TensorFlow worker crashed (%s) during %s; the upload likely triggers a TensorFlow "
                        "bug. The server replaced the worker and keeps serving; check the upload's files."
                        % (how, kind), "ERROR_REASON_WORKER_CRASHED")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.stop()

    def alive(self) -> int:
        with self._lock:
            return sum(1 for w in self._all if w.process.is_alive())


__all__ = ["WorkerPool", "DEFAULT_TARGET"]
