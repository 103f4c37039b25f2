"""The one place where engine and store errors become gRPC status codes."""

from __future__ import annotations

import errno
import functools
import logging

import grpc

from .core.errors import FreezeError

log = logging.getLogger("tffreeze.server")

_CODES = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "CANCELLED": grpc.StatusCode.CANCELLED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}


def to_status(exc: BaseException):
    """(grpc.StatusCode, message) for any exception a handler lets escape."""
    if isinstance(exc, FreezeError):
        return _CODES.get(exc.code, grpc.StatusCode.INTERNAL), exc.message
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, ("the server's disk is full (%s); free space in its --data-dir or "
                                                   "lower --max-store-bytes" % exc.strerror)
    log.error("unexpected error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal server error (%s: %s); see the server log" % (
        type(exc).__name__, exc)


def _abort(context, exc):
    code, message = to_status(exc)
    if code is not grpc.StatusCode.INTERNAL or isinstance(exc, FreezeError):
        log.info("%s: %s", code.name, message)
    context.abort(code, message)


def mapped(method):
    """Decorate a unary servicer method: errors become statuses."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error is mapped, none escapes raw
            if _is_abort(exc):
                raise
            _abort(context, exc)
    return wrapper


def mapped_stream(method):
    """Decorate a server-streaming servicer method: errors become statuses."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            yield from method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            if _is_abort(exc):
                raise
            _abort(context, exc)
    return wrapper


def _is_abort(exc) -> bool:
    # context.abort() ends a handler by raising a bare Exception() (grpcio) or a
    # grpc.RpcError (the gRPC-Web adapter); the status is already set.
    return isinstance(exc, grpc.RpcError) or (type(exc) is Exception and not exc.args)


__all__ = ["to_status", "mapped", "mapped_stream"]
