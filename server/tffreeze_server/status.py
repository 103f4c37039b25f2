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
from .core.errors import FreezeError, cap_message

log = logging.getLogger("tffreeze.server")
DETAILS_KEY = "grpc-status-details-bin"

Status = Tuple[grpc.StatusCode, str, str, Dict[str, str]]


class Activity:
    """Calls in flight and when the last one ended (``--idle-exit`` stops an idle server)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.active = 0
        self.last = time.monotonic()

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            self.last = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self.active else time.monotonic() - self.last


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
    """The serialized google.rpc.Status: an ErrorInfo, and a PreconditionFailure of the violations."""
    return errors.rich_status(code.value[0], message, reason, metadata, violations)


def _abort(context, exc):
    code, message, reason, metadata = to_status(exc)
    message = cap_message(message)  # about 1 KiB; a list ends in "... and N more"
    if code is not grpc.StatusCode.INTERNAL or isinstance(exc, FreezeError):
        log.info("%s %s: %s", code.name, reason, message)
    # set_trailing_metadata + abort is what grpc_status's abort_with_status does,
    # and it also works with the gRPC-Web adapter (whose abort_with_status does not).
    violations = exc.violations if isinstance(exc, FreezeError) else ()
    context.set_trailing_metadata(((DETAILS_KEY, rich_status(code, message, reason, metadata, violations)),))
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
            response = method(self, request, context)
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
            yield from method(self, request, context)
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


__all__ = ["ACTIVITY", "to_status", "rich_status", "mapped", "mapped_stream"]
