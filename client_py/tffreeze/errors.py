"""Client exceptions: ``tffreeze_api.errors``, the registry the server raises from.

Every error raised by :class:`tffreeze.FreezeClient` is a :class:`TffreezeError`
whose ``code`` is the status name ("NOT_FOUND", ...) and whose ``reason`` is
the server's machine-readable ErrorReason name ("ERROR_REASON_BLOBS_MISSING",
see protos/tffreeze/v1/errors.proto), with the ErrorInfo's ``metadata``.
Branch on ``reason``, never on the message. Server errors are raised ``from``
the original ``grpc.RpcError``.
"""

from __future__ import annotations

from typing import Optional

from tffreeze_api.errors import (  # the registry the server raises from
    BY_CODE, UNSPECIFIED, CancelledError, DataLossError, DeadlineExceededError, FailedPreconditionError,
    InternalError, InvalidArgumentError, NotFoundError, ResourceExhaustedError, TffreezeError, UnauthenticatedError,
    UnavailableError, Violation, error_for, from_status)

_DETAILS_KEY = "grpc-status-details-bin"


def _details(exc) -> Optional[bytes]:
    """The serialized google.rpc.Status a call's trailers carry, if any."""
    try:
        trailers = exc.trailing_metadata() or ()
    except (AttributeError, TypeError, ValueError):
        return None
    return next((value for key, value in trailers if key == _DETAILS_KEY), None)


def from_rpc_error(exc, target: Optional[str] = None) -> TffreezeError:
    """Translate a grpc.RpcError into the registry's error, with its reason, metadata and
    violations (every standard detail the server sent)."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    rich = _details(exc)
    if code == "UNAVAILABLE" and target and not rich:  # the connection's own failure, not the server's answer
        details = unreachable(target, details)
    return from_status(code, details, rich)


def unreachable(target: str, details: str) -> str:
    """Why a server cannot be reached, naming the cause and the flag: a certificate not
    trusted, a TLS handshake with a plaintext server, a plaintext call to a TLS server, no
    server. (The C# and C++ clients say the same.)"""
    low = details.lower()
    if target.startswith("unix:"):
        return ("the local tffreeze server at %s does not answer (%s). Its log is server.log beside the socket; "
                "`tffreeze local-server stop` and try again, or pass --server" % (target, details))
    if "hostname verification" in low or "is not in peer certificate" in low:
        host = target.rsplit(":", 1)[0].strip("[]") if ":" in target else target
        return ("the TLS handshake with the tffreeze server at %s failed: its certificate does not name %s (it was "
                "issued for another name; %s). Reach the server by a name or address its certificate holds, or have its "
                "operator add %s to the certificate's subjectAltName (server.ext in the README's recipe)"
                % (target, host, details, host))
    if "certificate has expired" in low or "certificate is not yet valid" in low:
        return ("the TLS handshake with the tffreeze server at %s failed: its certificate %s (%s). Its operator must "
                "issue a new one (the README's openssl recipe, with -days)"
                % (target, "has expired" if "expired" in low else "is not yet valid", details))
    if "certificate_verify_failed" in low or "certificate verify failed" in low or "trustfailure" in low:
        return ("the TLS handshake with the tffreeze server at %s failed: its certificate is not trusted (%s). Pass "
                "--ca CA.pem (the CA that signed the server's certificate; or $TFFREEZE_CA); with that CA given, "
                "the certificate has expired or another CA signed it." % (target, details))
    if "security handshaker" in low:  # this side's TLS setup: the client certificate and key
        return ("the TLS setup for the tffreeze server at %s failed before connecting (%s): check that --client-cert "
                "is a PEM certificate and --client-key its PEM private key (in that order), and --ca a CA certificate"
                % (target, details))
    if "missing selected alpn" in low:  # TLS without HTTP/2: the gRPC-Web port of a TLS server (the C++ client says the same)
        return ("%s speaks TLS but not gRPC's HTTP/2 (%s): it looks like the gRPC-Web port; give the 'listening on' "
                "port (--server HOST:PORT)" % (target, details))
    if "handshake" in low:
        return ("the TLS handshake with the tffreeze server at %s failed (%s). If the server does not speak TLS, "
                "drop --tls / --ca ($TFFREEZE_TLS, $TFFREEZE_CA)." % (target, details))
    if "failed parsing http/2" in low:  # an HTTP/1 server: the gRPC-Web port (the C++ client says the same)
        return ("%s answered with HTTP/1: it looks like the gRPC-Web port; give the 'listening on' port "
                "(--server HOST:PORT)" % target)
    if any(w in low for w in ("socket closed", "has been shut down", "connection reset", "receivefailure")):
        return ("the tffreeze server at %s closed the connection (%s). If it speaks TLS (started with --tls-cert), "
                "add --tls and --ca CA.pem; if it also requires client certificates (--tls-client-ca), add "
                "--client-cert and --client-key." % (target, details))
    return ("cannot reach the tffreeze server at %s (%s). Start one with `tffreeze serve`, or point --server / "
            "$TFFREEZE_SERVER at a running one." % (target, details))


__all__ = ["TffreezeError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
           "ResourceExhaustedError", "DeadlineExceededError", "CancelledError", "UnavailableError",
           "UnauthenticatedError", "DataLossError", "InternalError", "BY_CODE", "Violation", "error_for",
           "from_rpc_error", "UNSPECIFIED"]
