"""Server assembly: ``create_server`` for tests and embedding, ``serve`` for the CLI."""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from concurrent import futures
from socketserver import ThreadingMixIn
from typing import Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tffreeze_api.v1 import service_pb2, service_pb2_grpc

from . import auth, localmode, metrics, sandbox
from .blobstore import BlobStore
from .core.spec import ServerLimits
from .servicer import FreezeServicer
from .status import ACTIVITY, HALT_SECONDS
from .settings import DEFAULT_DRAIN_SECONDS, MAX_MESSAGE_BYTES, ServerSettings
from . import webguard
from .webguard import WebGuard
from .workers import WorkerPool

log = logging.getLogger("tffreeze.server")
SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["FreezeService"].full_name
# The health service name a liveness probe asks: SERVING while the process works, whatever the
# shared store does ("" and the service's own name turn NOT_SERVING while the store is away,
# which a readiness probe should see; restarting the pod would not bring the store back).
LIVENESS = "liveness"
HEALTH_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_THREADS = 8  # the health socket's calls at once (a Watch holds one); more are RESOURCE_EXHAUSTED
UNIX_PATH_BYTES = 107  # sockaddr_un's sun_path, less its terminating NUL


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        log.debug("grpc-web %s", format % args)

    def handle(self):
        webguard.remember_connection(self.connection)  # so a call can see its client go
        try:
            super().handle()
        finally:
            webguard.remember_connection(None)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _TLSWSGIServer(_ThreadingWSGIServer):
    """TLS per connection, the handshake in the connection's own thread (a client
    that never finishes its handshake holds only its thread, not the accept loop)."""

    ssl_context = None

    def get_request(self):
        sock, addr = super().get_request()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            request.do_handshake()
        except (OSError, ValueError):
            return
        request.settimeout(None)
        super().finish_request(request, client_address)


def start_web(servicer, health_servicer, host: str, port: int, allowed_origins=(), ssl_context=None, tokens=None):
    """Serve the same servicers over gRPC-Web (HTTP/1.1, unary and server
    streaming) for clients without HTTP/2, such as Mono's, behind the checks of
    ``webguard`` (content type, Origin, Host, body size). Returns the HTTP server."""
    from sonora.wsgi import grpcWSGI

    app = grpcWSGI(None)
    service_pb2_grpc.add_FreezeServiceServicer_to_server(servicer, app)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, app)
    folder = webguard.page_dir()
    missing = webguard.missing_script_warning(folder)
    if missing:
        log.warning(missing)
    guarded = WebGuard(app, host, MAX_MESSAGE_BYTES, allowed_origins, tokens, folder, tls=ssl_context is not None)
    server_class = _ThreadingWSGIServer
    if ssl_context is not None:
        server_class = type("_TLSServer", (_TLSWSGIServer,), {"ssl_context": ssl_context})
    httpd = make_server(host, port, guarded, server_class=server_class, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="tffreeze-grpc-web", daemon=True).start()
    return httpd


class Server:
    """A running tffreeze server: gRPC server (and gRPC-Web), blob store, worker pool."""

    def __init__(self, grpc_server, port: int, pool: WorkerPool, health_servicer, store: BlobStore, web=None,
                 health_socket: "Optional[HealthSocket]" = None, servicer: "Optional[FreezeServicer]" = None):
        self.grpc_server = grpc_server
        self.servicer = servicer
        self.health_socket = health_socket
        self.port = port
        self.pool = pool
        self.health = health_servicer
        self.store = store
        self.web = web
        self.stopping = threading.Event()
        self.cut = threading.Event()  # a second signal: stop now, without waiting for the commands under way
        self.metrics_http = None
        self.metrics_port: Optional[int] = None

    @property
    def web_port(self) -> Optional[int]:
        return self.web.server_port if self.web is not None else None

    def stop(self, grace: float = DEFAULT_DRAIN_SECONDS) -> bool:
        """Stop: health says NOT_SERVING and a new command is refused (SERVER_STOPPING) at
        once; the commands under way have ``grace`` seconds to finish, on both ports: their
        calls in flight, and the calls they make next (the freeze after its upload, the
        download after its freeze). True when they all finished in time."""
        deadline = time.monotonic() + max(0.0, grace)
        self.stopping.set()
        if self.servicer is not None:
            self.servicer.stopping.set()
        self.health.enter_graceful_shutdown()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
        settled = ACTIVITY.settle(deadline, self.cut) if grace > 0 else False
        if not settled:  # the calls still in flight are told the server stopped, then they end
            ACTIVITY.halt("a second SIGTERM or SIGINT stopped it at once" if self.cut.is_set()
                          else "its --drain-seconds of %g s ran out" % grace)
            ACTIVITY.quiet(time.monotonic() + HALT_SECONDS)
        if self.web is not None:
            self.web.shutdown()
            self.web.server_close()
        self.grpc_server.stop(1.0).wait()  # (every call has ended: the last statuses are sent)
        if self.health_socket is not None:  # it answered NOT_SERVING while the calls drained
            self.health_socket.stop()
        self.pool.close()
        return settled

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _group_id(group: str) -> int:
    """The gid of ``group``: a number as it is (a container's group may have no name), a name
    looked up; OSError naming it when there is no such group."""
    import grp

    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError("--health-socket-group %r: no such group on this machine (see getent group)" % group) from None


class HealthSocket:
    """The ``--health-socket``: a second, small gRPC server on a Unix socket that answers
    grpc.health.v1 (Check, Watch) and reflection listing only it, from the main server's own
    HealthServicer (so it tells what the port tells). The FreezeService is not there: the
    socket is plaintext and needs no token or client certificate, so it must not be a way
    around them. The socket file is 0600 (this user), or 0660 for the group ``gid``; it is bound in a
    private (0700) folder, given its mode there and only then moved to ``path``, so it is
    never reachable with a wider mode."""

    def __init__(self, health_servicer, path: str, gid: Optional[int] = None):
        self.path = os.path.abspath(path)
        if len(os.fsencode(self.path)) > UNIX_PATH_BYTES:
            raise OSError("--health-socket %s: a Unix socket's path has at most %d bytes; choose a shorter one"
                          % (self.path, UNIX_PATH_BYTES))
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=HEALTH_THREADS,
                                                             thread_name_prefix="tffreeze-health"),
                                  options=[("grpc.max_receive_message_length", 64 << 10), ("grpc.so_reuseport", 0)],
                                  maximum_concurrent_rpcs=HEALTH_THREADS)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        reflection.enable_server_reflection((HEALTH_NAME, reflection.SERVICE_NAME), self.server)
        self._inode = self._bind(gid)

    def _bind(self, gid: Optional[int]) -> int:
        folder = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise OSError("--health-socket %s is a folder; name a file in it" % self.path)
        try:
            private = tempfile.mkdtemp(prefix=".h", dir=folder)  # 0700: no one else can reach what is inside
        except OSError as exc:
            raise OSError("cannot create the --health-socket %s: %s" % (self.path, exc.strerror or exc)) from None
        inner = os.path.join(private, "s")
        try:
            try:
                bound = self.server.add_insecure_port("unix:" + inner)
            except RuntimeError:
                bound = 0
            if bound == 0 or not os.path.exists(inner):
                raise OSError("cannot listen on unix:%s (--health-socket)" % self.path)
            try:
                if gid is not None:
                    os.chown(inner, -1, gid)  # only to a group this user is in (else EPERM)
                os.chmod(inner, 0o660 if gid is not None else 0o600)
            except OSError as exc:
                raise OSError("--health-socket-group: cannot give %s to group %d: %s (this user must be in the "
                              "group)" % (self.path, gid, exc.strerror or exc)) from None
            try:
                os.replace(inner, self.path)  # atomic; an old socket of an earlier run is replaced
            except OSError as exc:
                raise OSError("cannot create the --health-socket %s: %s" % (self.path, exc.strerror or exc)) from None
            return os.lstat(self.path).st_ino
        except BaseException:
            self.server.stop(None)
            raise
        finally:
            if os.path.lexists(inner):
                os.unlink(inner)
            os.rmdir(private)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(1).wait()  # a Watch never ends by itself: a second, then it is cancelled
        try:  # the socket file, unless another server has put its own there since
            st = os.lstat(self.path)
            if st.st_ino == self._inode and stat.S_ISSOCK(st.st_mode):
                os.unlink(self.path)
        except OSError:
            pass


def _security(settings: ServerSettings):
    """((gRPC credentials, SSL context) or None, TokenCheck or None); refuses an
    exposed address without both unless ``insecure``. Errors are OSError (startup)."""
    try:
        tls = None
        if settings.tls_cert or settings.tls_key:
            if not (settings.tls_cert and settings.tls_key):
                raise auth.AuthConfigError("--tls-cert and --tls-key go together")
            tls = (auth.grpc_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca),
                   auth.ssl_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca))
        elif settings.tls_client_ca:
            raise auth.AuthConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        tokens = auth.TokenCheck(auth.load_tokens(settings.auth_token_file)) if settings.auth_token_file else None
    except auth.AuthConfigError as exc:
        raise OSError(str(exc)) from None
    exposed = [h for h in (settings.host, settings.metrics_host if settings.metrics_port is not None else None)
               if h and not auth.is_loopback(h)]
    if exposed and not settings.insecure and (tls is None or tokens is None):
        missing = " and ".join(m for m, ok in (("TLS (--tls-cert/--tls-key)", tls is not None),
                                               ("a token (--auth-token-file)", tokens is not None)) if not ok)
        raise OSError("refusing to listen on %s without %s: anyone who can reach it could upload graphs and read "
                      "frozen models (or read the server's metrics). Add them, or pass --insecure on a trusted "
                      "network." % (exposed[0], missing))
    return tls, tokens


def create_server(settings: ServerSettings = ServerSettings()) -> Server:
    """Build and start a server; ``port=0`` picks a free port (see ``Server.port``).
    ``web_port``: also serve gRPC-Web there (0 = a free port, see ``Server.web_port``)."""
    host, port, web_port = settings.host, settings.port, settings.web_port
    tls, tokens = _security(settings)
    health_gid = None
    if settings.health_socket_group is not None:  # before anything starts
        if not settings.health_socket:
            raise OSError("--health-socket-group needs --health-socket")
        health_gid = _group_id(settings.health_socket_group)
    shared_results = None
    if settings.store:
        from . import s3store
        try:
            store = s3store.create(settings.store, settings.data_dir, settings.s3_endpoint,
                                   max_bytes=settings.max_store_bytes, partial_ttl=settings.partial_upload_ttl)
        except ValueError as exc:
            raise OSError(str(exc)) from None
        shared_results = s3store.SharedResults(store.remote)
    else:
        store = BlobStore(settings.data_dir, max_bytes=settings.max_store_bytes,
                          partial_ttl=settings.partial_upload_ttl, local=settings.local_dir is not None)
        freed = store.fit_cap()
        if freed:
            log.info("the store held more than --max-store-bytes %d: evicted the least recently used blobs, %d bytes",
                     settings.max_store_bytes, freed)
    try:
        box = sandbox.create(settings.sandbox, readable=[], writable=[store.tasks_dir])
    except sandbox.SandboxUnavailable as exc:
        raise OSError("--sandbox bwrap: %s. %s, or choose --sandbox auto/none" % (
            exc, "Install bubblewrap (apt-get install bubblewrap)" if sandbox.find_bwrap() is None else
            "Allow user namespaces to ordinary users (sysctl user.max_user_namespaces > 0)")) from None
    if box is None:
        log.warning("TensorFlow workers run without a sandbox (%s): TF2 SavedModels, verify and formats are "
                    "refused. %s", sandbox.last_problem,
                    "Install bubblewrap (apt-get install bubblewrap) to allow them." if sandbox.find_bwrap() is None
                    else "" if settings.sandbox == "none" else
                    "bubblewrap is installed but cannot work for this user here: user namespaces must be allowed "
                    "to ordinary users (sysctl user.max_user_namespaces > 0; kernel.unprivileged_userns_clone=1 "
                    "where it exists; on Ubuntu 24.04+ an AppArmor profile allowing them).")
    pool = WorkerPool(size=settings.workers, max_tasks=settings.worker_max_tasks, sandbox=box,
                      tasks_root=store.tasks_dir, task_memory=settings.task_memory_bytes,
                      local=settings.local_dir is not None).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.rpc_threads,
                                                    thread_name_prefix="tffreeze-rpc"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                  # a second server on a busy port must fail, not share it
                                  ("grpc.so_reuseport", 0)],
                         interceptors=[auth.TokenInterceptor(tokens)] if tokens is not None else None)
    servicer = FreezeServicer(store, pool, max_call_seconds=settings.max_call_seconds,
                              result_cache=settings.result_cache, shared_results=shared_results,
                              verify_seconds=settings.verify_seconds, load_seconds=settings.load_seconds,
                              export_seconds=settings.export_seconds, limits=ServerLimits(
        sandboxed=box is not None, max_graph_file_bytes=settings.max_graph_file_bytes,
        max_graph_nodes=settings.max_graph_nodes, max_function_depth=settings.max_function_depth,
        max_import_constant_bytes=settings.task_memory_bytes // 4))
    service_pb2_grpc.add_FreezeServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, HEALTH_NAME, reflection.SERVICE_NAME), server)
    address = "unix:" + settings.socket if settings.socket else "%s:%d" % (host, port)
    try:
        bound = (server.add_secure_port(address, tls[0]) if tls is not None else server.add_insecure_port(address))
    except RuntimeError:
        bound = 0
    if bound == 0:
        pool.close()
        raise OSError("cannot listen on %s (address in use or not available); pick another --port" % address)
    web = None
    if web_port is not None:
        try:
            web = start_web(servicer, health_servicer, host, web_port, settings.web_allowed_origins,
                            tls[1] if tls is not None else None, tokens)
        except OSError as exc:
            pool.close()
            if web_port == bound and not settings.socket:
                raise OSError("--web-port %d is the gRPC port (--port): the two ports need two numbers; pick "
                              "another --web-port" % web_port) from None
            raise OSError("cannot serve gRPC-Web on %s:%d (%s); pick another --web-port"
                          % (host, web_port, exc)) from None
    health_socket = None
    if settings.health_socket:
        try:
            health_socket = HealthSocket(health_servicer, settings.health_socket, health_gid)
        except OSError:
            pool.close()
            if web is not None:
                web.shutdown()
                web.server_close()
            raise
    server.start()
    for name in ("", SERVICE_NAME, LIVENESS):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if health_socket is not None:
        health_socket.start()
    srv = Server(server, bound, pool, health_servicer, store, web, health_socket, servicer)
    if settings.store:
        threading.Thread(target=_watch_store, args=(srv,), name="tffreeze-store-health", daemon=True).start()
    if settings.metrics_port is not None:
        def sizes():
            out = {"local": BlobStore.stored_bytes(store)}
            if settings.store:
                out["shared"] = store.stored_bytes()
            return out
        metrics_host = settings.metrics_host or "127.0.0.1"
        try:
            srv.metrics_http, srv.metrics_port = metrics.serve(settings.metrics_port, metrics_host, sizes, pool.alive,
                                                               ssl_context=tls[1] if tls is not None else None,
                                                               tokens=tokens)
        except OSError as exc:
            srv.stop(0)
            raise OSError("cannot serve metrics on %s:%d (%s); pick another --metrics-port"
                          % (metrics_host, settings.metrics_port, exc)) from None
    return srv


def _watch_store(srv: "Server", every: float = 2.0) -> None:
    """Health follows the shared store: NOT_SERVING while it is unreachable (a load balancer
    then sends calls elsewhere), SERVING again when it answers."""
    serving = True
    while not srv.stopping.is_set():
        ok = srv.store.remote.ping()
        if ok != serving:
            serving = ok
            log.warning("the shared store %s is %s", srv.store.remote.url, "reachable again" if ok else "unreachable")
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", SERVICE_NAME):
                srv.health.set(name, status)
        srv.stopping.wait(every)


def _watch_idle(seconds: float, stop: threading.Event) -> None:
    while not stop.wait(min(5.0, seconds / 4)):
        if ACTIVITY.idle_for() >= seconds:
            log.info("no call for %g s (--idle-exit): stopping", seconds)
            stop.set()


def _watch_local_folder(folder: str, socket: str, stop: threading.Event, every: float = 2.0) -> None:
    """A local server whose folder was removed (``rm -rf ~/.cache/tffreeze``) or replaced, or whose
    socket is gone, can be reached by no client, which would start another: it stops itself."""
    try:
        first = os.stat(folder)
    except OSError:
        return
    while not stop.wait(every):
        try:
            now = os.stat(folder)
            gone = (now.st_dev, now.st_ino) != (first.st_dev, first.st_ino) or not os.path.exists(socket)
        except OSError:
            gone = True
        if gone:
            log.warning("the local server's folder %s (or its socket) is gone: stopping, as no client can reach this "
                        "server; the next command starts a new one", folder)
            stop.set()


def _name_process(name: bytes = b"tffreeze-server") -> None:
    """This process's name in `ps -e`, `top` and `pgrep tffreeze-server` (the kernel's comm, 15
    bytes at most), whatever command started it (`python -c ...` for the local server)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # not Linux: the name stays
        pass


def _data_dir_words(exc: OSError, data_dir: str) -> str:
    """An OSError while the server prepared its folders, named by the flag that chose the folder."""
    where = os.path.abspath(exc.filename) if isinstance(exc.filename, str) else ""
    data = os.path.abspath(data_dir) if data_dir else ""
    if where and data and (where == data or where.startswith(data + os.sep) or data.startswith(where + os.sep)):
        return "--data-dir %s: %s (%s): give a folder you can write (it is made when missing)" % (
            data_dir, exc.strerror or exc, exc.filename)
    return str(exc)


def serve(settings: ServerSettings, out=sys.stdout) -> int:
    """Run until SIGTERM/SIGINT (or ``idle_exit`` seconds without a call), then drain
    in-flight calls and stop the workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _name_process()
    host = settings.host
    try:
        if settings.local_dir:
            localmode.prepare(settings)
        srv = create_server(settings)
    except OSError as exc:
        print("tffreeze serve: %s" % _data_dir_words(exc, settings.data_dir), file=sys.stderr)
        return 1
    stop = threading.Event()
    if settings.idle_exit:
        threading.Thread(target=_watch_idle, args=(settings.idle_exit, stop), name="tffreeze-idle",
                         daemon=True).start()

    def on_signal(signum, frame):
        if stop.is_set():  # a second signal while the commands under way finish: stop now
            srv.cut.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    import faulthandler  # `kill -USR1 PID`: every thread's stack on stderr (a stuck shutdown, a hang)

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    web = "; gRPC-Web on %s://%s:%d" % ("https" if settings.tls_cert else "http", host, srv.web_port) if srv.web_port is not None else ""
    boxed = "sandboxed" if srv.pool.sandbox is not None else "no sandbox"
    boxed += ", TLS" if settings.tls_cert else ""
    boxed += ", token required" if settings.auth_token_file else ""
    if settings.store:
        boxed += ", shared store %s" % settings.store
    if srv.metrics_port is not None:
        web += "; metrics on %s://%s:%d/metrics" % ("https" if settings.tls_cert else "http",
                                                    settings.metrics_host or "127.0.0.1", srv.metrics_port)
    where = "unix:" + settings.socket if settings.socket else "%s:%d" % (host, srv.port)
    print("tffreeze server listening on %s (data dir %s, %d worker(s), %s%s)"
          % (where, os.path.abspath(settings.data_dir), settings.workers, boxed, web), file=out, flush=True)
    if settings.local_dir:
        localmode.announce(settings, srv)
        threading.Thread(target=_watch_local_folder, args=(settings.local_dir, settings.socket, stop),
                         name="tffreeze-local-folder", daemon=True).start()
    try:
        # Waken each second: a SIGTERM the kernel hands to another thread only marks the handler as
        # due, and the main thread runs it when it next runs Python code (a wait without timeout could
        # sleep through it: seen as a server that ignored SIGTERM for 60 s under load).
        while not stop.wait(1.0):
            pass
    finally:
        if settings.local_dir:
            localmode.withdraw(settings)
    calls, owed = ACTIVITY.under_way()
    print("tffreeze server shutting down: new commands are refused; %s (a second Ctrl-C or SIGTERM stops at once)"
          % ("the commands under way (%d call(s) in flight) have up to %g s to finish" % (calls, settings.drain_seconds)
             if calls or owed else "no command is under way"), file=out, flush=True)
    if not srv.stop(settings.drain_seconds) and (calls or owed or ACTIVITY.under_way()[0]):
        print("tffreeze server stopped before every command under way had finished (%s)"
              % ("a second signal" if srv.cut.is_set() else "--drain-seconds %g passed" % settings.drain_seconds),
              file=out, flush=True)
    return 0


__all__ = ["create_server", "serve", "Server", "ServerSettings"]
