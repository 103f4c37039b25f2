"""No server to start: with no --server and no $TFFREEZE_SERVER every client uses this user's
local server, started on demand (`tffreeze serve --local`), kept warm between calls, closed
to other users, stopped by `tffreeze local-server stop` or after --idle-exit seconds.

Each test has a cache folder of its own (so its own local server) and stops it at the end."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

import models
from conftest import on_a_terminal
from test_parity import CPP, CS, PY, built  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

from tffreeze_api import localserver


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("local") / "run"), True, steps=[100, 200])


@pytest.fixture()
def own_cache(tmp_path):
    """A cache folder (so a local server) of this test's own; the server stopped afterwards."""
    env = dict(os.environ, TFFREEZE_CACHE_DIR=str(tmp_path / "cache"), TFFREEZE_COMMAND=PY)
    env.pop("TFFREEZE_SERVER", None)
    env.pop("TFFREEZE_WEB_SERVER", None)
    yield env
    subprocess.run([PY, "local-server", "stop"], env=env, capture_output=True, timeout=120)


def _run(argv, env, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, **kw)


def _info(env) -> dict:
    return localserver.read_info(os.path.join(env["TFFREEZE_CACHE_DIR"], "local")) or {}


def test_freeze_with_no_server_started_then_warm(own_cache, ckpt, tmp_path):
    first = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "a.pb")], own_cache)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # no TensorFlow/absl/CUDA lines: they go to the server's log
    info = _info(own_cache)
    pid = int(info["pid"])
    assert localserver.alive(pid) and info["grpc"].startswith("unix:")
    folder = os.path.join(own_cache["TFFREEZE_CACHE_DIR"], "local")
    # closed to other users: the folder, the socket, the token
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(folder, "token")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(info["grpc"][len("unix:"):]).st_mode) & 0o077 == 0
    with open(os.path.join(folder, "server.log")) as fh:
        assert "listening on unix:" in fh.read()

    started = time.monotonic()
    second = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "b.pb"), "--outputs", "y"], own_cache)
    took = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert int(_info(own_cache)["pid"]) == pid  # the same warm server: TensorFlow was loaded once
    assert (tmp_path / "a.pb").read_bytes() == (tmp_path / "b.pb").read_bytes()
    print("second freeze on the warm local server: %.2f s" % took)

    # a library user gets the same server
    code = ("from tffreeze import FreezeClient\n"
            "with FreezeClient() as c:\n"
            "    o = c.freeze(%r, output_path=%r)\n"
            "    print(c.target, o.manifest['outputs'][0]['name'])\n" % (ckpt.directory, str(tmp_path / "c.pb")))
    lib = _run([sys.executable, "-c", code], own_cache)
    assert lib.returncode == 0, lib.stderr
    assert lib.stdout.split() == [info["grpc"], "y:0"]

    # without the token the socket answers nothing
    import grpc
    from tffreeze_api.v1 import service_pb2, service_pb2_grpc
    with grpc.insecure_channel(info["grpc"]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.FreezeServiceStub(channel).GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    stopped = _run([PY, "local-server", "stop"], own_cache)
    assert stopped.returncode == 0 and "pid %d" % pid in stopped.stdout
    assert not localserver.alive(pid) and _info(own_cache) == {}
    status = _run([PY, "local-server", "status"], own_cache)
    assert status.returncode == 3 and "no local server" in status.stdout


def test_every_client_shares_one_local_server(own_cache, ckpt, tmp_path):
    outs = {}
    for name, argv in (("cpp", [CPP]), ("cs", [CS]), ("py", [PY])):
        out = _run(argv + ["freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], own_cache)
        assert out.returncode == 0, (name, out.stderr)
        outs[name] = (tmp_path / (name + ".pb")).read_bytes()
    assert outs["cpp"] == outs["cs"] == outs["py"]
    with open(os.path.join(own_cache["TFFREEZE_CACHE_DIR"], "local", "server.log")) as fh:
        assert fh.read().count("listening on unix:") == 1  # started once (by the C++ client), then shared


def test_clients_starting_at_once_share_one_server(own_cache, ckpt, tmp_path):
    results = [None] * 3

    def freeze(i):
        results[i] = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / ("%d.pb" % i))], own_cache)

    threads = [threading.Thread(target=freeze, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    with open(os.path.join(own_cache["TFFREEZE_CACHE_DIR"], "local", "server.log")) as fh:
        assert fh.read().count("listening on unix:") == 1


def test_a_named_server_never_starts_one(own_cache, ckpt, tmp_path):
    for argv in ([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "m.pb"), "--server", "127.0.0.1:1"],
                 [PY, "inspect", ckpt.directory, "--server", "127.0.0.1:1"],
                 [CPP, "freeze", ckpt.directory, "-o", str(tmp_path / "m.pb"), "--server", "127.0.0.1:1"]):
        out = _run(argv, own_cache)
        assert out.returncode == 1 and "cannot reach the tffreeze server at 127.0.0.1:1" in out.stderr
    env = dict(own_cache, TFFREEZE_SERVER="127.0.0.1:1")
    out = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "m.pb")], env)
    assert out.returncode == 1 and "127.0.0.1:1" in out.stderr
    assert not os.path.exists(os.path.join(own_cache["TFFREEZE_CACHE_DIR"], "local", "server.info"))


def test_idle_exit_stale_info_and_an_upgraded_client(own_cache, ckpt, tmp_path):
    start = _run([PY, "local-server", "start", "--idle-exit", "3"], own_cache)
    assert start.returncode == 0 and "started" in start.stdout, start.stderr
    pid = int(_info(own_cache)["pid"])
    again = _run([PY, "local-server", "start"], own_cache)
    assert "already running" in again.stdout and int(_info(own_cache)["pid"]) == pid
    deadline = time.monotonic() + 60
    while localserver.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not localserver.alive(pid), "the idle local server did not stop"
    assert _info(own_cache) == {}

    # a server that was killed leaves its server.info: the next call starts a new one
    assert _run([PY, "local-server", "start"], own_cache).returncode == 0
    pid = int(_info(own_cache)["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while localserver.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    out = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "m.pb")], own_cache)
    assert out.returncode == 0, out.stderr
    second = int(_info(own_cache)["pid"])
    assert second != pid

    # a server of another version (the package was upgraded since) is replaced
    folder = os.path.join(own_cache["TFFREEZE_CACHE_DIR"], "local")
    info = _info(own_cache)
    info["version"] = "0.0.1"
    localserver.write_info(folder, info)
    out = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "n.pb")], own_cache)
    assert out.returncode == 0, out.stderr
    assert int(_info(own_cache)["pid"]) != second and not localserver.alive(second)


@pytest.mark.parametrize("client", ["cs", "cpp"])
def test_csharp_and_cpp_show_percent_and_rate_on_a_terminal(own_cache, tmp_path, client):
    import re

    model = models.seed_v1_v2(str(tmp_path / "ckpt"), True)  # a store of this test's own: every byte is sent
    shown = on_a_terminal([CS if client == "cs" else CPP, "freeze", model.directory, "-o", str(tmp_path / "m.pb")],
                          own_cache)
    lines = [ln.replace("\x1b[K", "").strip() for ln in shown.split("\r")]
    uploads = [ln for ln in lines if ln.startswith("upload ")]
    assert uploads and re.fullmatch(r"upload 100% [\d.]+/[\d.]+ MiB, [\d.]+ MiB/s, \d+ (s|min) left", uploads[-1]), lines
    stages = [ln for ln in lines if ln.startswith("freeze ")]
    assert stages and re.match(r"freeze +\d+% [a-z ]+", stages[-1]) and not any("_" in ln.split("(")[0] for ln in stages)
    piped = _run([CS if client == "cs" else CPP, "freeze", model.directory, "-o", str(tmp_path / "n.pb")], own_cache)
    assert piped.returncode == 0 and piped.stderr == ""


def test_a_local_server_whose_folder_is_removed_stops_and_the_next_command_starts_another(own_cache, ckpt, tmp_path):
    """Trial 11 (ROUGH 22): `rm -rf ~/.cache/tffreeze` under a running local server left it
    running, unreachable (its socket gone), until its idle exit. It now stops itself."""
    first = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "a.pb")], own_cache)
    assert first.returncode == 0, first.stderr
    pid = int(_info(own_cache)["pid"])
    shutil.rmtree(own_cache["TFFREEZE_CACHE_DIR"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid) and \
            "zombie" not in open("/proc/%d/status" % pid).read():
        time.sleep(0.2)
    assert not os.path.exists("/proc/%d" % pid) or "zombie" in open("/proc/%d/status" % pid).read(), \
        "the local server (pid %d) still runs without its folder" % pid
    again = _run([PY, "freeze", ckpt.directory, "-o", str(tmp_path / "b.pb")], own_cache)
    assert again.returncode == 0, again.stderr
    assert int(_info(own_cache)["pid"]) != pid
    assert open(tmp_path / "a.pb", "rb").read() == open(tmp_path / "b.pb", "rb").read()
