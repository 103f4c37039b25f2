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


def test_a_file_that_changed_after_it_was_hashed_is_named_in_every_client(tmp_path):
    """R11: a checkpoint still being written while it was uploaded was reported as "corrupted in
    transit" (C#) or "upload of 174d31a7e156 has N bytes, the digest says M" (Python, C++), naming no
    file. (The change is made here between hashing and upload: the shard is rewritten in place, and
    every client's digest-cache entry for it is put back to the old digest at its new stat, as a
    write landing between a client's hash and its upload leaves things; the caches key on the
    ctime, so a plain rewrite is hashed again and never reaches the upload.)"""
    import re

    from conftest import start_server, stop_server
    from test_parity import CPP, PY

    model = models.dense(str(tmp_path / "m"), True)
    shard = next(os.path.join(model.directory, n) for n in os.listdir(model.directory) if ".data-" in n)
    for name in os.listdir(model.directory):  # written an hour ago: old enough for the digest caches to keep
        os.utime(os.path.join(model.directory, name), (os.stat(shard).st_atime - 3600, os.stat(shard).st_mtime - 3600))
    cache = str(tmp_path / "cache")
    env = dict(os.environ, TFFREEZE_CACHE_DIR=cache)
    first = start_server(str(tmp_path / "a"), ["--web-port", "0"])
    try:
        web = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in first.log if "gRPC-Web on" in l)
        for program, server in ((PY, first.target), (CS, web), (CPP, first.target)):  # the digests, cached
            done = subprocess.run([program, "inspect", model.directory, "--server", server], capture_output=True,
                                  text=True, timeout=300, env=env)
            assert done.returncode == 0, done.stderr
    finally:
        assert stop_server(first) == 0
    import hashlib
    import json

    old = hashlib.sha256(open(shard, "rb").read()).hexdigest()
    data = bytearray(open(shard, "rb").read())
    data[0] ^= 0xFF
    with open(shard, "r+b") as fh:  # in place: the same inode and size
        fh.write(bytes(data))
    st, real = os.stat(shard), os.path.realpath(shard)
    with open(os.path.join(cache, "digests.json")) as fh:
        table = json.load(fh)
    table[real] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, old]
    with open(os.path.join(cache, "digests.json"), "w") as fh:
        json.dump(table, fh)
    ticks = 621355968000000000 + st.st_mtime_ns // 100  # .NET ticks of the mtime
    for name, line in (("digests-cs.tsv", "%s\t%d\t%d:%d:%d:%d.%d\t%s\n" % (
                            old, st.st_size, ticks, st.st_ino, st.st_dev, st.st_ctime_ns // 10**9,
                            st.st_ctime_ns % 10**9, real)),
                       ("digests-cpp.tsv", "%s\t%d\t%d\t%d\t%d\t%d\t%s\n" % (
                            old, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, real))):
        path = os.path.join(cache, name)
        kept = [l for l in open(path).read().splitlines(True) if not l.rstrip("\n").endswith("\t" + real)]
        with open(path, "w") as fh:
            fh.write("".join(kept) + line)
    second = start_server(str(tmp_path / "b"), ["--web-port", "0"])  # lacks the files: they are uploaded
    try:
        web = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in second.log if "gRPC-Web on" in l)
        for program, server in ((PY, second.target), (CS, web), (CPP, second.target)):
            done = subprocess.run([program, "freeze", model.directory, "-o", str(tmp_path / "x.pb"), "--server",
                                   server], capture_output=True, text=True, timeout=300, env=env)
            assert done.returncode == 1, (program, done.stderr)
            assert ("%s changed while it was being uploaded (is training still writing it?)" % shard) in done.stderr, \
                (program, done.stderr)
            assert not os.path.exists(str(tmp_path / "x.pb"))
    finally:
        assert stop_server(second) == 0


def test_a_forgotten_minus_o_is_named_the_same_way_in_every_client(tmp_path):
    """R14: `freeze models/mlp out/t.pb` (the -o forgotten): Python said "freeze needs -o OUT.pb",
    C# and C++ "freeze takes one SOURCE"."""
    from test_parity import CPP, PY

    model = models.dense(str(tmp_path / "m"), True)
    for args, line in (([model.directory, "t.pb"], "freeze needs -o OUT.pb"),
                       ([model.directory, "t.pb", "-o", "x.pb"], "freeze takes one SOURCE"),
                       ([], "freeze takes one SOURCE")):
        for program in (PY, CS, CPP):
            done = subprocess.run([program, "freeze", *args], capture_output=True, text=True, timeout=120,
                                  cwd=str(tmp_path))
            assert done.returncode == 2 and done.stderr.splitlines()[0].endswith(": " + line), (program, args,
                                                                                              done.stderr)


def test_an_output_on_a_full_disk_is_worded_the_same_way_by_the_python_client():
    """R14: Python said "...or write the graph elsewhere" where C# and C++ say "...or give -o another path"."""
    import errno

    from tffreeze import cli
    from tffreeze.client import write_error

    err = write_error(OSError(errno.ENOSPC, "No space left on device"), "/full/out.pb", field="output_path")
    assert cli._message(err).endswith("free some space there, or give -o another path"), cli._message(err)


def test_serve_names_a_swapped_certificate_and_key_and_one_port_given_twice(tmp_path):
    """R15: a certificate and key given the other way round gave "[SSL] PEM lib (_ssl.c:3874)",
    and --web-port equal to --port "Address already in use"."""
    import socket
    import sys

    import pki as pki_files

    tffreeze = os.path.join(os.path.dirname(sys.executable), "tffreeze")
    (tmp_path / "pki").mkdir()
    d = pki_files.make(tmp_path / "pki")
    swapped = subprocess.run([tffreeze, "serve", "--port", "0", "--data-dir", str(tmp_path / "a"), "--tls-cert",
                              str(d / "server.key"), "--tls-key", str(d / "server.pem")],
                             capture_output=True, text=True, timeout=120)
    assert swapped.returncode == 1 and "holds a private key and --tls-key" in swapped.stderr, swapped.stderr
    assert "give them the other way round" in swapped.stderr, swapped.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    same = subprocess.run([tffreeze, "serve", "--port", str(port), "--web-port", str(port), "--data-dir",
                           str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert same.returncode == 1 and "--web-port %d is the gRPC port (--port)" % port in same.stderr, same.stderr
