"""The task memory limit (``--task-memory-bytes``) as the user meets it.

The limit is the kernel's: each task's process has ``RLIMIT_DATA`` set to the warm
worker's data size plus the budget (``taskbox.limit_memory``). Past it an allocation
fails: Python raises MemoryError (or "can't start new thread": a thread's stack counts),
TensorFlow's allocator an OOM, C++ code throws std::bad_alloc (tf2onnx says so in its
error) or, when the failed allocation was not checked, the process dies of
SIGSEGV/SIGABRT. None of that is the upload's fault, so a task that fails that way is
RESOURCE_EXHAUSTED / ERROR_REASON_MEMORY_LIMIT, naming the limit and the command that
raises it (the plain server's flag, or the local server's ``local-server start`` flag
and variable), with a size the upload suggests.

The evidence, from the server's side (``WorkerPool``):

- the task's own error names an allocation failure (``allocation_failed``);
- the task's process died of a signal after its resident size grew by at least half
  the budget (``crashed_near_limit``: the worker reports the process's peak from
  ``wait4``'s rusage and its size when it was prepared). Said as "most likely": a
  crash of another cause in a task that happened to use that much is reported so
  too, and raising the limit then makes it a crash far from the limit, reported as
  the crash it is.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from .core.errors import ResourceExhausted
from .settings import LOCAL_TASK_MEMORY_ENV as LOCAL_ENV

# Measured beyond the warm worker (TF 2.21; README: Memory): --verify 15-16x the checkpoint's size
# (~200 MB checkpoints), --format onnx 19-61x (MLPs of 16-286 MB cost tf2onnx 39-61x), --format
# tflite 13-17x; a plain freeze ~40 MiB.
VERIFY_FACTOR = 16
FORMAT_FACTOR = 64  # --format onnx
FORMAT_FACTORS = {"onnx": FORMAT_FACTOR, "tflite": 20}
FREEZE_FACTOR = 2
_HEADROOM = 512 << 20

_ALLOCATION_FAILED = re.compile(r"bad_alloc|MemoryError|Cannot allocate memory|OOM when allocating|"
                                r"Unable to allocate|failed to allocate|ran out of memory|"
                                # a thread's stack is private memory the limit counts: creating one fails too
                                r"can't start new thread|pthread_create|"
                                # a read into a buffer whose allocation failed unchecked (EFAULT): never the file's fault
                                r"Bad address", re.IGNORECASE)


def human(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return "%.1f %s" % (n / float(1 << shift), unit)
    return "%d bytes" % n


def allocation_failed(message: str, reason: str, metadata: dict) -> bool:
    """A task's error that says an allocation failed (not a graph refused by the import-time
    bound, which names its node: that one is the graph's, see ``bound_refusal``)."""
    if reason == "ERROR_REASON_MEMORY_LIMIT":
        return "node" not in metadata
    return bool(_ALLOCATION_FAILED.search(message or ""))


def telling_sentence(message: str) -> str:
    """The sentence of a task's error that says the allocation failed (not the rest, which
    guesses at the upload)."""
    words = " ".join((message or "").split())
    found = _ALLOCATION_FAILED.search(words)
    if found is None:
        return words[:300].rstrip(".")
    start = words.rfind(". ", 0, found.start())
    end = words.find(". ", found.end())
    return words[start + 2 if start >= 0 else 0:end if end >= 0 else len(words)][:300].rstrip(".")


def bound_refusal(reason: str, metadata: dict) -> bool:
    """The import-time bound's refusal (a constant over a quarter of the budget, named by node)."""
    return reason == "ERROR_REASON_MEMORY_LIMIT" and "node" in metadata


def crashed_near_limit(maxrss_kb: int, base_kb: int, budget: int) -> bool:
    """A task's process that grew by at least half its budget before it died."""
    return budget > 0 and maxrss_kb > 0 and (maxrss_kb - base_kb) * 1024 >= budget // 2


# a conversion, or a step of the engine (verify serialising a graph of the checkpoint's size), refused
_FAILED_AT_LIMIT = ("ERROR_REASON_CONVERSION_FAILED", "ERROR_REASON_GRAPH_UNSUPPORTED")


def failed_at_limit(maxrss_kb: int, base_kb: int, budget: int, reason: str, metadata: dict) -> bool:
    """A conversion (or an engine step: GRAPH_UNSUPPORTED) refused without naming an op, by a task
    whose process had grown to (nine tenths of) its budget: code that fails an allocation at the
    limit often says so in other words (protobuf's "Failed to serialize proto", a MemoryError
    caught and re-raised without text)."""
    return (reason in _FAILED_AT_LIMIT and not metadata.get("op") and budget > 0
            and maxrss_kb > 0 and (maxrss_kb - base_kb) * 1024 >= budget * 9 // 10)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _size_text(n: int) -> str:
    return "%dG" % (n >> 30) if n % (1 << 30) == 0 else "%dM" % -(-n // (1 << 20))


def suggestion(budget: int, upload_bytes: int, verify: bool, fmt: str) -> (int, str):
    """(a limit to try, the words that justify it)."""
    if fmt:
        factor = FORMAT_FACTORS.get(fmt, FORMAT_FACTOR)
        what = "--format %s needs up to %dx the checkpoint's size" % (fmt, factor)
    elif verify:
        factor, what = VERIFY_FACTOR, "--verify needs about %dx the checkpoint's size" % VERIFY_FACTOR
    else:
        factor, what = FREEZE_FACTOR, ""
    need = upload_bytes * factor + _HEADROOM if upload_bytes else 0
    size = max(need, budget + (1 << 30))  # more than now, whatever the estimate says
    size = -(-size // (1 << 30)) << 30  # whole GiB
    if what and upload_bytes:
        what = "%s (this upload: %s): try %s" % (what, human(upload_bytes), _size_text(size))
    return size, what


def fix(local: bool, size: int) -> str:
    if local:
        return ("Restart the local server with a larger limit: `tffreeze local-server stop && tffreeze local-server "
                "start --task-memory-bytes %s` (or set $%s=%s before it starts); then run the command again"
                % (_size_text(size), LOCAL_ENV, _size_text(size)))
    return ("Restart the server with a larger limit: `tffreeze serve --task-memory-bytes %s ...` (0: no limit); then "
            "run the command again" % _size_text(size))


def local_bound_message(message: str) -> str:
    """The import-time bound's words on the local server: its flag, not the plain server's."""
    return message.replace("tffreeze serve --task-memory-bytes",
                           "tffreeze local-server start --task-memory-bytes, or $%s" % LOCAL_ENV)


def error(kind: str, budget: int, local: bool, evidence: str, upload_bytes: int = 0, verify: bool = False,
          fmt: str = "", likely: bool = False, metadata: Optional[dict] = None) -> ResourceExhausted:
    """RESOURCE_EXHAUSTED / ERROR_REASON_MEMORY_LIMIT for a task that hit (or ``likely``
    hit) the task memory limit; ``evidence``: what shows it."""
    size, need = suggestion(budget, upload_bytes, verify, fmt)
    what = "this %s%s" % (kind, " with --format %s" % fmt if fmt else " with --verify" if verify else "")
    message = ("%s %s more memory than this server lets one task use: %s. The task memory limit is %s (%d bytes) "
               "beyond the warm TensorFlow worker%s. %s" % (
                   what, "most likely needed" if likely else "needed", evidence, human(budget), budget,
                   "; " + need if need else "", fix(local, size)))
    physical = _physical_memory()
    if need and physical and size > physical:  # no limit on this machine lets it fit: say so
        message += (". That is more than the %s of memory the server's machine has: %s on a machine with at least "
                    "%s" % (human(physical), "convert it" if fmt else "freeze it", _size_text(size)))
    metadata = {k: v for k, v in (metadata or {}).items() if v}
    metadata.update(limit=str(budget), suggested=str(size))  # (no "flag": that one names a flag of the call)
    return ResourceExhausted(message, "ERROR_REASON_MEMORY_LIMIT", **metadata)


def options_of(payload: dict) -> (bool, str):
    """(verify, format name or "") of a task's payload; (False, "") when it has none."""
    try:
        from tffreeze_api.v1 import freeze_pb2

        from . import wire

        options = freeze_pb2.FreezeOptions.FromString(wire.unb64(payload["options"], "options"))
        fmt = freeze_pb2.Format.Name(options.format)[len("FORMAT_"):].lower()
        return bool(options.verify), "" if fmt in ("unspecified", "graphdef") else fmt
    except Exception:  # noqa: BLE001 - no options (an echo task in tests), or unreadable: words without them
        return False, ""


__all__ = ["allocation_failed", "telling_sentence", "bound_refusal", "crashed_near_limit", "failed_at_limit", "error", "fix", "human",
           "options_of", "local_bound_message", "suggestion", "LOCAL_ENV"]
