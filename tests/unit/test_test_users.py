"""The suite's own user helper: run by an ordinary user, `make test` must leave that user's
real local server and ~/.cache/tffreeze alone (finding 10 of the tenth trial: a test started a
local server in the real folder, and the user's running one was orphaned)."""
import os
import pwd

import users


def test_the_user_running_the_tests_gets_a_throwaway_home(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # as if not root
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-real-cache")
    me = users.ordinary()
    real = pwd.getpwuid(os.getuid()).pw_dir
    assert not me.switch and me.home != real and os.listdir(me.home) == []
    env = me.env()
    assert env["HOME"] == me.home
    assert "XDG_CACHE_HOME" not in env and not any(k.startswith("TFFREEZE_") for k in env)
    assert users.ordinary().home != me.home  # each caller its own
