"""What `make demo` and `make test` install (dry runs, nothing executed): the demo only the
runtime requirements, the tests the development ones too; apt through sudo when not root."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dry(target: str, env=None, fresh: bool = True) -> str:
    """`make -n TARGET` as on a fresh clone (-B: every file out of date)."""
    argv = ["make", "-n", "-C", ROOT] + (["-B"] if fresh else []) + [target]
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env, timeout=60).stdout


def test_demo_installs_only_the_runtime_requirements():
    demo, test = _dry("demo"), _dry("test")
    assert "-r requirements.txt" in demo and "requirements-dev.txt" not in demo
    assert "-r requirements-dev.txt" in test
    with open(os.path.join(ROOT, "requirements.txt")) as fh:
        runtime = fh.read()
    for dev_only in ("pytest", "moto", "kubernetes-validate", "tf-keras", "tf-slim", "jsonschema"):
        assert dev_only not in runtime


def test_apt_goes_through_sudo_for_a_user_who_is_not_root(tmp_path):
    fake = tmp_path / "id"  # `id -u` answering as an ordinary user
    fake.write_text("#!/bin/sh\necho 1000\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (tmp_path, os.environ["PATH"]))
    for target in ("sandbox", "mono", "cpp-deps"):
        text = _dry(target, env)
        assert "sudo apt-get update" in text and "sudo env DEBIAN_FRONTEND=noninteractive apt-get install" in text
    root = tmp_path / "root"
    root.mkdir()
    (root / "id").write_text("#!/bin/sh\necho 0\n")
    (root / "id").chmod(0o755)
    text = _dry("sandbox", dict(os.environ, PATH="%s:%s" % (root, os.environ["PATH"])))
    assert "apt-get update" in text and "sudo" not in text
