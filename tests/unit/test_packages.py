"""Packages by role: each is imported in a fresh interpreter and what it pulled in is checked.

tffreeze_api (the contract) imports neither TensorFlow nor a server, and its error
registry needs neither grpc nor protobuf to import; tffreeze (the client) imports no TensorFlow and
no server; the engine (tffreeze_server.core) imports no grpc; the server never
imports the client package (no cycle).
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _imported(statement: str) -> set:
    code = "import sys, json\n%s\nprint(json.dumps(sorted(sys.modules)))" % statement
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])} | set(
        json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("statement, forbidden", [
    ("import tffreeze_api.errors", {"grpc", "google", "tensorflow", "tffreeze", "tffreeze_server"}),
    ("import tffreeze_server.core.layout", {"grpc", "tensorflow", "tffreeze"}),
    ("import tffreeze_api.manifest, tffreeze_api.options", {"grpc", "tensorflow", "tffreeze", "tffreeze_server"}),
    ("import tffreeze, tffreeze.cli, tffreeze.client", {"tensorflow", "tffreeze_server"}),
    ("import tffreeze_server.core.engine, tffreeze_server.core.spec", {"grpc", "tffreeze"}),
    ("import tffreeze_server.app, tffreeze_server.cli, tffreeze_server.servicer", {"tffreeze"}),
])
def test_package_imports_only_what_its_role_allows(statement, forbidden):
    pulled = _imported(statement)
    assert not (pulled & forbidden), "%s pulled in %s" % (statement, sorted(pulled & forbidden))


def _python_files(*dirs):
    for d in dirs:
        for root, _, files in os.walk(os.path.join(ROOT, d)):
            if "/v1" in root.replace(os.sep, "/") or "__pycache__" in root:
                continue
            for f in files:
                if f.endswith(".py"):
                    yield os.path.join(root, f)


def test_no_control_flow_on_message_text():
    """Errors are told apart by reason or type, never by searching their message."""
    pattern = re.compile(r"""["'][^"']+["']\s+(not\s+)?in\s+(str\(\w+\)|\w+\.(message|details\(\)|args))""")
    offenders = []
    for path in _python_files("api_py", "client_py", "server"):
        with open(path) as fh:
            for i, line in enumerate(fh, 1):
                if pattern.search(line):
                    offenders.append("%s:%d: %s" % (os.path.relpath(path, ROOT), i, line.strip()))
    assert not offenders, "\n".join(offenders)


def test_option_strings_are_parsed_only_in_the_api_package():
    """Freeze options' NAME=VALUE strings are split in tffreeze_api.options alone (the
    runner's own --input NAME=FILE.npy pairs are not freeze options)."""
    pattern = re.compile(r"""\.partition\(\s*["']=["']\s*\)""")
    offenders = [os.path.relpath(p, ROOT) for p in _python_files("client_py", "server")
                 if pattern.search(open(p).read()) and not p.endswith("runner.py")]
    assert not offenders, offenders


def test_every_reason_the_code_uses_is_in_the_contract():
    from tffreeze_api.v1 import errors_pb2

    known = set(errors_pb2.ErrorReason.keys())
    used = set()
    for path in _python_files("api_py", "client_py", "server"):
        used |= set(re.findall(r"ERROR_REASON_[A-Z_]+", open(path).read()))
    assert used and used <= known, sorted(used - known)
