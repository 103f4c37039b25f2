"""Issue 34, the eighth new-user trial: what it found, reproduced in the clients it concerns (the
other findings are tested beside the code they changed: test_tls_auth.py, test_web_page.py,
test_cli_first_week.py, test_ordinary_user.py, unit/test_layout.py)."""

from __future__ import annotations

import os
import subprocess

import models
from test_parity import CS, built  # noqa: F401  (built: the clients, made once)


def test_csharp_refuses_the_local_server_when_flags_were_given_for_the_team_server(tmp_path):
    """R12: with $TFFREEZE_SERVER (the gRPC address) set, `tffreeze-cs freeze ... --ca ca.pem --token T`
    froze on the user's local server (exit 0), another server than the one the flags were for."""
    model = models.dense(str(tmp_path / "m"), True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    env["TFFREEZE_SERVER"] = "localhost:50443"
    done = subprocess.run([CS, "freeze", model.directory, "-o", str(tmp_path / "t.pb"), "--token", "abc"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert "--token was given for that server" in done.stderr and "--server https://HOST:WEB_PORT" in done.stderr
    assert not os.path.exists(str(tmp_path / "t.pb"))
