"""The server's settings and their defaults: the one place each default lives.
``tffreeze serve`` / ``tffreeze-server`` flags, ``create_server`` and the blob
store all read them from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = ".tffreeze-data"
WORKER_BUDGET_BYTES = 3 << 29  # 1.5 GiB: an idle TensorFlow worker (~540 MiB) plus room to freeze


def default_workers() -> int:
    """What the machine can hold: one worker per core, as long as each has WORKER_BUDGET_BYTES
    of the memory available now (1 GiB kept for the server and the system); at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    by_memory = cores if available is None else (available - (1 << 30)) // WORKER_BUDGET_BYTES
    return int(max(1, min(cores, by_memory)))


DEFAULT_WORKERS = default_workers()
DEFAULT_WORKER_MAX_TASKS = 200  # a worker is replaced (warm, in the background) after this many tasks
DEFAULT_MAX_STORE_BYTES = 20 << 30
LOCAL_MAX_STORE_BYTES = 4 << 30  # the per-user local server's store (it lives in the user's cache folder)
LOCAL_STORE_ENV = "TFFREEZE_LOCAL_STORE_BYTES"  # the local server's store size, read when it starts
LOCAL_WORKERS = 1  # the local server serves one user's builds: one warm TensorFlow, not one per core
LOCAL_IDLE_SECONDS = 1800.0  # the local server stops after this long without a call
DEFAULT_PARTIAL_TTL_SECONDS = 3600  # a resumable upload idle this long is deleted
DEFAULT_RPC_THREADS = 64
DEFAULT_SANDBOX = "auto"
DEFAULT_MAX_CALL_SECONDS = 1800.0  # the longest a freeze/inspect may run, whatever deadline the call asks
DEFAULT_MAX_GRAPH_FILE_BYTES = 1 << 30  # an uploaded .meta / GraphDef / saved_model.pb, checked before parsing
DEFAULT_MAX_GRAPH_NODES = 500_000  # nodes of the uploaded graph, library functions included
DEFAULT_MAX_FUNCTION_DEPTH = 32  # functions calling functions
DEFAULT_VERIFY_SECONDS = 60.0  # the verify stage of a freeze (it runs the graphs), beyond which it is stopped
# The other stages that run code of the upload, each stopped beyond its own limit: loading a TF2
# SavedModel (its restore functions and resource initialisers run) and the format option's export
# (the frozen graph run in TensorFlow, converted, and run in the format's runtime)
DEFAULT_LOAD_SECONDS = 300.0
DEFAULT_EXPORT_SECONDS = 300.0
DEFAULT_DRAIN_SECONDS = 30.0  # on SIGTERM, how long calls in flight may take to finish
DEFAULT_TASK_MEMORY_BYTES = 3 << 30  # what one task may allocate beyond the warm worker (RLIMIT_DATA)
LOCAL_TASK_MEMORY_ENV = "TFFREEZE_LOCAL_TASK_MEMORY_BYTES"  # the local server's task memory, read when it starts


def local_task_memory_bytes() -> int:
    """The local server's default task memory: three quarters of this machine's physical memory,
    at least DEFAULT_TASK_MEMORY_BYTES. Measured beyond the warm worker (TF 2.21, RLIMIT_DATA's
    measure): a plain freeze of a ~200 MB checkpoint needs ~40 MiB, --verify ~3 GiB (15-16x the
    checkpoint), --format onnx 3.7-9.2 GiB (19-50x; up to 61x for MLPs). The local server runs one worker for one
    user, so one task may use most of the machine; the quarter left is for the server, the warm
    worker and the user's other programs. (A plain server shares its machine among --workers
    tasks: it keeps DEFAULT_TASK_MEMORY_BYTES.)"""
    total = None
    try:
        with open("/proc/meminfo") as fh:
            total = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:")), None)
    except (OSError, ValueError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
    return max(DEFAULT_TASK_MEMORY_BYTES, (total * 3 // 4) >> 20 << 20)


MAX_MESSAGE_BYTES = 4 << 20  # gRPC's message cap, both directions


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str, allow_zero: bool = False) -> int:
    """A size in bytes: 4294967296, 4G, 512M, 1.5G, 64MiB (K, M, G, T are powers of 1024);
    0 only with ``allow_zero`` (a limit that 0 turns off). ValueError (with a message naming
    the forms) otherwise. Every byte-size flag and variable of the server and the local
    server reads its value here."""
    t = str(text).strip().upper().replace(" ", "")
    for tail in ("IB", "B"):
        if t.endswith(tail) and len(t) > len(tail):
            t = t[:-len(tail)]
            break
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[:-1] if unit else t
    try:
        value = float(number) if "." in number else int(number)
    except ValueError:
        raise ValueError("%r is not a size: give bytes, or a number with K, M, G or T (e.g. 8G, 512M)" % text) from None
    size = int(value * _UNITS[unit])
    if size == 0 and allow_zero:
        return 0
    if size <= 0:
        raise ValueError("%r: the size must be %s" % (text, "0 (no limit) or more" if allow_zero else
                                                        "more than 0 bytes"))
    return size


def size_text(size: int) -> str:
    """A size as a byte-size flag takes it, the way people write it: 12G, 1.5G, 512M, 100 (bytes
    when no unit gives it exactly with at most one decimal); parse_bytes reads it back as ``size``."""
    for unit in ("T", "G", "M", "K"):
        value = size / float(_UNITS[unit])
        if value >= 1 and int(round(value, 1) * _UNITS[unit]) == size:
            return ("%d%s" if value == int(value) else "%.1f%s") % (value, unit)
    return "%d" % size


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: str = DEFAULT_DATA_DIR
    workers: int = DEFAULT_WORKERS
    worker_max_tasks: int = DEFAULT_WORKER_MAX_TASKS
    max_store_bytes: int = DEFAULT_MAX_STORE_BYTES
    partial_upload_ttl: float = DEFAULT_PARTIAL_TTL_SECONDS
    max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS
    result_cache: bool = True  # answer a repeated freeze from DATA/results (see results.py)
    web_port: Optional[int] = None
    web_allowed_origins: Tuple[str, ...] = ()  # browser origins the gRPC-Web port answers; none by default
    rpc_threads: int = DEFAULT_RPC_THREADS
    sandbox: str = DEFAULT_SANDBOX  # auto | bwrap | none (see sandbox.py)
    max_graph_file_bytes: int = DEFAULT_MAX_GRAPH_FILE_BYTES
    max_graph_nodes: int = DEFAULT_MAX_GRAPH_NODES
    max_function_depth: int = DEFAULT_MAX_FUNCTION_DEPTH
    tls_cert: Optional[str] = None  # PEM certificate chain; with tls_key: both ports speak TLS
    tls_key: Optional[str] = None
    tls_client_ca: Optional[str] = None  # PEM CA: clients must present a certificate it signed (mTLS)
    auth_token_file: Optional[str] = None  # bearer tokens, one per line: every call must carry one
    insecure: bool = False  # allow a non-loopback address without TLS and a token
    store: Optional[str] = None  # s3://BUCKET/PREFIX: a store shared by replicas (s3store.py); None: data_dir only
    s3_endpoint: Optional[str] = None  # an S3-compatible endpoint (MinIO, Ceph, moto...); None: AWS
    metrics_port: Optional[int] = None
    task_memory_bytes: int = DEFAULT_TASK_MEMORY_BYTES
    verify_seconds: float = DEFAULT_VERIFY_SECONDS
    load_seconds: float = DEFAULT_LOAD_SECONDS  # loading a TF2 SavedModel (it runs the upload's functions)
    export_seconds: float = DEFAULT_EXPORT_SECONDS  # the format option's conversion and runtime check
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    metrics_host: Optional[str] = None  # where the metrics port listens; None: loopback
    socket: Optional[str] = None  # gRPC on this Unix socket instead of host:port
    local_dir: Optional[str] = None  # the per-user local server's folder (tffreeze_api.localserver)
    idle_exit: Optional[float] = None  # stop after this many seconds without a call
    health_socket: Optional[str] = None  # grpc.health.v1 only, plaintext, on this Unix socket (mode 0600)
    health_socket_group: Optional[str] = None  # the health socket's group (mode 0660); a name or a gid
