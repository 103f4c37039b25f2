"""Prometheus metrics (``tffreeze serve --metrics-port M`` serves them at /metrics).

The names (README "Running more than one server" lists them for dashboards):

    tffreeze_calls_total{method,code}            calls by RPC method and final status
    tffreeze_freeze_seconds                      whole Freeze calls that ran the engine
    tffreeze_freeze_stage_seconds{stage}         time in each stage of those freezes
    tffreeze_uploaded_bytes_total                blob bytes received (UploadBlob, WriteBlobChunk)
    tffreeze_downloaded_bytes_total              blob bytes sent (DownloadBlob)
    tffreeze_result_cache_total{outcome}         result cache hit / miss
    tffreeze_store_bytes{tier}                   bytes of blobs: local (this replica's disk) and shared (the bucket)
    tffreeze_worker_restarts_total{cause}        workers replaced: recycled, crashed
    tffreeze_queue_depth                         tasks waiting for a worker
    tffreeze_workers                             live TensorFlow workers

Counting is always on (it costs a lock and an add); only the HTTP endpoint is optional.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS = Counter("tffreeze_calls", "Calls by RPC method and final status", ["method", "code"], registry=REGISTRY)
FREEZE_SECONDS = Histogram("tffreeze_freeze_seconds", "Freeze calls that ran the engine, start to result",
                           buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900), registry=REGISTRY)
STAGE_SECONDS = Histogram("tffreeze_freeze_stage_seconds", "Time spent in each stage of a freeze", ["stage"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=REGISTRY)
UPLOADED = Counter("tffreeze_uploaded_bytes", "Blob bytes received", registry=REGISTRY)
DOWNLOADED = Counter("tffreeze_downloaded_bytes", "Blob bytes sent", registry=REGISTRY)
RESULT_CACHE = Counter("tffreeze_result_cache", "Result cache lookups", ["outcome"], registry=REGISTRY)
STORE_BYTES = Gauge("tffreeze_store_bytes", "Bytes of stored blobs", ["tier"], registry=REGISTRY)
WORKER_RESTARTS = Counter("tffreeze_worker_restarts", "TensorFlow workers replaced", ["cause"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("tffreeze_queue_depth", "Tasks waiting for a TensorFlow worker", registry=REGISTRY)
WORKERS = Gauge("tffreeze_workers", "Live TensorFlow workers", registry=REGISTRY)


class StageTimer:
    """Time between a freeze's progress stages: each stage lasts until the next begins."""

    def __init__(self):
        self.start = self.since = time.monotonic()
        self.stage: Optional[str] = None

    def enter(self, stage: str) -> None:
        now = time.monotonic()
        if self.stage is not None and stage != self.stage:
            STAGE_SECONDS.labels(self.stage).observe(now - self.since)
        if stage != self.stage:
            self.stage, self.since = stage, now

    def done(self) -> None:
        self.enter("done")
        FREEZE_SECONDS.observe(time.monotonic() - self.start)


def _guarded(app, tokens):
    """The metrics app behind the server's bearer tokens (when it has any)."""
    def guarded(environ, start_response):
        if tokens is not None and not tokens.accepts(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Bearer realm="tffreeze"')])
            return [b"metrics need an authorization: Bearer TOKEN header (tffreeze serve --auth-token-file)\n"]
        return app(environ, start_response)
    return guarded


def serve(port: int, host: str, store_bytes: Callable[[], dict], workers: Callable[[], int],
          refresh_seconds: float = 30.0, ssl_context=None, tokens=None):
    """Serve /metrics on host:port (0: a free port), over TLS and behind the bearer
    tokens when given (the server's own); store sizes are refreshed in the background
    (listing a bucket is not free). Returns (http server, bound port)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
            pass

    httpd = make_server(host, port, _guarded(make_wsgi_app(REGISTRY), tokens), server_class=Server,
                        handler_class=Quiet)
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, name="tffreeze-metrics-http", daemon=True).start()

    def refresh():
        while True:
            try:
                for tier, n in store_bytes().items():
                    STORE_BYTES.labels(tier).set(n)
                WORKERS.set(workers())
            except Exception:  # noqa: BLE001 - a failed refresh keeps the last values
                pass
            time.sleep(refresh_seconds)

    threading.Thread(target=refresh, name="tffreeze-metrics", daemon=True).start()
    return httpd, httpd.server_port


__all__ = ["REGISTRY", "CALLS", "FREEZE_SECONDS", "STAGE_SECONDS", "UPLOADED", "DOWNLOADED", "RESULT_CACHE",
           "STORE_BYTES", "WORKER_RESTARTS", "QUEUE_DEPTH", "WORKERS", "StageTimer", "serve"]
