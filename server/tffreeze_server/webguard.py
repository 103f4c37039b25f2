"""What the gRPC-Web port accepts, checked before a byte of the body is read.

A web page can make a browser send a POST to any address, without a CORS
preflight when its Content-Type is a "simple" one (text/plain...). So the port
answers only gRPC-Web requests — ``Content-Type: application/grpc-web`` or
``application/grpc-web+proto`` (a browser sends a preflight for those) — refuses
any ``Origin`` not on the allow-list (none by default: the C# client and other
programs send none), refuses a ``Host`` that is not a name this server was bound
as (DNS rebinding: an attacker's name resolving to 127.0.0.1), and refuses bodies
over the message cap from their declared length, before buffering them. When
the server requires bearer tokens, a call without a valid ``Authorization``
header ends UNAUTHENTICATED (grpc-status 16) before the body is read.
Refusals are plain HTTP errors (415, 403, 411, 413) with a one-line reason.

For browser origins on the allow-list CORS is answered as browsers expect: a preflight
(``OPTIONS``) gets 204 with the origin, ``POST`` and the gRPC-Web headers; every answer
names the caller's origin (never the Host) and exposes the gRPC status headers; its
Content-Type is the call's gRPC-Web type. ``GET /`` is the web page (same origin).
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import threading
from typing import Callable, Iterable, Optional, Set

from . import auth

GRPC_WEB_TYPES = ("application/grpc-web", "application/grpc-web+proto")
# What a browser page on an allowed origin may send (CORS preflight) and read (the status).
CORS_ALLOW_HEADERS = ("content-type", "x-grpc-web", "x-user-agent", "authorization", "grpc-timeout")
CORS_EXPOSE_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
PAGE_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js"}
PAGE_SCRIPT = "app.js"  # built by `make web` (web/ -> PAGE_DIR), not in the repository
# The folder the page is served from instead of PAGE_DIR: for tests only (a copy without app.js).
PAGE_DIR_ENV = "TFFREEZE_WEB_DIR"


def page_dir() -> str:
    return os.environ.get(PAGE_DIR_ENV) or PAGE_DIR


def missing_script_warning(folder: str) -> Optional[str]:
    """The start-up warning for a page folder without its built script (None when it has it)."""
    if os.path.isfile(os.path.join(folder, PAGE_SCRIPT)):
        return None
    return ("the web page's script %s is not built (%s has only the HTML): the page on the gRPC-Web port shows "
            "a notice and its buttons do nothing. Run `make web` in the tffreeze checkout (make setup and make "
            "demo do too); gRPC-Web calls work without it" % (PAGE_SCRIPT, folder))
_FRAME_OVERHEAD = 5  # a gRPC-Web frame: 1 flag byte + 4 length bytes


_current = threading.local()  # the HTTP connection the calling thread is answering


def remember_connection(sock) -> None:
    """Called by the HTTP handler for each connection (in the thread that answers it)."""
    _current.sock = sock


def client_gone() -> bool:
    """True when the HTTP client of the call this thread is answering has closed its
    connection (a gRPC-Web call cannot be cancelled any other way). A finished
    request body leaves nothing to read: a readable socket that yields no bytes is
    the client's FIN."""
    sock = getattr(_current, "sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _quote(text: str) -> str:
    """grpc-message is percent-encoded."""
    from urllib.parse import quote

    return quote(text, safe=" !#$&'()*+,/:;=?@[]^_`{|}~")


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_names(bound_host: str) -> Optional[Set[str]]:
    """The Host header names accepted for a server bound to ``bound_host``; None
    (any) for a wildcard bind, where the server cannot know its public names."""
    if _is_wildcard(bound_host):
        return None
    names = {bound_host.strip("[]").lower()}
    if auth.is_loopback(bound_host):
        names |= _LOOPBACK_NAMES
    return names


def _host_of(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.index("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class WebGuard:
    """WSGI middleware in front of the gRPC-Web application."""

    def __init__(self, app: Callable, bound_host: str, max_message_bytes: int,
                 allowed_origins: Iterable[str] = (), tokens=None, page_folder: Optional[str] = None,
                 tls: bool = False):
        self.app = app
        self.tls = tls  # the port speaks TLS: its page's origin is https:// (the WSGI server says http)
        self.page_folder = page_folder or page_dir()
        self.tokens = tokens  # an auth.TokenCheck when the server requires bearer tokens
        self.hosts = host_names(bound_host)
        self.max_body = max_message_bytes + _FRAME_OVERHEAD
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}

    def _refuse(self, start_response, status: str, reason: str):
        body = (reason + "\n").encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    def __call__(self, environ, start_response):
        host = _host_of(environ.get("HTTP_HOST", ""))
        if self.hosts is not None and host not in self.hosts:
            return self._refuse(start_response, "403 Forbidden",
                                "Host %r is not a name this server listens as" % host[:100])
        origin = environ.get("HTTP_ORIGIN")
        scheme = "https" if self.tls else environ.get("wsgi.url_scheme", "http")
        # The page this port serves, calling it: browsers send Origin on every POST. Trusted when
        # the Host is one of the server's names, or TLS (a rebound name fails the certificate) or
        # tokens guard the port; a wildcard plaintext bind (--insecure) lists its origin instead.
        same = origin is not None and origin.rstrip("/").lower() == "%s://%s" % (scheme, environ.get("HTTP_HOST", "")
                                                                                  .lower())
        if same and (self.hosts is not None or scheme == "https" or self.tokens is not None):
            origin = None
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            return self._refuse(start_response, "403 Forbidden",
                                "Origin %r is not allowed (tffreeze serve --web-allow-origin)" % origin[:100])
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and origin is None:
            return self._page(environ, start_response)
        if environ.get("REQUEST_METHOD") == "OPTIONS" and origin is not None:
            return self._preflight(environ, origin, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self._refuse(start_response, "405 Method Not Allowed", "gRPC-Web calls are POST requests")
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype not in GRPC_WEB_TYPES:
            return self._refuse(start_response, "415 Unsupported Media Type",
                                "only %s bodies are accepted" % " or ".join(GRPC_WEB_TYPES))
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self._refuse(start_response, "411 Length Required", "a gRPC-Web call needs a Content-Length")
        if length < 0 or length > self.max_body:
            return self._refuse(start_response, "413 Payload Too Large",
                                "the body is %d bytes; a call carries at most %d" % (length, self.max_body))
        if self.tokens is not None and not (environ.get("PATH_INFO", "") in auth.OPEN_METHODS or
                                            self.tokens.accepts(environ.get("HTTP_AUTHORIZATION"))):
            # a gRPC-Web "trailers-only" answer: the status travels in the headers
            start_response("200 OK", [("Content-Type", ctype), ("Content-Length", "0"), ("grpc-status", "16"),
                                      ("grpc-message", _quote(auth.refusal(environ.get("HTTP_AUTHORIZATION"))))]
                           + _cors(origin))
            return [b""]
        # The answer's type is the call's (a browser's fetch sends Accept: */*, which the
        # gRPC-Web adapter would echo), and CORS names the caller's origin, nothing else.
        environ["HTTP_ACCEPT"] = ctype

        def start(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept + _cors(origin), exc_info)

        return self.app(environ, start)

    def _page(self, environ, start_response):
        """The web page (web/index.html and the bundle `make web` builds): GET only, same
        origin (its calls go to this port), no framing, nothing loaded from elsewhere."""
        path = environ.get("PATH_INFO", "")
        name = PAGE_FILES.get(path)
        if name is None:
            return self._refuse(start_response, "404 Not Found", "no page here: / is the tffreeze page; gRPC-Web "
                                                                 "calls are POST requests")
        try:
            with open(os.path.join(self.page_folder, name), "rb") as fh:
                body = fh.read()
        except FileNotFoundError:
            return self._refuse(start_response, "404 Not Found", "the page's script is not built here: run `make web` "
                                                                 "in the tffreeze checkout (make setup and make demo "
                                                                 "do too)")
        start_response("200 OK", [
            ("Content-Type", "text/html; charset=utf-8" if name.endswith(".html") else "text/javascript; charset=utf-8"),
            ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                        "connect-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'")])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _preflight(self, environ, origin: str, start_response):
        """A browser's CORS preflight from an allowed origin (others were refused above)."""
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "")
        if method and method.upper() != "POST":
            return self._refuse(start_response, "405 Method Not Allowed", "gRPC-Web calls are POST requests")
        asked = {h.strip().lower() for h in environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",")
                 if h.strip()}
        extra = sorted(asked - set(CORS_ALLOW_HEADERS))
        if extra:
            return self._refuse(start_response, "403 Forbidden", "header(s) %s are not accepted here"
                                % ", ".join(extra)[:200])
        start_response("204 No Content", [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                                          ("Access-Control-Allow-Methods", "POST"),
                                          ("Access-Control-Allow-Headers", ", ".join(CORS_ALLOW_HEADERS)),
                                          ("Access-Control-Max-Age", "600"), ("Content-Length", "0")])
        return [b""]


def _cors(origin: Optional[str]):
    """Response headers for a call from an allowed browser origin (none without one)."""
    if origin is None:
        return []
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", ", ".join(CORS_EXPOSE_HEADERS))]
