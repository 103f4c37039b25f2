"""Issue 34, the ninth new-user trial: what it found misleading, reproduced in every client it
concerns. M2: a shared server stopped in the middle of a freeze (a second SIGTERM, or the drain
running out) told every client "cannot reach the server ... start one", C# to check TLS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)

import attacks
from conftest import start_server

_STOPPED = "the tffreeze server stopped before this command finished"


def _freezes_under_way(tmp_path, srv, web):
    """A freeze in each client whose verify runs a loop for hours: all three are in flight
    (one on the worker, two queued for it) when the server is told to stop."""
    slow = attacks.slow_loop(str(tmp_path / "slow"))
    running = {}
    for client, program, server in (("py", PY, srv.target), ("cs", CS, web), ("cpp", CPP, srv.target)):
        running[client] = subprocess.Popen(
            [program, "freeze", slow, "--outputs", "out", "--verify", "-o", str(tmp_path / ("%s.pb" % client)),
             "--server", server], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sum("freeze" in line.lower() and "verify" in line.lower() for line in srv.log) < 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(6.0)  # the uploads are done; one verify runs, two freezes wait for the worker
    return running


@pytest.mark.parametrize("how", ["second signal", "drain ran out"])
def test_a_server_stopped_mid_freeze_says_so_in_every_client(tmp_path, how):
    extra = ["--web-port", "0", "--verify-seconds", "3600", "--max-call-seconds", "3600",
             "--drain-seconds", "120" if how == "second signal" else "2"]
    srv = start_server(str(tmp_path / "data"), extra)
    web = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
    running = _freezes_under_way(tmp_path, srv, web)
    for client, proc in running.items():
        assert proc.poll() is None, (client, proc.communicate())
    srv.proc.send_signal(signal.SIGTERM)
    if how == "second signal":
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    said = {client: (proc.wait(120), proc.communicate()[1]) for client, proc in running.items()}
    assert srv.proc.wait(60) == 0
    assert time.monotonic() - began < 40, "the server and its calls took too long to stop"
    for client, (code, err) in said.items():
        assert code == 1 and _STOPPED in err and "SERVER_STOPPING" in err, (client, err)
        assert ("a second SIGTERM or SIGINT" if how == "second signal" else "--drain-seconds") in err, (client, err)
        assert "Start one" not in err and "TLS" not in err and "cannot reach" not in err, (client, err)
        assert not list(tmp_path.glob(".%s.pb*" % client)) and not (tmp_path / ("%s.pb" % client)).exists()
    assert not any("retrying the call on another worker" in line for line in srv.log), "".join(srv.log[-30:])


@pytest.mark.parametrize("command,has,lacks", [("run", "--input", "--server"), ("freeze", "--server", "--libtensorflow"),
                                               ("inspect", "--json", "--optimize")])
def test_a_command_s_help_is_that_command_s_in_every_client(command, has, lacks):
    """R4: `tffreeze-cs run --help` and `tffreeze-cpp run --help` printed the whole tool's help (73 and
    65 lines, freeze's server and TLS flags included); Python's gives run's own flags."""
    for program in (PY, CS, CPP):
        whole = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=120)
        own = subprocess.run([program, command, "--help"], capture_output=True, text=True, timeout=120)
        assert own.returncode == 0 and whole.returncode == 0, (program, own.stderr)
        name = os.path.basename(program)
        assert re.match(r"usage: %s( \[[^\]]*\])* %s\b" % (re.escape(name), command), own.stdout), (program, own.stdout[:200])
        assert has in own.stdout and lacks not in own.stdout, (program, own.stdout)
        if program != PY:  # (Python's top-level help lists the commands only)
            assert len(own.stdout.splitlines()) < len(whole.stdout.splitlines()), program
