"""TensorFlow work in warm worker processes, one fresh sandboxed process per task.

Each worker is a separate Python process (``python -m tffreeze_server.workers``,
inside the bubblewrap sandbox when the server has one, see ``sandbox``) that
imports TensorFlow once and then never runs a task itself: for every task it
forks a child that walls itself into that task's own sandbox (``taskbox``: the
task's staged inputs read-only, its own empty output folder, its own PID, IPC
and network namespaces, a memory limit) and runs the task there. The task's
process talks to the server over its own socket in the typed frames of ``wire``
(never pickle); the worker reports when all of a task's processes are gone, and
only then does the server look at the task's output. Nothing of one task (files,
descriptors, processes, memory) survives into another.

A task whose process dies (a crash inside TensorFlow on a malformed upload, the
memory limit), outlives the call's deadline or whose call is cancelled is
killed; only that request fails and the warm worker keeps serving. A worker that
misbehaves (a malformed frame, no answer) is killed and replaced. Workers are
still recycled after ``max_tasks`` tasks: the replacement is started and warmed
while the old worker keeps serving.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, Dict, Iterator, Optional, Tuple

from . import memlimit, metrics, wire
from .core.errors import (BY_CODE, Cancelled, DeadlineExceeded, FailedPrecondition, FreezeError, Internal,
                          ResourceExhausted, Unavailable, cap_message)

_NOT_FROM_TASKS = ("UNAVAILABLE", "UNAUTHENTICATED")

DEFAULT_TARGET = "tffreeze_server.tasks:handle"
QUEUED = "queued"  # the stage of a task waiting for a worker; the servicer maps stages to the contract
_WARM_TIMEOUT = 300.0
_EXIT_WAIT = 10.0
_NO_SANDBOX = 71  # the exit code of a task whose sandbox could not be entered  # after a task's last frame (or a kill), how long its processes may take to be gone


_RETRIES = 1  # a call whose worker died under it (not by its task) is tried once more


class _WorkerLost(Exception):
    """The warm worker (not the task's process) died during a call."""

    def __init__(self, how: str, error: FreezeError):
        super().__init__(how)
        self.how = how
        self.error = error


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- inside the worker process --------------------------------------------------
def _task_main(task_fd: int, paths: dict, handle, box: bool, memory: int) -> None:
    """The task's own process (PID 1 of its namespace when sandboxed), prepared before
    its task is known: walled in, it waits for one "run" frame, runs it and exits
    (also when the server closes the socket instead). Never returns."""
    from . import taskbox

    code = 0
    try:
        if box:
            taskbox.after_fork_in_pid_namespace()
        taskbox.set_dumpable(False)
        if memory:
            taskbox.limit_memory(memory)
        sock = socket.socket(fileno=task_fd)
        frame = wire.Reader(sock).read()
        if frame is None or frame.get("t") != "run":
            os._exit(0)  # never used: the server discarded this prepared task
        kind, payload = frame["kind"], dict(frame["payload"], **paths)

        def progress(stage, message, fraction: float) -> None:
            frame = {"t": "progress", "stage": stage, "message": message, "fraction": float(fraction)}
            if stage == "plan":  # an early recipe's pieces (tasks.PLAN)
                frame = {"t": "plan", "pieces": message}
            try:
                wire.send(sock, frame)
            except wire.WireError:
                pass  # a progress message too large to send is dropped (an early recipe, say)

        try:
            wire.send(sock, {"t": "ok", "value": handle(kind, payload, progress)})
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an error frame
            wire.send(sock, _error_frame(exc, memory))
    except BaseException:  # noqa: BLE001 - the socket is gone: the server sees the exit
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _error_frame(exc: BaseException, memory: int) -> dict:
    if isinstance(exc, MemoryError) or (type(exc).__name__ == "ResourceExhaustedError"  # TensorFlow's OOM
                                        and not isinstance(exc, FreezeError)):
        exc = ResourceExhausted(
            "the task needed more memory than this server gives one task (%d MiB beyond the warm worker; tffreeze "
            "serve --task-memory-bytes)" % (memory >> 20), "ERROR_REASON_MEMORY_LIMIT", limit=str(memory))
    elif not isinstance(exc, FreezeError):  # a bug or an unexpected TensorFlow failure
        traceback.print_exc(file=sys.stderr)
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        exc = Internal("%s: %s" % (type(exc).__name__, detail))
    return {"t": "error", "code": exc.code, "message": cap_message(exc.message), "reason": exc.reason,
            "metadata": {k: v[:1024] for k, v in list(exc.metadata.items())[:wire.MAX_METADATA]}}


def _start_task(frame: dict, task_fd: int, control_fd: int, handle, box: bool, tasks_root: str,
                memory: int) -> Tuple[int, int]:
    """Prepare a task's process for the task folder ``frame["task_dir"]``: a child walls
    itself in, forks the task's process (PID 1 of its own namespace when sandboxed),
    writes its pid to a pipe and exits; the task's process, orphaned, becomes this
    worker's child (the worker is a child subreaper) and waits on ``task_fd`` for its
    task. Returns (the pipe's read end, the child's pid, also the task's process group)."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(report_w)
        return report_r, pid
    code = _NO_SANDBOX
    try:
        from . import taskbox

        os.close(report_r)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(control_fd)
        taskbox.close_fds_except(task_fd, report_w)
        task_dir = frame["task_dir"]
        if box:
            taskbox.enter(tasks_root, task_dir)
            paths = {"workdir": taskbox.IN_DIR, "out_dir": taskbox.OUT_DIR}
        else:
            paths = {"workdir": os.path.join(task_dir, "in"), "out_dir": os.path.join(task_dir, "out")}
        os.setsid()  # one process group for whatever the task starts (killpg without a PID namespace)
        child = os.fork()
        if child == 0:
            os.close(report_w)
            _task_main(task_fd, paths, handle, box, memory)
        os.write(report_w, child.to_bytes(4, "big"))
        code = 0
    except BaseException:  # noqa: BLE001 - could not enter the sandbox: the worker reports it
        if os.path.isdir(frame.get("task_dir", "")):  # (gone: the server removed it as it stopped, nothing to say)
            traceback.print_exc(file=sys.stderr)
    finally:
        os._exit(code)


def _worker_main(sock: socket.socket, target: str, box: bool, tasks_root: str, memory: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    handle = _load(target)
    handle("warm", {}, lambda *a: None)
    if box:
        from . import taskbox

        taskbox.set_dumpable(False)  # tasks (same user) may not read this process's memory or descriptors
    from . import taskbox as _box

    _box.set_child_subreaper()  # a task's process, orphaned by the child that prepared it, stays ours
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.set_wakeup_fd(wake_w)
    wire.send(sock, {"t": "ready"})
    reader = wire.Reader(sock)
    running = {}  # task process pid -> (task id, process group)
    preparing = {}  # pipe from a preparing child -> [task id, the child's pid, bytes read]
    unclaimed = {}  # pid -> (status, rusage) of children reaped before their task was known
    stopping = False

    def exited(tid, status, usage, base_kb=0):
        wire.send(sock, {"t": "exited", "id": tid, "code": os.waitstatus_to_exitcode(status),
                         "maxrss_kb": int(usage.ru_maxrss) if usage is not None else 0, "base_kb": base_kb})

    while True:
        while True:  # reap every child that ended
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in running:
                tid, group, base_kb = running.pop(pid)
                _kill_group(group)  # anything the task started that is still alive (no PID namespace: no sandbox)
                exited(tid, status, usage, base_kb)
            else:  # a preparing child, a task process not yet reported, or an orphan of a task
                unclaimed[pid] = (status, usage)
                while len(unclaimed) > 1000:
                    unclaimed.pop(next(iter(unclaimed)))
        if stopping and not running and not preparing:
            return
        ready, _, _ = select.select([sock, wake_r] + list(preparing), [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        for fd in [fd for fd in ready if fd in preparing]:
            entry = preparing[fd]
            more = os.read(fd, 4 - len(entry[2]))
            entry[2] += more
            if more and len(entry[2]) < 4:
                continue
            del preparing[fd]
            os.close(fd)
            if len(entry[2]) < 4:  # the child could not enter the sandbox
                wire.send(sock, {"t": "exited", "id": entry[0], "code": _NO_SANDBOX, "maxrss_kb": 0, "base_kb": 0})
                continue
            pid = int.from_bytes(entry[2], "big")
            if pid in unclaimed:  # it already ran and ended
                exited(entry[0], *unclaimed.pop(pid))
                _kill_group(entry[1])
            else:  # its resident size now, waiting for its task: what it grows from (the memory evidence)
                running[pid] = (entry[0], entry[1], _resident_kb(pid))
        if sock not in ready:
            continue
        frames = reader.frames_ready()
        if reader.eof and not frames:
            for pid, (_, group, _) in running.items():
                _kill_group(group)
                _kill(pid)
            for _, child, _ in preparing.values():
                _kill_group(child)
            return
        for frame in frames:
            if frame["t"] == "prepare" and reader.fds:
                task_fd = reader.fds.pop(0)  # sent with this frame
                try:
                    report, child = _start_task(frame, task_fd, sock.fileno(), handle, box, tasks_root, memory)
                    preparing[report] = [frame["id"], child, b""]
                except OSError:
                    wire.send(sock, {"t": "exited", "id": frame["id"], "code": _NO_SANDBOX, "maxrss_kb": 0,
                                     "base_kb": 0})
                finally:
                    os.close(task_fd)
            elif frame["t"] == "kill":
                for pid, (tid, group, _) in running.items():
                    if tid == frame.get("id"):
                        _kill(pid)  # PID 1 of the task's namespace: the kernel kills the rest
                        _kill_group(group)
                for tid, child, _ in preparing.values():
                    if tid == frame.get("id"):
                        _kill_group(child)
            elif frame["t"] == "probe":
                for pid, (tid, _, _) in running.items():
                    if tid == frame.get("id"):
                        ticks, threads, state = _cpu(pid)
                        wire.send(sock, {"t": "cpu", "id": tid, "ticks": ticks, "threads": threads, "state": state})
            elif frame["t"] == "stop":
                stopping = True


def _resident_kb(pid: int) -> int:
    try:
        with open("/proc/%d/status" % pid) as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
    except (OSError, ValueError):
        return 0


def _cpu(pid: int) -> Tuple[int, int, str]:
    """(CPU ticks used by all its threads, its threads, its state letter) of a process; (0, 0, "")
    when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        return int(fields[11]) + int(fields[12]), int(fields[17]), fields[0]
    except (OSError, ValueError, IndexError):
        return 0, 0, ""


def _size_of(folder: str) -> int:
    """Bytes of the files under ``folder`` (a task's staged upload)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


# -- in the server ----------------------------------------------------------------
STALL_SECONDS = 15.0  # a task under the memory limit that waits single-threaded, using no CPU, this long is stuck
_PROBE_EVERY = 1.0


class _Stall:
    """What ``WorkerPool._stalled`` knows of one task: when it last asked, the CPU ticks seen and since when."""

    def __init__(self):
        self.asked, self.ticks, self.since = 0.0, -1, time.monotonic()


def _stage_words(stage) -> str:
    """A stage a task reported, in words ("" when none or unknown)."""
    try:
        from tffreeze_api.v1 import freeze_pb2

        from .core import stages

        return freeze_pb2.Stage.Name(stages.contract(stage))[len("STAGE_"):].lower().replace("_", " ")
    except (ValueError, TypeError, ImportError):
        return ""


class Task:
    """A task's folder: ``in/`` (the staged inputs) and ``out/`` (empty; the task's
    outputs), seen by the task's sandbox and nothing else; removed when done."""

    def __init__(self, root: str):
        self.dir = tempfile.mkdtemp(prefix="task-", dir=root)
        self.id = os.path.basename(self.dir)
        self.in_dir = os.path.join(self.dir, "in")
        self.out_dir = os.path.join(self.dir, "out")
        os.mkdir(self.in_dir, 0o755)
        os.mkdir(self.out_dir, 0o755)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _Worker:
    def __init__(self, target: str, sandbox=None, tasks_root: str = "", memory: int = 0):
        parent, child = socket.socketpair()
        argv = [sys.executable, "-m", "tffreeze_server.workers", "--fd", str(child.fileno()), "--target", target,
                "--tasks-root", tasks_root, "--memory", str(memory)]
        if sandbox is not None:
            argv.append("--sandboxed")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the server's imports, also for tests
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's import-time info lines (CUDA probing, oneDNN)
        if sandbox is not None:
            argv = sandbox.wrap(argv, env)
        try:
            self.process = subprocess.Popen(argv, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        finally:
            child.close()
        self.sock = parent
        self.reader = wire.Reader(parent, max_frame=1 << 16)
        self.exits = {}  # task id -> (code, maxrss_kb, base_kb), as reported
        self.discarded = set()  # prepared tasks closed unused: their exits are dropped
        self.cpu = {}  # task id -> (ticks, threads, state): the last answer to a probe
        self.prepared: Optional[Tuple[Task, socket.socket]] = None
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

    def pump(self, timeout: float) -> bool:
        """Read the worker's frames for up to ``timeout``; False when it is gone or broke the format."""
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return True
            frames = self.reader.frames_ready()
            for fd in self.reader.take_fds():
                os.close(fd)  # a worker sends no descriptors
            for frame in frames:
                msg = wire.check_worker_frame(frame)
                if msg[0] == "ready":
                    self.ready = True
                elif msg[0] == "cpu":
                    self.cpu[msg[1]] = msg[2:]
                elif msg[1] in self.discarded:
                    self.discarded.discard(msg[1])
                else:
                    self.exits[msg[1]] = (msg[2], msg[3], msg[4])
            return not self.reader.eof
        except (OSError, ValueError):
            return False

    def prepare(self, tasks_root: str) -> None:
        """Have the worker fork the next task's process now, off any call's path: it walls
        itself in around a new, empty task folder and waits on its socket for its task."""
        task = Task(tasks_root)
        ours, theirs = socket.socketpair()
        try:
            self.send({"t": "prepare", "id": task.id, "task_dir": task.dir}, [theirs.fileno()])
        except BaseException:
            ours.close()
            task.remove()
            raise
        finally:
            theirs.close()
        self.prepared = (task, ours)

    def take_prepared(self) -> Tuple[Task, socket.socket]:
        prepared, self.prepared = self.prepared, None
        return prepared

    def discard_prepared(self) -> None:
        if self.prepared is not None:
            task, sock = self.take_prepared()
            self.discarded.add(task.id)
            sock.close()  # the waiting process reads the end of its socket and exits
            task.remove()

    def wait_ready(self, timeout: float) -> bool:
        """Consume the worker's "ready" frame (TensorFlow imported)."""
        end = time.monotonic() + timeout
        while not self.ready and time.monotonic() < end:
            if not self.pump(min(0.5, max(0.0, end - time.monotonic()))):
                return False
        return self.ready

    def send(self, message: dict, fds=()) -> None:
        wire.send(self.sock, message, fds)

    def kill(self) -> None:
        self.discard_prepared()
        try:
            self.process.kill()
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            self.sock.close()

    def stop(self) -> None:
        self.discard_prepared()
        try:
            self.send({"t": "stop"})
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
        self.sock.close()


class WorkerPool:
    """``tasks_root``: where task folders are made (a private temporary folder when
    not given); ``task_memory``: bytes a task may allocate beyond the warm worker
    (0: no limit); ``local``: the per-user local server (a task over that limit is told
    the ``tffreeze local-server start`` flag that raises it, see ``memlimit``)."""

    def __init__(self, size: int = 1, target: str = DEFAULT_TARGET, max_tasks: int = 200, sandbox=None,
                 tasks_root: Optional[str] = None, task_memory: int = 0, local: bool = False):
        self.size = max(1, size)
        self.target = target
        self.max_tasks = max_tasks
        self.sandbox = sandbox
        self._own_root = tasks_root is None
        self.tasks_root = os.path.realpath(tasks_root or tempfile.mkdtemp(prefix="tffreeze-tasks-"))
        self.task_memory = task_memory
        self.local = local
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
                holder.append(_Worker(self.target, self.sandbox, self.tasks_root, self.task_memory))
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
        try:
            worker.prepare(self.tasks_root)
        except OSError:
            pass  # a worker that died at once: its first call finds it gone and replaces it
        return worker

    def _forget(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill() if kill else worker.stop()

    def _retire(self, worker: _Worker, kill: bool) -> None:
        """A worker that failed: replaced at once (no healthy worker to wait on)."""
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
            if not worker.is_alive() or not worker.pump(0):
                # died while idle (killed from outside, say): never handed a call; replaced now
                self._retire(worker, kill=True)
                continue
            return worker

    def run(self, kind: str, payload: dict, timeout: Optional[float] = None,
            cancelled: Callable[[], bool] = lambda: False, stage: Optional[Callable[[str], None]] = None,
            stage_limits: Optional[Dict] = None, server_limit: bool = False) -> Iterator[Tuple]:
        """Run a task in its own sandboxed process, prepared beforehand by a warm worker.
        Yields ("task", Task) once a worker is taken (its folders exist until the
        generator ends), ("progress", stage, message, fraction) tuples, and finally
        ("result", value), only once every process of the task is gone. Errors raise
        ``core.errors`` exceptions. ``stage(in_dir)`` puts the task's inputs in place
        before it starts; the task sees ``payload`` plus ``workdir`` and ``out_dir``.
        ``stage_limits``: {stage: (seconds, what)}: once the task reports that stage, it
        has that long to report another or finish (DEADLINE_EXCEEDED naming ``what``)."""
        deadline = time.monotonic() + timeout if timeout else None
        stage_limits = stage_limits or {}
        in_stage = []  # (stage, started) of the last limited stage reported

        def check():
            if cancelled():
                raise Cancelled("the call was cancelled; its task was stopped", "ERROR_REASON_CANCELLED")
            if in_stage:
                seconds, what = stage_limits[in_stage[0]]
                if time.monotonic() - in_stage[1] > seconds:
                    raise DeadlineExceeded("%s did not finish within %g s; its task was stopped" % (what, seconds),
                                           "ERROR_REASON_DEADLINE", limit=str(seconds))
            if deadline is not None and time.monotonic() > deadline:
                if server_limit:  # (the server's own limit was the shorter: the caller's deadline cannot raise it)
                    raise DeadlineExceeded("the %s did not finish within the server's limit for a call (%g s, `tffreeze "
                                           "serve --max-call-seconds`); its task was stopped. A longer --timeout does "
                                           "not raise it: ask the server's operator to raise it" % (kind, timeout),
                                           "ERROR_REASON_DEADLINE", limit=str(timeout))
                raise DeadlineExceeded("the %s did not finish within the call's deadline (%.0f s); its task was "
                                       "stopped. Retry with a longer deadline (timeout)." % (kind, timeout),
                                       "ERROR_REASON_DEADLINE")

        yield ("progress", QUEUED, "waiting for a TensorFlow worker", 0.0)
        for attempt in range(1 + _RETRIES):
            try:
                in_stage[:] = []
                yield from self._attempt(kind, payload, check, stage, stage_limits, in_stage)
                return
            except _WorkerLost as lost:
                if attempt < _RETRIES:
                    check()  # a call cancelled, or a server stopping, is not retried
                # The warm worker died while its task ran. The task runs in a process of its
                # own that cannot signal the worker (another PID namespace), so the death came
                # from outside the call (an operator, the system): retried once on a healthy
                # worker. A second loss fails the call.
                metrics.WORKER_RESTARTS.labels("lost").inc()
                logging.getLogger("tffreeze.server").warning(
                    "the worker running a %s died (%s)%s", kind, lost.how,
                    "; the call failed" if attempt == _RETRIES else "; retrying the call on another worker")
                if attempt == _RETRIES:
                    raise lost.error from None
                yield ("progress", QUEUED, "the worker was lost (%s); retrying on another" % lost.how, 0.0)

    def _attempt(self, kind: str, payload: dict, check, stage, stage_limits, in_stage) -> Iterator[Tuple]:
        """One try of ``run`` on one worker; _WorkerLost when that worker dies meanwhile."""
        metrics.QUEUE_DEPTH.inc()
        try:
            worker = self._acquire(check)
        finally:
            metrics.QUEUE_DEPTH.dec()
        if worker.prepared is None:  # its last prepare failed: it will fail again, visibly
            try:
                worker.prepare(self.tasks_root)
            except OSError:
                lost = self._worker_gone(worker, kind)
                self._retire(worker, kill=True)
                raise lost from None
        task, ours = worker.take_prepared()
        try:  # the next task's process is prepared while this one runs
            worker.prepare(self.tasks_root)
        except OSError:
            pass  # the worker is gone: this task finds out below
        healthy = False  # the worker may serve again
        started = False
        try:
            yield ("task", task)
            if stage is not None:
                try:
                    stage(task.in_dir)
                except BaseException:
                    healthy = True  # the prepared process saw nothing: discarded, the worker is fine
                    worker.discarded.add(task.id)
                    raise
            try:
                wire.send(ours, {"t": "run", "kind": kind, "payload": payload})
            except OSError:
                pass  # the prepared process is gone: the exit the worker reports says why
            started = True
            outcome, exit_info = yield from self._follow(worker, task, ours, check, kind, stage_limits, in_stage,
                                                         payload)
            healthy = True
        finally:
            ours.close()
            worker.cpu.pop(task.id, None)
            if not started or not healthy:
                task.remove()
            if healthy:
                self._release(worker)
            else:
                self._retire(worker, kill=True)
        try:
            if outcome is not None and outcome[0] == "ok":
                yield ("result", outcome[1])
                return
            if outcome is not None and outcome[0] == "raise":
                raise outcome[1]
            if outcome is not None:
                over = self._over_memory(kind, payload, task, outcome=outcome, exit_info=exit_info)
                if over is not None:
                    raise over
                # A task may report what a freeze can fail with; never a transport or auth status.
                cls = BY_CODE.get(outcome[1], Internal) if outcome[1] not in _NOT_FROM_TASKS else Internal
                raise cls(outcome[2], outcome[3], **outcome[4])
            if exit_info[0] == _NO_SANDBOX:
                check()  # a sandbox that ended as the call was cancelled, or the server stopped, ended for that
            raise self._over_memory(kind, payload, task, exit_info=exit_info) or self._crash(exit_info, kind)
        finally:
            task.remove()

    def _follow(self, worker: _Worker, task: Task, sock: socket.socket, check, kind: str, stage_limits, in_stage,
                payload: Optional[dict] = None):
        """Read the task's frames (progress passed on) until its processes are gone.
        Returns (its outcome or None, (exit code, maxrss_kb)). Deadline and cancel stop
        the task, and so does a stall under the task memory limit (``_stalled``); a worker
        that breaks the format or dies raises."""
        reader = wire.Reader(sock)
        outcome = None
        stopping_since = None
        pending_error = stopped_by = None
        stall = _Stall()
        stage_seen = None
        while True:
            try:
                check()
                if self.task_memory and outcome is None:
                    self._stalled(worker, task, stall, kind, payload, stage_seen)
            except FreezeError as exc:
                if stopping_since is None:
                    pending_error = stopped_by = exc
                    stopping_since = time.monotonic()
                    worker.send({"t": "kill", "id": task.id})
            if stopping_since is not None and time.monotonic() - stopping_since > _EXIT_WAIT:
                raise pending_error or Internal("a task's processes did not end; its worker was replaced")
            if task.id in worker.exits:
                exit_info = worker.exits.pop(task.id)
                if exit_info[0] == _NO_SANDBOX:  # never ran: its socket's end says nothing of the upload; a
                    return (("raise", stopped_by) if stopped_by else None), exit_info  # stop asked meanwhile, why
                if not reader.eof and pending_error is None:  # what the task wrote before it ended
                    sock.setblocking(False)
                    try:
                        while not reader.eof:
                            outcome = self._take(reader.frames_ready(), outcome)
                    except BlockingIOError:
                        pass
                    except (wire.WireError, OSError) as exc:
                        pending_error = FailedPrecondition(
                            "the task sent a malformed message (%s)" % str(exc)[:200], "ERROR_REASON_WORKER_CRASHED")
                if pending_error is not None:  # the task was stopped; the worker is fine
                    return ("raise", pending_error), exit_info
                return outcome, exit_info
            readable, _, _ = select.select([sock, worker.sock], [], [], 0.1)
            if worker.sock in readable and not worker.pump(0):
                raise self._worker_gone(worker, kind)
            if sock in readable and not reader.eof and pending_error is None:
                try:
                    msgs = [wire.check_task_frame(f) for f in reader.frames_ready()]
                except (wire.WireError, OSError) as exc:
                    worker.send({"t": "kill", "id": task.id})
                    pending_error = FailedPrecondition(
                        "the task sent a malformed message (%s); it was stopped" % str(exc)[:200],
                        "ERROR_REASON_WORKER_CRASHED")
                    stopping_since = stopping_since or time.monotonic()
                    continue
                for fd in reader.take_fds():
                    os.close(fd)  # a task sends no descriptors
                for msg in msgs:
                    if msg[0] == "progress":
                        if msg[1] != "plan":
                            stage_seen = msg[1]
                        if msg[1] in stage_limits:
                            in_stage[:] = [msg[1], time.monotonic()]
                        elif msg[1] != "plan":
                            in_stage[:] = []
                        if outcome is None:
                            yield msg
                    elif outcome is None:
                        outcome = msg
            if not worker.is_alive():
                raise self._worker_gone(worker, kind)

    def _stalled(self, worker: _Worker, task: Task, stall: "_Stall", kind: str, payload, stage) -> None:
        """Under the task memory limit, a task's process that waits single-threaded, using no CPU,
        for STALL_SECONDS is stuck: a thread it needed could not be created under the limit (a
        thread's stack counts against it) and it waits for that thread forever, on a lock no
        signal of its own can break. Raises the memory limit's error (the caller stops the
        task); the stage's own time limit, if any, would name its flag later, the call's
        deadline much later still."""
        now = time.monotonic()
        if now - stall.asked >= _PROBE_EVERY:
            stall.asked = now
            try:
                worker.send({"t": "probe", "id": task.id})
            except OSError:
                return
        answer = worker.cpu.pop(task.id, None)
        if answer is None:
            return
        ticks, threads, state = answer
        if threads != 1 or state != "S" or ticks != stall.ticks:
            stall.ticks, stall.since = ticks, now
            return
        if now - stall.since < STALL_SECONDS:
            return
        words = _stage_words(stage)
        verify, fmt = memlimit.options_of(payload or {})
        raise memlimit.error(
            kind, self.task_memory, self.local,
            "its process stopped%s: it waited single-threaded, using no CPU, for %.0f s (under the memory limit a "
            "thread it needed could not be created, and it waits for it forever); it was stopped" % (
                " while " + words if words else "", now - stall.since),
            upload_bytes=_size_of(task.in_dir), verify=verify, fmt=fmt, likely=True,
            metadata={"stalled": "%.0f" % (now - stall.since),
                      "stage": "STAGE_" + words.upper().replace(" ", "_") if words else ""})

    @staticmethod
    def _take(frames, outcome):
        for frame in frames:
            msg = wire.check_task_frame(frame)
            if msg[0] != "progress" and outcome is None:
                outcome = msg
        return outcome

    @staticmethod
    def _worker_gone(worker: _Worker, kind: str) -> "_WorkerLost":
        code = worker.exitcode()
        sig = -code if code is not None and code < 0 else None
        how = "signal %s" % signal.Signals(sig).name if sig in set(signal.Signals) else "exit code %s" % code
        return _WorkerLost(how, Unavailable(
            "the TensorFlow worker running this %s was stopped from outside the call (%s), twice; the server "
            "replaced it. Retry the call." % (kind, how), "ERROR_REASON_WORKER_CRASHED", signal=how))

    def _over_memory(self, kind: str, payload: dict, task: Task, outcome=None, exit_info=None):
        """The task memory limit's error (``memlimit``) when the task's error says an
        allocation failed, or its process died of a signal after growing near the limit;
        else None (the import-time bound's refusal is reworded for the local server)."""
        if not self.task_memory:
            return None
        if outcome is not None:
            code, message, reason, metadata = outcome[1:5]
            if memlimit.bound_refusal(reason, metadata):
                return ResourceExhausted(memlimit.local_bound_message(message), reason, **metadata) if self.local \
                    else None
            if not memlimit.allocation_failed(message, reason, metadata):
                code, maxrss_kb, base_kb = (tuple(exit_info or ()) + (None, 0, 0))[:3]
                if not memlimit.failed_at_limit(maxrss_kb, base_kb, self.task_memory, reason, metadata):
                    return None
                evidence = ("its %s failed (%s) after the task grew by %s, at the limit, where an allocation fails" % (
                    "conversion" if reason == "ERROR_REASON_CONVERSION_FAILED" else "engine",
                    memlimit.telling_sentence(message).split(". This graph uses")[0], memlimit.human((maxrss_kb - base_kb) * 1024)))
                likely = True
            elif reason == "ERROR_REASON_MEMORY_LIMIT":  # the task's own words name the server's flag: ours replace them
                stage = metadata.get("stage", "")
                evidence = "it ran out of memory%s" % (
                    " while " + stage[len("STAGE_"):].lower().replace("_", " ") if stage.startswith("STAGE_") else "")
                likely = False
            else:
                evidence = "an allocation failed (%s)" % memlimit.telling_sentence(message)
                likely = False
            meta = dict(metadata)  # the task's own (format, stage, node...) kept
        else:
            code, maxrss_kb, base_kb = (tuple(exit_info) + (0, 0))[:3]
            sig = -code if code is not None and code < 0 else None
            if sig is None or not memlimit.crashed_near_limit(maxrss_kb, base_kb, self.task_memory):
                return None
            try:
                how = "signal %s" % signal.Signals(sig).name
            except ValueError:
                how = "signal %d" % sig
            grew = max(0, maxrss_kb - base_kb) * 1024
            evidence = ("its process died (%s) after growing by %s, near the limit; a TensorFlow allocation that "
                        "fails there can end it so" % (how, memlimit.human(grew)))
            likely, meta = True, {"signal": how, "grew": str(grew)}
        verify, fmt = memlimit.options_of(payload)
        return memlimit.error(kind, self.task_memory, self.local, evidence, upload_bytes=_size_of(task.in_dir),
                              verify=verify, fmt=fmt, likely=likely, metadata=meta)

    @staticmethod
    def _crash(exit_info, kind: str) -> FreezeError:
        """A task whose process ended without a result: killed by the system (SIGKILL:
        out of memory, most likely) is RESOURCE_EXHAUSTED; any other death (a
        TensorFlow CHECK failure or crash on the upload) FAILED_PRECONDITION."""
        code = exit_info[0]
        if code == _NO_SANDBOX:  # the server's machine, not the upload (which the task never saw)
            return Unavailable("this server could not set up a task's sandbox (its log says why: user namespaces "
                               "exhausted or refused, say); the upload was not looked at. Retry later, or ask the "
                               "server's operator", "ERROR_REASON_SANDBOX_UNAVAILABLE", needs="sandbox")
        sig = -code if code is not None and code < 0 else (code - 128 if code is not None and 128 < code < 160 else None)
        try:
            how = "signal %s" % signal.Signals(sig).name if sig else "exit code %s" % code
        except ValueError:
            how = "signal %d" % sig
        if sig == signal.SIGKILL:
            return ResourceExhausted("the TensorFlow worker was killed by the system (%s) during %s, most likely "
                                     "out of memory: the upload needs more memory than a worker here has. The "
                                     "server keeps serving." % (how, kind),
                                     "ERROR_REASON_WORKER_CRASHED", signal=how)
        return FailedPrecondition("the TensorFlow worker crashed (%s) during %s; the upload triggers a TensorFlow "
                                  "failure. The server keeps serving; check the upload's files, or report it with "
                                  "the upload." % (how, kind), "ERROR_REASON_WORKER_CRASHED", signal=how)

    def close(self) -> None:
        self._closed = True
        self._spawn_requests.put(None)
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.stop()
        if self._own_root:
            shutil.rmtree(self.tasks_root, ignore_errors=True)

    def alive(self) -> int:
        with self._lock:
            return sum(1 for w in self._all if w.is_alive())


def main(argv=None) -> int:
    """The worker process: ``python -m tffreeze_server.workers --fd N --target MODULE:FUNC``."""
    p = argparse.ArgumentParser(description="a tffreeze TensorFlow worker (started by the server)")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--tasks-root", default="")
    p.add_argument("--memory", type=int, default=0)
    p.add_argument("--sandboxed", action="store_true")
    args = p.parse_args(argv)
    try:
        _worker_main(socket.socket(fileno=args.fd), args.target, args.sandboxed, args.tasks_root, args.memory)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the server went away (it could not listen, or it stopped): nothing to report to
    return 0


__all__ = ["WorkerPool", "Task", "DEFAULT_TARGET"]


if __name__ == "__main__":
    sys.exit(main())
