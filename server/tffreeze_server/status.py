"""The one place where engine and store errors become gRPC statuses: a code, a
message, and a google.rpc.ErrorInfo (reason, domain, metadata) in the rich
status, on the native port and on gRPC-Web alike."""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from typing import Dict, Tuple

import grpc
from tffreeze_api import errors
from tffreeze_api.options import FLAGS

from . import metrics
from .core.errors import MAX_MESSAGE_CHARS, FreezeError, ResourceExhausted, Unavailable, cap_message
from .settings import MAX_MESSAGE_BYTES

log = logging.getLogger("tffreeze.server")
DETAILS_KEY = "grpc-status-details-bin"
# An error's trailers stay within the 8 KiB of metadata gRPC clients accept by default
# (beyond it a client sees a bare RESOURCE_EXHAUSTED instead of the error): the message
# as it travels in grpc-message (percent-encoded) and the rich status in base64.
TRAILER_MESSAGE_BYTES = 1536
TRAILER_DETAILS_BYTES = 5120

Status = Tuple[grpc.StatusCode, str, str, Dict[str, str]]


OWED_SECONDS = 10.0  # how long a stopping server waits for the next call of a command it is part-way through
HALT_SECONDS = 12.0  # how long a server that stops now waits for its calls to end (a task's processes take up to 10 s)
LINGER_SECONDS = 1.0  # ... and for the next call at all (a client's calls follow one another within it)


class Activity:
    """Calls in flight, when the last one ended (``--idle-exit`` stops an idle server), and
    the calls a command under way still owes: its freeze or inspect after the plan it was
    answered, its download after a freeze whose graph did not come inline. A stopping
    server waits for those (``settle``): the commands it began answering, it finishes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.active = 0
        self.last = time.monotonic()
        self._plans: list = []  # when each plan not yet followed by its freeze/inspect was answered
        self._downloads: Dict[str, float] = {}  # sha256 -> when the freeze that made it ended
        self.halted = ""  # why the server stops before the calls in flight finished ("": it does not)

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            self.last = time.monotonic()
            self._changed.notify_all()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self.active else time.monotonic() - self.last

    def planned(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._owed(now)  # (only the last OWED_SECONDS are kept: plans never followed cannot pile up)
            self._plans.append(now)

    def plan_used(self) -> None:
        with self._lock:
            if self._plans:
                self._plans.pop(0)

    def download_owed(self, sha256: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._owed(now)
            self._downloads[sha256] = now

    def downloaded(self, sha256: str) -> None:
        with self._lock:
            self._downloads.pop(sha256, None)

    def _owed(self, now: float) -> int:
        self._plans = [t for t in self._plans if now - t < OWED_SECONDS]
        self._downloads = {k: t for k, t in self._downloads.items() if now - t < OWED_SECONDS}
        return len(self._plans) + len(self._downloads)

    def halt(self, why: str) -> None:
        """The server stops now (``why``: a second signal, the drain ran out): every call in
        flight, and any call still made, ends with SERVER_STOPPING in words that say so (it
        used to be cut off by the closing port, and every client then said the server could
        not be reached, or to check its TLS setting)."""
        with self._lock:
            self.halted = why
            self._changed.notify_all()

    def check_halted(self) -> None:
        """Raise the stopping server's UNAVAILABLE / SERVER_STOPPING once ``halt`` was called."""
        why = self.halted
        if why:
            raise Unavailable("the tffreeze server stopped before this command finished (%s); nothing of it was "
                              "kept. Run the command again once the server is back, or on another server" % why,
                              "ERROR_REASON_SERVER_STOPPING")

    def quiet(self, deadline: float) -> bool:
        """Wait until no call is in flight; False when ``deadline`` (monotonic) came first."""
        with self._lock:
            while self.active:
                now = time.monotonic()
                if now >= deadline:
                    return False
                self._changed.wait(min(0.2, deadline - now))
            return True

    def under_way(self) -> Tuple[int, int]:
        """(calls in flight, calls that commands under way still owe)."""
        with self._lock:
            return self.active, self._owed(time.monotonic())

    def settle(self, deadline: float, cut: threading.Event) -> bool:
        """Wait until no call is in flight, none is owed and none ended in the last
        LINGER_SECONDS; False when ``deadline`` (monotonic) or ``cut`` came first."""
        with self._lock:
            while True:
                now = time.monotonic()
                if not self.active and not self._owed(now) and now - self.last >= LINGER_SECONDS:
                    return True
                if now >= deadline or cut.is_set():
                    return False
                self._changed.wait(min(0.2, max(0.0, deadline - now)))


ACTIVITY = Activity()


def to_status(exc: BaseException) -> Status:
    """(code, message, reason, metadata) for any exception a handler lets escape."""
    if isinstance(exc, FreezeError):
        code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)
        flag = FLAGS.get(exc.metadata.get("field", ""))
        # with the command line's spelling of the field, the same in every client
        return code, exc.message, exc.reason, dict(exc.metadata, flag=flag) if flag else exc.metadata
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (grpc.StatusCode.RESOURCE_EXHAUSTED, "the server's disk is full (%s); free space in its --data-dir "
                "or lower --max-store-bytes" % exc.strerror, "ERROR_REASON_STORE_FULL", {})
    log.error("unexpected error", exc_info=exc)
    return (grpc.StatusCode.INTERNAL, "internal server error (%s); see the server log" % type(exc).__name__,
            "ERROR_REASON_INTERNAL", {})


def rich_status(code: grpc.StatusCode, message: str, reason: str, metadata: Dict[str, str],
                violations=()) -> bytes:
    """The serialized google.rpc.Status: an ErrorInfo, and a PreconditionFailure of the violations,
    within TRAILER_DETAILS_BYTES once in base64: violations are left out first (the ErrorInfo's
    "violations" metadata then says how many there were), then long metadata values cut, then
    the message (it travels whole in grpc-message too)."""
    violations, metadata = list(violations), dict(metadata)
    shown = violations
    while True:
        details = errors.rich_status(code.value[0], message, reason, metadata, shown)
        if (len(details) + 2) // 3 * 4 <= TRAILER_DETAILS_BYTES:
            return details
        if shown:
            shown = shown[:min(len(shown), errors.MAX_VIOLATIONS) // 2]
            metadata["violations"] = str(len(violations))
        elif any(len(v) > 64 for v in metadata.values()):
            metadata = {k: v if len(v) <= 64 else v[:54] + " ... (cut)" for k, v in metadata.items()}
        elif len(message) > 256:
            message = message[:200] + " ... (cut)"
        elif len(metadata) > 4:
            metadata = dict(list(metadata.items())[:4])
        else:
            return details


def _quoted_len(message: str) -> int:
    """The length of ``message`` in grpc-message: UTF-8, bytes outside printable ASCII and
    '%' as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in message.encode("utf-8", "replace"))


def trailer_message(message: str) -> str:
    """``message`` cut (a list ends in "... and N more") until it fits TRAILER_MESSAGE_BYTES
    percent-encoded: non-ASCII text takes up to 12 bytes a character there."""
    limit = MAX_MESSAGE_CHARS
    cut = cap_message(message, limit)  # about 1 KiB; a list ends in "... and N more"
    while _quoted_len(cut) > TRAILER_MESSAGE_BYTES and limit > 64:
        limit = limit * 3 // 4
        cut = cap_message(message, limit)
    return cut


def answer_too_large(method: str, size: int) -> ResourceExhausted:
    return ResourceExhausted("the answer to %s would be %d bytes, more than the %d bytes one gRPC message may carry"
                             % (method, size, MAX_MESSAGE_BYTES), "ERROR_REASON_GRAPH_TOO_LARGE",
                             limit=MAX_MESSAGE_BYTES, answer_bytes=size, method=method)


def _bounded(method, response):
    """Every answer is checked against gRPC's send limit here, so one over it is refused with
    an ErrorInfo, never with gRPC's own bare RESOURCE_EXHAUSTED (planning.py cuts lists first)."""
    size = response.ByteSize()
    if size > MAX_MESSAGE_BYTES:
        raise answer_too_large(method.__name__, size)
    return response


def _abort(context, exc):
    code, message, reason, metadata = to_status(exc)
    message = trailer_message(message)
    if code is not grpc.StatusCode.INTERNAL or isinstance(exc, FreezeError):
        log.info("%s %s: %s", code.name, reason, message)
    # set_trailing_metadata + abort is what grpc_status's abort_with_status does,
    # and it also works with the gRPC-Web adapter (whose abort_with_status does not).
    violations = exc.violations if isinstance(exc, FreezeError) else ()
    trailers = ((DETAILS_KEY, rich_status(code, message, reason, metadata, violations)),)
    if reason == "ERROR_REASON_SERVER_STOPPING":
        # a client's channel retries an UNAVAILABLE call by itself (its service config): a negative
        # pushback tells it not to, so it shows this status rather than a refused reconnect
        trailers += (("grpc-retry-pushback-ms", "-1"),)
    context.set_trailing_metadata(trailers)
    context.abort(code, message)


def _count(method, exc, context) -> None:
    """tffreeze_calls_total{method, code}: the status the call ends with (for a handler that
    aborted the call itself, the code it set)."""
    if exc is None:
        code = "OK"
    elif _is_abort(exc):
        try:
            code = context.code().name
        except (AttributeError, NotImplementedError):
            code = "UNKNOWN"
    else:
        code = to_status(exc)[0].name
    metrics.CALLS.labels(method.__name__, code).inc()


def mapped(method):
    """Decorate a unary servicer method: errors become statuses (and every call is counted)."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        ACTIVITY.enter()
        try:
            ACTIVITY.check_halted()
            response = _bounded(method, method(self, request, context))
        except Exception as exc:  # noqa: BLE001 - every error is mapped, none escapes raw
            _count(method, exc, context)
            if _is_abort(exc):
                raise
            _abort(context, exc)
        finally:
            ACTIVITY.leave()
        _count(method, None, context)
        return response
    return wrapper


def mapped_stream(method):
    """Decorate a server-streaming servicer method: errors become statuses (and every call is counted)."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        ACTIVITY.enter()
        try:
            ACTIVITY.check_halted()
            answers = method(self, request, context)
            try:
                for response in answers:
                    ACTIVITY.check_halted()
                    yield _bounded(method, response)
            finally:
                answers.close()  # as `yield from` would: the call cancelled, the handler's cleanup runs now
        except Exception as exc:  # noqa: BLE001
            _count(method, exc, context)
            if _is_abort(exc):
                raise
            _abort(context, exc)
        finally:
            ACTIVITY.leave()
        _count(method, None, context)
    return wrapper


def _is_abort(exc) -> bool:
    # context.abort() ends a handler by raising a bare Exception() (grpcio) or a
    # grpc.RpcError (the gRPC-Web adapter); the status is already set.
    return isinstance(exc, grpc.RpcError) or (type(exc) is Exception and not exc.args)


__all__ = ["ACTIVITY", "HALT_SECONDS", "to_status", "rich_status", "trailer_message", "answer_too_large", "mapped", "mapped_stream"]
