"""Shared fixtures: a real tffreeze server on a free port, and a client."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
BIN = os.path.dirname(sys.executable)
# The clients' local caches (digests, received graphs) go to a folder of this run,
# never the user's ~/.cache; child processes (CLIs) inherit it.
_OWN_CACHE = None  # made by this run (not given by its caller): removed when the run ends
if "TFFREEZE_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["TFFREEZE_CACHE_DIR"] = _OWN_CACHE = tempfile.mkdtemp(prefix="tffreeze-test-cache-")
# The C# and C++ clients start a local server with this command when no server is named.
os.environ.setdefault("TFFREEZE_COMMAND", os.path.join(BIN, "tffreeze"))


@pytest.fixture(scope="session", autouse=True)
def _stop_the_local_server():
    """A test that runs a client without naming a server starts this run's local server
    (in TFFREEZE_CACHE_DIR); it is stopped when the run ends."""
    yield
    subprocess.run([os.path.join(BIN, "tffreeze"), "local-server", "stop"], capture_output=True, timeout=120)
    if _OWN_CACHE is not None:  # its store can hold hundreds of MB of uploads
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


class RunningServer:
    def __init__(self, proc, target, data_dir, log):
        self.proc = proc
        self.target = target
        self.data_dir = data_dir
        self.log = log


def start_server(data_dir: str, extra=(), wrapper=(), env=None, command=None) -> RunningServer:
    """Start `tffreeze serve --port 0` (or ``command``, a server command line, with the same
    flags), run by ``wrapper`` (a command prefix, such as another user's) if given, in
    ``env`` if given, and wait for its 'listening on' line."""
    cmd = [*wrapper, *(command or [os.path.join(BIN, "tffreeze"), "serve"]), "--port", "0", "--data-dir", data_dir, *extra]
    if os.environ.get("TFFREEZE_REQUIRE_SANDBOX") and "--sandbox" not in extra:
        cmd += ["--sandbox", "bwrap"]  # CI: a server without its sandbox must not start
    if "--workers" not in extra:
        cmd += ["--workers", "1"]  # tests count and watch one worker unless they ask for more
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    log = []
    deadline = time.monotonic() + 120
    target = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        log.append(line)
        m = re.search(r"listening on (\S+):(\d+)", line)
        if m:
            target = "%s:%s" % (m.group(1), m.group(2))
            break
    if target is None:
        proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(log))
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [log.append(l) for l in proc.stdout], daemon=True).start()
    return RunningServer(proc, target, data_dir, log)


def stop_server(server: RunningServer) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(60)
    except subprocess.TimeoutExpired:
        server.proc.send_signal(signal.SIGUSR1)  # the server dumps every thread's stack into its log
        time.sleep(2)
        server.proc.kill()
        server.proc.wait(10)
        print("server did not stop within 60 s of SIGTERM; its log ends:\n" + "".join(server.log[-80:]),
              file=sys.stderr)
        return -9


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("server-data")))
    yield srv
    code = stop_server(srv)
    assert code == 0, "server did not shut down cleanly on SIGTERM (exit %s):\n%s" % (code, "".join(srv.log[-40:]))


@pytest.fixture(scope="session")
def web_server(tmp_path_factory):
    """A server with a gRPC-Web endpoint too (srv.web_url)."""
    srv = start_server(str(tmp_path_factory.mktemp("web-data")), ["--web-port", "0"])
    srv.web_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
    yield srv
    assert stop_server(srv) == 0


def on_a_terminal(argv, env=None, timeout: float = 300) -> str:
    """Run ``argv`` (which must succeed) with stderr on a pseudo-terminal; what it drew there."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: every writer closed
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout) == 0
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def run_returned_graph(graph_bytes: bytes, manifest: dict, known=None) -> list:
    """Run a frozen graph (or the ONNX / TFLite model of a freeze with a format, in its own
    runtime) as its manifest describes it: every input fed its value in ``known`` or a
    generated value of its dtype and shape (unknown sizes 2), every output fetched; returns
    the outputs. Raises when it fails."""
    import numpy as np

    import models

    values = {"string": b"a", "bool": False}
    feeds = dict(known or {})
    batch = next((np.shape(v)[0] for v in feeds.values() if np.ndim(v)), 2)  # the known inputs' batch
    for i in manifest["inputs"]:
        if i["name"] in feeds:
            continue
        shape = [(batch if k == 0 else 2) if d is None or d < 0 else d
                 for k, d in enumerate(i["shape"] if i["shape"] is not None else [2])]
        feeds[i["name"]] = np.full(shape, values.get(i["dtype"], 1), dtype=object if i["dtype"] == "string"
                                   else np.dtype(i["dtype"]))
    fetches = [o["name"] for o in manifest["outputs"]]
    fmt = manifest.get("format") or "FORMAT_GRAPHDEF"
    if fmt in ("FORMAT_ONNX", "FORMAT_TFLITE"):
        import tempfile

        from tffreeze.runner import run_graph

        c = manifest["conversion"]
        names = {t["name"]: t["runtime_name"] for t in c["inputs"] + c["outputs"]}
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model." + fmt[len("FORMAT_"):].lower())
            with open(path, "wb") as fh:
                fh.write(graph_bytes)
            return run_graph(path, feeds, fetches, names)
    return models.run_frozen(graph_bytes, feeds, fetches)


def _running_client_class():
    from tffreeze import FreezeClient

    class RunsEveryGraph(FreezeClient):
        """The client the tests use: every graph a freeze returns is run before the test
        sees it, so no test passes on a freeze that succeeds with a graph that fails."""

        def freeze_files(self, *args, **kwargs):  # freeze() goes through it too
            outcome = super().freeze_files(*args, **kwargs)
            data = outcome.graph_bytes
            if data is None:
                with open(outcome.path, "rb") as fh:
                    data = fh.read()
            run_returned_graph(data, outcome.manifest)
            return outcome
    return RunsEveryGraph


@pytest.fixture()
def client(server):
    with _running_client_class()(server.target, timeout=300) as c:
        yield c


@pytest.fixture(scope="session")
def real_models():
    """The real-architecture corpus (tests/corpus.py), built once and kept under
    build/ (git-ignored), keyed by the builder's source and TensorFlow's version."""
    import corpus

    started = time.time()
    built = corpus.build_all(corpus.default_root())
    sys.stderr.write("real-model corpus ready in %.1f s\n" % (time.time() - started))
    return built
