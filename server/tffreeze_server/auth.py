"""TLS and bearer tokens, on both ports.

Tokens come from a file (``--auth-token-file``: one token per line, ``#``
comments); the server keeps only their SHA-256 and compares digests in constant
time. A call carries ``authorization: Bearer TOKEN`` metadata (gRPC) or header
(gRPC-Web); without a valid one it ends UNAUTHENTICATED before any handler runs.
The health service's Check stays open so load balancers can probe. TLS is
``--tls-cert``/``--tls-key`` (PEM), with ``--tls-client-ca`` to require client
certificates (mTLS).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import ssl
from typing import List, Optional

import grpc

OPEN_METHODS = {"/grpc.health.v1.Health/Check"}
UNAUTHENTICATED = ("missing or wrong bearer token: this server requires `authorization: Bearer TOKEN` "
                    "(tffreeze, tffreeze-cs and tffreeze-cpp: --token TOKEN or $TFFREEZE_TOKEN; the web page: its "
                    "Token field). A server started with --auth-token-file accepts the tokens in that file: ask its "
                    "operator for one. Your local server's token is the file `token` in its folder "
                    "(~/.cache/tffreeze/local/token by default), which the command-line clients send themselves")


def refusal(authorization: Optional[str]) -> str:
    """The UNAUTHENTICATED message for a call that sent ``authorization`` (never echoing it): a
    token shaped like a file's path says so (trial 9: `--token ~/team/tokens`)."""
    token = (authorization or "").partition(" ")[2].strip() if (authorization or "").lower().startswith("bearer ") else ""
    if token and (token[0] in "/~." or token.endswith((".txt", ".token", "tokens"))) and " " not in token:
        return ("the bearer token sent looks like a file's path, not a token: --token takes the token itself "
                "(for example --token \"$(head -1 FILE)\"), or set $TFFREEZE_TOKEN to it. " + UNAUTHENTICATED)
    return UNAUTHENTICATED


class AuthConfigError(ValueError):
    pass


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def load_tokens(path: str) -> List[bytes]:
    """SHA-256 digests of the tokens in ``path`` (one per line, blank lines and # comments skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            tokens = [line.strip() for line in fh if line.strip() and not line.strip().startswith("#")]
    except OSError as exc:
        raise AuthConfigError("cannot read --auth-token-file %s: %s" % (path, exc.strerror)) from None
    if not tokens:
        raise AuthConfigError("--auth-token-file %s holds no token (one per line)" % path)
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise AuthConfigError("--auth-token-file %s: tokens must be at least 16 characters (e.g. `openssl rand "
                              "-hex 32`)" % path)
    placeholders = [t for t in tokens if _placeholder(t)]
    if placeholders:
        raise AuthConfigError("--auth-token-file %s holds a placeholder, not a token (%r...): put a random one there "
                              "(e.g. `openssl rand -hex 32`)" % (path, placeholders[0][:12]))
    return [_digest(t) for t in tokens]


_PLACEHOLDER_WORDS = ("replace-me", "replaceme", "change-me", "changeme", "your-token", "example", "placeholder")


def _placeholder(token: str) -> bool:
    """A token from an example file (deploy/k8s/secret-example.yaml's "replace-me-...") or
    one character repeated: anyone who read the example could send it."""
    low = token.lower()
    return any(w in low for w in _PLACEHOLDER_WORDS) or len(set(token)) == 1


class TokenCheck:
    def __init__(self, digests: List[bytes]):
        self.digests = list(digests)

    def accepts(self, header: Optional[str]) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = _digest(token.strip())
        ok = False
        for d in self.digests:  # every digest compared: no early exit
            ok |= hmac.compare_digest(given, d)
        return ok


def _abort_handler(handler, message: str):
    def abort(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)


class TokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, check: TokenCheck):
        self.check = check

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method in OPEN_METHODS:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if self.check.accepts(metadata.get("authorization")):
            return handler
        return _abort_handler(handler, refusal(metadata.get("authorization")))


def _pem_words(cert: str, key: str) -> str:
    """What --tls-cert and --tls-key hold, when one of them is not what its flag takes."""
    def holds(path):
        try:
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
        except OSError as exc:
            return "cannot be read: %s" % exc.strerror
        return ("a private key" if b"PRIVATE KEY-----" in data else "a certificate"
                if b"-----BEGIN CERTIFICATE-----" in data else "no PEM block")
    said = (holds(cert), holds(key))
    if said == ("a private key", "a certificate"):
        return "--tls-cert %s holds a private key and --tls-key %s a certificate: give them the other way round" % (
            cert, key)
    if said != ("a certificate", "a private key"):
        return "--tls-cert %s holds %s and --tls-key %s holds %s (a PEM certificate and its PEM private key)" % (
            cert, said[0], key, said[1])
    return "--tls-cert %s and --tls-key %s do not belong together (the key is not the certificate's)" % (cert, key)


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise AuthConfigError("cannot read %s %s: %s" % (flag, path, exc.strerror)) from None


def grpc_credentials(cert: str, key: str, client_ca: Optional[str]) -> grpc.ServerCredentials:
    ca = _read(client_ca, "--tls-client-ca") if client_ca else None
    return grpc.ssl_server_credentials([(_read(key, "--tls-key"), _read(cert, "--tls-cert"))],
                                       root_certificates=ca, require_client_auth=ca is not None)


def ssl_context(cert: str, key: str, client_ca: Optional[str]) -> ssl.SSLContext:
    """The gRPC-Web port's TLS: TLS 1.2 or later, client certificates required with a client CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise AuthConfigError("cannot load the TLS certificate/key: %s (%s)" % (_pem_words(cert, key), exc)) from None
    return ctx


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["load_tokens", "TokenCheck", "TokenInterceptor", "grpc_credentials", "ssl_context", "is_loopback",
           "AuthConfigError", "OPEN_METHODS", "UNAUTHENTICATED", "refusal"]
