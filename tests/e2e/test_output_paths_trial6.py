"""The sixth user trial's findings about output paths, in every client (the same line, the same
exit code):

- M3: an empty path (-o "", --manifest "") is a usage error naming the flag (exit 2), never a
  freeze that "wrote" nothing, nor an ignored manifest;
- M7: -o on another user's file that this user may write, in a sticky folder (like /tmp) they
  may write in: it is replaced by renaming a temporary file over it, which the sticky folder
  forbids: said so (the owner, the sticky folder, another -o), and nothing left behind;
- M8: -o / --manifest on a symbolic link writes through it: the link's target gets the output
  and the link stays a link."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess

import pytest

import models
import users
from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)

CLIENTS = {"py": PY, "cs": CS, "cpp": CPP}
_PREFIX = re.compile(r"^tffreeze(-cs|-cpp)?( freeze| inspect| run)?: (error: )?")


def _said(stderr: str) -> str:
    """The message lines of stderr, without the program's name and the "(see ... --help)" line."""
    return "\n".join(_PREFIX.sub("", line) for line in stderr.splitlines()
                     if line.strip() and not line.startswith(("usage:", " ", "(see tffreeze", "(TensorFlow ")))


def _run(argv, timeout=600, cwd=None):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _dead(client: str) -> str:
    return "http://127.0.0.1:1" if client == "cs" else "127.0.0.1:1"


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("trial6") / "ck"), True).directory


# -- M3: empty paths ----------------------------------------------------------------------------

EMPTY = [
    ("o", ["freeze", "{ck}", "-o", ""], "freeze needs -o OUT.pb"),
    ("output-file", ["freeze", "{ck}", "--output-file", ""], "freeze needs -o OUT.pb"),
    ("o-with-manifest", ["freeze", "{ck}", "-o", "", "--manifest", "{tmp}/m.json"], "freeze needs -o OUT.pb"),
    ("manifest", ["freeze", "{ck}", "-o", "{tmp}/m.pb", "--manifest", ""],
     "--manifest needs a path: --manifest OUT.json"),
    ("run-manifest", ["run", "{tmp}/m.pb", "--manifest", "", "--output", "y"],
     "--manifest needs a path: --manifest M.json"),
]


@pytest.mark.parametrize("case", EMPTY, ids=[c[0] for c in EMPTY])
def test_an_empty_path_is_a_usage_error_naming_the_flag(ck, tmp_path, case):
    _, argv, expect = case
    lines = {}
    for client, program in CLIENTS.items():
        if argv[0] == "run":
            (tmp_path / "m.pb").write_bytes(b"")  # never read: the usage error comes first
        server = ["--server", _dead(client)] if argv[0] == "freeze" else []  # run has no server
        r = _run([program] + [a.format(ck=ck, tmp=tmp_path) for a in argv] + server, timeout=300)
        assert r.returncode == 2, (client, r.returncode, r.stdout, r.stderr)
        assert r.stdout == "", (client, r.stdout)
        lines[client] = _said(r.stderr)
        assert sorted(os.listdir(tmp_path)) == (["m.pb"] if argv[0] == "run" else []), (client, os.listdir(tmp_path))
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == expect, lines["py"]


# -- M7: another user's writable file in a sticky folder ---------------------------------------

def test_another_users_writable_file_in_a_sticky_folder_names_the_owner_and_the_sticky_folder(ck):
    me = users.ordinary()
    if not me.switch:
        users.require_or_skip("a file of another user's can only be made when the tests run as root")
    source = me.folder()
    shutil.copytree(ck, os.path.join(source, "ck"))
    me.give(source)
    folder = me.folder()
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o1777)  # like /tmp: the user may write in it, not replace root's files
    try:
        lines = {}
        for client, program in CLIENTS.items():
            kept = os.path.join(folder, client + ".pb")
            with open(kept, "w") as f:
                f.write("hi\n")
            os.chmod(kept, 0o666)  # root's, and anyone may write it
            r = me.run([program, "freeze", os.path.join(source, "ck"), "-o", kept, "--server", _dead(client)])
            assert r.returncode == 1, (client, r.stderr)
            lines[client] = _said(r.stderr).replace(client + ".", "FILE.")
            st = os.stat(kept)
            assert open(kept).read() == "hi\n" and st.st_mode & 0o7777 == 0o666 and st.st_uid == 0
        assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
        shown = os.path.join(folder, "FILE.pb")
        assert lines["py"] == ("-o %s belongs to another user, %s (uid 0), in the sticky folder %s, where you may "
                               "not replace it: give -o another path [PERMISSION_DENIED]"
                               % (shown, pwd.getpwuid(0).pw_name, folder)), lines["py"]
        assert sorted(os.listdir(folder)) == sorted(c + ".pb" for c in CLIENTS)  # no leftover temporary file
        # The user can write in the folder (the old message said they could not): another path works.
        assert me.run(["touch", os.path.join(folder, "mine.pb")]).returncode == 0
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(source)


# -- M8: outputs through symbolic links --------------------------------------------------------

def test_output_and_manifest_on_a_symbolic_link_are_written_through_it(web_server, ck, tmp_path):
    for client, program in CLIENTS.items():
        work = tmp_path / client
        (work / "deploy").mkdir(parents=True)
        (work / "deploy" / "real.pb").write_text("stale graph\n")
        (work / "deploy" / "real.json").write_text("stale manifest\n")
        os.symlink("deploy/real.pb", str(work / "link.pb"))  # relative, as `ln -s deploy/real.pb link.pb`
        os.symlink(str(work / "deploy" / "real.json"), str(work / "link.json"))  # absolute
        server = web_server.web_url if client == "cs" else web_server.target
        r = _run([program, "freeze", ck, "-o", "link.pb", "--manifest", "link.json", "--server", server], cwd=str(work))
        assert r.returncode == 0, (client, r.stderr)
        assert os.path.islink(work / "link.pb") and os.readlink(str(work / "link.pb")) == "deploy/real.pb", client
        assert os.path.islink(work / "link.json") and os.readlink(str(work / "link.json")) == str(
            work / "deploy" / "real.json"), client
        graph = (work / "deploy" / "real.pb").read_bytes()
        manifest = json.loads((work / "deploy" / "real.json").read_text())
        assert hashlib.sha256(graph).hexdigest() == manifest["sha256"], client
        assert len(graph) == manifest["size_bytes"], client
        assert sorted(os.listdir(work)) == ["deploy", "link.json", "link.pb"], (client, os.listdir(work))
        assert sorted(os.listdir(work / "deploy")) == ["real.json", "real.pb"], (client, os.listdir(work / "deploy"))
        # Again (the graph already there): still through the link.
        r = _run([program, "freeze", ck, "-o", "link.pb", "--manifest", "link.json", "--server", server, "--quiet"],
                 cwd=str(work))
        assert r.returncode == 0, (client, r.stderr)
        assert os.path.islink(work / "link.pb") and os.path.islink(work / "link.json"), client
        assert (work / "deploy" / "real.pb").read_bytes() == graph, client
    graphs = [(tmp_path / c / "deploy" / "real.pb").read_bytes() for c in CLIENTS]
    assert graphs[0] == graphs[1] == graphs[2]


def test_a_dangling_link_is_written_through_to_its_target(web_server, ck, tmp_path):
    for client, program in CLIENTS.items():
        work = tmp_path / client
        (work / "deploy").mkdir(parents=True)
        os.symlink("deploy/new.pb", str(work / "link.pb"))  # its target not written yet
        server = web_server.web_url if client == "cs" else web_server.target
        r = _run([program, "freeze", ck, "-o", "link.pb", "--server", server, "--quiet"], cwd=str(work))
        assert r.returncode == 0, (client, r.stderr)
        assert os.path.islink(work / "link.pb"), client
        assert (work / "deploy" / "new.pb").stat().st_size > 0, client
        assert sorted(os.listdir(work / "deploy")) == ["new.pb"], client
