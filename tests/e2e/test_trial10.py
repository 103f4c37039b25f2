"""Issue 34, the tenth new-user trial: what it found, reproduced in every client it concerns.
Finding 3 (BLOCKER): `--server H1:P1,H2:P2` with every replica named by host name failed in Python
("the target uri is not valid") and C++ ("Failed to create secure client channel", without TLS):
the first name was turned into an address list and the others appended unresolved."""

from __future__ import annotations

import os
import subprocess

import models
from test_parity import CPP, PY, built  # noqa: F401  (built: the clients, made once)


def test_replicas_named_by_host_name_are_reached_in_every_gRPC_client(server, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    port = server.target.rpartition(":")[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    for replicas in ("localhost:%s,localhost:%s" % (port, port), "localhost:%s, 127.0.0.1:%s" % (port, port)):
        for program in (PY, CPP):
            done = subprocess.run([program, "inspect", model.directory, "--server", replicas], capture_output=True,
                                  text=True, timeout=300, env=env)
            assert done.returncode == 0, (program, replicas, done.stderr)
            assert "y:0" in done.stdout, (program, done.stdout)
