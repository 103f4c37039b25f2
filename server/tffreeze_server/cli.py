"""``tffreeze-server`` (and ``tffreeze serve``, which delegates here): the
server's own command line. Exit codes: 0 after a clean shutdown, 1 when it
cannot start (one line on stderr), 2 usage error."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import List, Optional

from tffreeze_api import localserver

from . import __version__
from .settings import (DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_MAX_CALL_SECONDS, DEFAULT_MAX_STORE_BYTES, DEFAULT_PARTIAL_TTL_SECONDS, DEFAULT_PORT, DEFAULT_SANDBOX,
                       DEFAULT_WORKERS, DEFAULT_WORKER_MAX_TASKS, LOCAL_IDLE_SECONDS, LOCAL_MAX_STORE_BYTES, LOCAL_WORKERS, DEFAULT_MAX_FUNCTION_DEPTH, DEFAULT_MAX_GRAPH_FILE_BYTES,
                       DEFAULT_MAX_GRAPH_NODES, DEFAULT_TASK_MEMORY_BYTES, DEFAULT_VERIFY_SECONDS, DEFAULT_DRAIN_SECONDS,
                       DEFAULT_LOAD_SECONDS, DEFAULT_EXPORT_SECONDS, LOCAL_STORE_ENV,
                       LOCAL_TASK_MEMORY_ENV, ServerSettings, local_task_memory_bytes, parse_bytes)

DESCRIPTION = ("Run the tffreeze gRPC server (health and reflection included). Prints 'listening on HOST:PORT' "
               "once it accepts calls; SIGTERM/SIGINT drain in-flight calls (--drain-seconds) and stop it.")
EPILOG = """\
examples:
  tffreeze serve                                   # 127.0.0.1:50051, data in ./.tffreeze-data
  tffreeze serve --port 0                          # a free port, printed on start
  tffreeze serve --port 50051 --web-port 8080      # also gRPC-Web, for the C# client on Mono
  tffreeze serve --data-dir /var/lib/tffreeze --workers 2 --max-store-bytes 50000000000
"""


def _gib(n: int) -> str:
    return "%.1f GiB" % (n / float(1 << 30))


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size_or_zero(text: str) -> int:
    try:
        return parse_bytes(text, allow_zero=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    """A whole number of at least 1 (workers, tasks, nodes, depth)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%d: give 1 or more" % value)
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("%d: a port is 0 (a free one) to 65535" % value)
    return value


def _seconds_from(zero: bool):
    """A time in seconds: more than 0, or (``zero``) 0 or more; never infinite or NaN."""
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
        if not (0 <= value if zero else 0 < value) or value == float("inf"):
            raise argparse.ArgumentTypeError("%s: give a number of seconds%s" % (text, ", 0 or more" if zero else " above 0"))
        return value
    return seconds


_seconds, _seconds_or_zero = _seconds_from(False), _seconds_from(True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--data-dir", default=None, metavar="D",
                   help="where uploads and frozen graphs are kept (default: %s; with --local: DIR/data)" % DEFAULT_DATA_DIR)
    p.add_argument("--workers", type=_count, default=None,
                   help="TensorFlow worker processes, ~540 MiB each idle: freezes run in parallel up to this "
                        "many (default here: %d = what this machine holds: one per core, 1.5 GiB of available "
                        "memory each; with --local: %d)" % (DEFAULT_WORKERS, LOCAL_WORKERS))
    p.add_argument("--worker-max-tasks", type=_count, default=DEFAULT_WORKER_MAX_TASKS, metavar="N",
                   help="replace a worker after N tasks, bounding memory growth; the replacement imports "
                        "TensorFlow while the old one keeps serving (default: %(default)s)")
    p.add_argument("--max-store-bytes", type=_size, default=None, metavar="BYTES",
                   help="blob store cap in bytes (or with K, M, G: 8G); least recently used blobs are evicted "
                        "(default: %d GiB; with --local: $%s, else %d GiB)"
                        % (DEFAULT_MAX_STORE_BYTES >> 30, LOCAL_STORE_ENV, LOCAL_MAX_STORE_BYTES >> 30))
    p.add_argument("--partial-upload-ttl", type=_seconds, default=DEFAULT_PARTIAL_TTL_SECONDS, metavar="SECONDS",
                   help="discard a resumable upload (WriteBlobChunk) idle this long; until then its declared size "
                        "counts against --max-store-bytes (default: %(default)s)")
    p.add_argument("--max-call-seconds", type=_seconds, default=DEFAULT_MAX_CALL_SECONDS, metavar="SECONDS",
                   help="longest a freeze or inspect may run on a worker, whatever deadline the call sets (gRPC-Web "
                        "calls may set none); over it the call is DEADLINE_EXCEEDED and the worker replaced "
                        "(default: %(default)s)")
    p.add_argument("--no-result-cache", dest="result_cache", action="store_false",
                   help="run every freeze on a worker, even one whose uploaded bytes, options and engine match an "
                        "earlier freeze (by default answered from DATA/results without a worker)")
    p.add_argument("--web-port", type=_port, default=None, metavar="W",
                   help="also serve gRPC-Web (HTTP/1.1) on port W, for clients without HTTP/2 such as "
                        "tffreeze-cs on Mono; 0 picks a free port")
    p.add_argument("--web-allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin (e.g. https://tools.example.com) whose pages may call the gRPC-Web "
                        "port (CORS); repeatable. By default only the page this port serves at / (same origin; "
                        "on a plaintext 0.0.0.0 bind without tokens, list its own origin here too); other "
                        "origins are refused. The port answers only application/grpc-web(+proto) POSTs whose "
                        "Host is a name the server is bound as (any name when bound to 0.0.0.0/::)")
    p.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default=DEFAULT_SANDBOX,
                   help="run TensorFlow workers in a bubblewrap sandbox (no network, uploads read-only, one "
                        "writable output folder, nothing else of the file system). auto (default): when bwrap "
                        "works here; bwrap: refuse to start without it; none: no sandbox. Without a sandbox, "
                        "TF2 SavedModels (loading runs their functions) and verify are refused")
    p.add_argument("--task-memory-bytes", type=_size_or_zero, default=None, metavar="BYTES",
                   help="memory one task (a freeze, an inspect) may allocate beyond the warm worker, in bytes or "
                        "with K, M, G (8G), enforced by the kernel (RLIMIT_DATA in the task's sandbox); TensorFlow "
                        "constants an uploaded graph would build at import are refused above a quarter of it. A "
                        "task over it is RESOURCE_EXHAUSTED (ERROR_REASON_MEMORY_LIMIT) naming this flag; the server "
                        "keeps serving. --verify needs about 16x the checkpoint's size, --format onnx up to 64x. "
                        "0: no limit (default: %d GiB; with --local: $%s, else three quarters of this machine's "
                        "memory, at least %d GiB: here %s)" % (DEFAULT_TASK_MEMORY_BYTES >> 30, LOCAL_TASK_MEMORY_ENV,
                                                              DEFAULT_TASK_MEMORY_BYTES >> 30,
                                                              _gib(local_task_memory_bytes())))
    p.add_argument("--verify-seconds", type=_seconds, default=DEFAULT_VERIFY_SECONDS, metavar="S",
                   help="longest the verify stage of a freeze may run the graphs; over it the task is stopped and "
                        "the call is DEADLINE_EXCEEDED (default: %(default)s)")
    p.add_argument("--load-seconds", type=_seconds, default=DEFAULT_LOAD_SECONDS, metavar="S",
                   help="longest loading a TF2 SavedModel may take: TensorFlow runs the upload's restore functions "
                        "and resource initialisers, then freezes its signature's variables; over it the task is "
                        "stopped and the call is DEADLINE_EXCEEDED (default: %(default)s)")
    p.add_argument("--export-seconds", type=_seconds, default=DEFAULT_EXPORT_SECONDS, metavar="S",
                   help="longest the format option's export may take: the frozen graph run in TensorFlow, converted "
                        "to ONNX/TFLite and run in that runtime to compare; over it the task is stopped and the "
                        "call is DEADLINE_EXCEEDED (default: %(default)s)")
    p.add_argument("--drain-seconds", type=_seconds_or_zero, default=DEFAULT_DRAIN_SECONDS, metavar="S",
                   help="on SIGTERM/SIGINT, new commands are refused at once (SERVER_STOPPING) and the commands under way "
                        "(their calls in flight and the calls they make next) have this long to finish; then they "
                        "are stopped and told so (SERVER_STOPPING); a second signal stops at once (default: "
                        "%(default)s)")
    p.add_argument("--max-graph-file-bytes", type=_size, default=DEFAULT_MAX_GRAPH_FILE_BYTES, metavar="BYTES",
                   help="largest uploaded graph file (.meta, GraphDef, saved_model.pb) the server parses, in bytes or "
                        "with K, M, G; larger is RESOURCE_EXHAUSTED before parsing (default: %(default)s = 1 GiB)")
    p.add_argument("--max-graph-nodes", type=_count, default=DEFAULT_MAX_GRAPH_NODES, metavar="N",
                   help="most nodes an uploaded graph may have, library functions included; more is "
                        "RESOURCE_EXHAUSTED before any analysis (default: %(default)s)")
    p.add_argument("--max-function-depth", type=_count, default=DEFAULT_MAX_FUNCTION_DEPTH, metavar="N",
                   help="deepest nesting of functions calling functions (loop bodies, branches, calls); deeper "
                        "is RESOURCE_EXHAUSTED, a recursive function INVALID_ARGUMENT (default: %(default)s)")
    p.add_argument("--idle-exit", type=_seconds, default=None, metavar="SECONDS",
                   help="stop (cleanly, as on SIGTERM) after SECONDS without a call (default: never; with --local: "
                        "%g)" % LOCAL_IDLE_SECONDS)
    p.add_argument("--local", nargs="?", const="", default=None, metavar="DIR",
                   help="be this user's local server, the one `tffreeze freeze` starts on demand when no --server "
                        "is given: gRPC on a Unix socket in DIR (default: ~/.cache/tffreeze/local, or "
                        "$TFFREEZE_CACHE_DIR/local), a folder only this user can open; every call needs the token "
                        "kept there; gRPC-Web on a free loopback port; data in DIR/data (%d GiB at most, or "
                        "$TFFREEZE_LOCAL_STORE_BYTES, or --max-store-bytes), %d "
                        "worker(s), each task up to three quarters of this machine's memory ($%s, or "
                        "--task-memory-bytes); where it listens is written to DIR/server.info. Usually started "
                        "for you: see "
                        "`tffreeze local-server --help`" % (LOCAL_MAX_STORE_BYTES >> 30, LOCAL_WORKERS,
                                                             LOCAL_TASK_MEMORY_ENV))
    p.add_argument("--health-socket", metavar="PATH", default=None,
                   help="also answer health checks, plaintext and without a token or client certificate, on this "
                        "Unix socket: for probes on the same machine or in the same container, whatever TLS the "
                        "port uses (`python -m tffreeze_server.healthcheck unix:PATH`). It answers only "
                        "grpc.health.v1 (Check, Watch) and reflection, never the FreezeService; the socket file "
                        "is mode 0600 (this user only), or 0660 with --health-socket-group")
    p.add_argument("--health-socket-group", metavar="GROUP", default=None,
                   help="make the --health-socket mode 0660 and owned by GROUP (a name or a gid this user belongs "
                        "to), for a probe running as another user of that group; an unknown group stops the start")
    g = p.add_argument_group("several replicas (README: Running more than one server)")
    g.add_argument("--store", metavar="s3://BUCKET/PREFIX",
                   help="keep blobs, resumable uploads and cached results in this S3 bucket, shared by every "
                        "replica given the same URL; --data-dir is then this replica's cache (--max-store-bytes "
                        "bounds it). Credentials and region as boto3 finds them (AWS_* variables, ~/.aws, roles)")
    g.add_argument("--s3-endpoint", metavar="URL",
                   help="an S3-compatible endpoint instead of AWS (MinIO, Ceph RGW, ...), e.g. http://minio:9000")
    g.add_argument("--metrics-port", type=_port, default=None, metavar="M",
                   help="serve Prometheus metrics at http://127.0.0.1:M/metrics (0 picks a free port); with TLS "
                        "and tokens, over https and only with a token, like the other ports")
    g.add_argument("--metrics-host", default=None, metavar="ADDR",
                   help="listen for metrics on ADDR instead of loopback (e.g. 0.0.0.0 for a Prometheus scraper on "
                        "another host); a non-loopback address needs TLS and a token, unless --insecure")
    g = p.add_argument_group("TLS and authentication (required for a non-loopback --host unless --insecure)")
    g.add_argument("--tls-cert", metavar="PEM", help="certificate chain (PEM) for TLS on both ports")
    g.add_argument("--tls-key", metavar="PEM", help="private key (PEM) of --tls-cert")
    g.add_argument("--tls-client-ca", metavar="PEM",
                   help="require client certificates signed by this CA (mutual TLS)")
    g.add_argument("--auth-token-file", metavar="FILE",
                   help="bearer tokens, one per line (at least 16 characters; e.g. `openssl rand -hex 32`). Every "
                        "call must send `authorization: Bearer TOKEN`, else it is UNAUTHENTICATED; the server keeps "
                        "only the tokens' SHA-256")
    g.add_argument("--insecure", action="store_true",
                   help="allow listening on a non-loopback address without TLS and a token (a trusted network only)")
    # Kept so existing start scripts still run: graphs holding ops outside the positive
    # list are refused before import now, with or without verify.
    p.add_argument("--allow-unsafe-verify", action="store_true", help=argparse.SUPPRESS)


def build_parser(prog: str = "tffreeze-server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="tffreeze-server %s" % __version__)
    add_arguments(p)
    return p


def settings_from(args) -> ServerSettings:
    local = {}
    if args.local is not None:
        folder = os.path.abspath(args.local) if args.local else localserver.local_dir()
        local = dict(local_dir=folder, socket=localserver.socket_path(folder, os.getpid()),
                     auth_token_file=os.path.join(folder, localserver.TOKEN),
                     web_port=0 if args.web_port is None else args.web_port,
                     idle_exit=LOCAL_IDLE_SECONDS if args.idle_exit is None else args.idle_exit)
        store = os.environ.get(LOCAL_STORE_ENV, "").strip()
        try:
            store_bytes = parse_bytes(store) if store else LOCAL_MAX_STORE_BYTES
        except ValueError as exc:
            raise OSError("$%s: %s" % (LOCAL_STORE_ENV, exc)) from None
        memory = os.environ.get(LOCAL_TASK_MEMORY_ENV, "").strip()
        try:
            memory_bytes = parse_bytes(memory, allow_zero=True) if memory else local_task_memory_bytes()
        except ValueError as exc:
            raise OSError("$%s: %s" % (LOCAL_TASK_MEMORY_ENV, exc)) from None
        defaults = dict(data_dir=os.path.join(folder, localserver.DATA), workers=LOCAL_WORKERS,
                        max_store_bytes=store_bytes, task_memory_bytes=memory_bytes)
    else:
        defaults = dict(data_dir=DEFAULT_DATA_DIR, workers=DEFAULT_WORKERS, max_store_bytes=DEFAULT_MAX_STORE_BYTES,
                        task_memory_bytes=DEFAULT_TASK_MEMORY_BYTES)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    settings = ServerSettings(host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers,
                              max_store_bytes=args.max_store_bytes, worker_max_tasks=args.worker_max_tasks,
                              partial_upload_ttl=args.partial_upload_ttl, max_call_seconds=args.max_call_seconds,
                              result_cache=args.result_cache, web_port=args.web_port,
                              web_allowed_origins=tuple(args.web_allow_origin), sandbox=args.sandbox,
                              max_graph_file_bytes=args.max_graph_file_bytes, max_graph_nodes=args.max_graph_nodes,
                              max_function_depth=args.max_function_depth, tls_cert=args.tls_cert,
                              tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                              auth_token_file=args.auth_token_file, insecure=args.insecure, store=args.store,
                              s3_endpoint=args.s3_endpoint, metrics_port=args.metrics_port,
                              metrics_host=args.metrics_host, task_memory_bytes=args.task_memory_bytes,
                              verify_seconds=args.verify_seconds, drain_seconds=args.drain_seconds,
                              load_seconds=args.load_seconds, export_seconds=args.export_seconds,
                              idle_exit=args.idle_exit, health_socket=args.health_socket,
                              health_socket_group=args.health_socket_group)
    return dataclasses.replace(settings, **local) if local else settings


def main(argv: Optional[List[str]] = None, prog: str = "tffreeze-server") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    if args.allow_unsafe_verify:
        print("tffreeze-server: --allow-unsafe-verify has no effect any more: graphs holding ops outside the "
              "server's positive list are refused before import, with or without verify", file=sys.stderr)
    from .app import serve

    try:
        settings = settings_from(args)
    except OSError as exc:  # --local: a folder that is not this user's alone
        print("%s: %s" % (prog, exc), file=sys.stderr)
        return 1
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
