"""Findings of the eleventh first-week trial (issue 34), each reproduced in every client it
concerns."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import models
from test_parity import _run, built  # noqa: F401  (built: the clients, made once)


def _sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _rewrite_in_place(target: str, source: str) -> None:
    """``target`` gets ``source``'s bytes through the same inode, its mtime set back: what GNU tar
    does unpacking a reproducible release (--mtime) over the last one."""
    st = os.stat(target)
    with open(source, "rb") as src, open(target, "r+b") as dst:
        dst.write(src.read())
        dst.truncate()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(target).st_ino == st.st_ino and os.stat(target).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
def test_a_checkpoint_rewritten_in_place_with_its_mtime_set_back_is_read_again(web_server, tmp_path, client):
    """Finding 1 (MISLEAD): the digest cache keyed on size and mtime (C#: not even the inode)
    froze the old release's weights, exit 0. The stamp now holds the ctime, which no tool sets back."""
    release_a = models.dense(str(tmp_path / "rel"), True, steps=[1, 2]).directory
    release_b = models.dense(str(tmp_path / "b"), True, steps=[1, 2], mutate=True).directory
    cache = str(tmp_path / "cache")
    os.makedirs(tmp_path / "a-out")
    first = _run(client, "freeze", release_a, [], str(tmp_path / "a-out"), web_server, cache=cache)
    assert first.returncode == 0, first.stderr
    graph_a = _sha(str(tmp_path / "a-out" / (client + ".pb")))
    os.makedirs(tmp_path / "b-out")
    expected = _run(client, "freeze", release_b, [], str(tmp_path / "b-out"), web_server, cache="off")
    assert expected.returncode == 0, expected.stderr
    graph_b = _sha(str(tmp_path / "b-out" / (client + ".pb")))
    assert graph_a != graph_b
    for name in sorted(os.listdir(release_a)):
        if name.startswith("model.ckpt-2.") and not name.endswith(".meta"):
            assert os.path.getsize(os.path.join(release_a, name)) == os.path.getsize(os.path.join(release_b, name))
            _rewrite_in_place(os.path.join(release_a, name), os.path.join(release_b, name))
    again = _run(client, "freeze", release_a, [], str(tmp_path / "a-out"), web_server, cache=cache)
    assert again.returncode == 0, again.stderr
    assert _sha(str(tmp_path / "a-out" / (client + ".pb"))) == graph_b, again.stdout + again.stderr


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
def test_an_output_changed_in_place_is_not_taken_as_holding_the_graph(web_server, tmp_path, client):
    """Finding 1, outputs: a byte of OUT.pb flipped with its mtime set back was reported as
    "already held this graph" while the file held other bytes."""
    src = models.dense(str(tmp_path / "m"), True).directory
    cache = str(tmp_path / "cache")
    out = str(tmp_path / "out")
    os.makedirs(out)
    first = _run(client, "freeze", src, [], out, web_server, cache=cache)
    assert first.returncode == 0, first.stderr
    graph = os.path.join(out, client + ".pb")
    right = _sha(graph)
    st = os.stat(graph)
    with open(graph, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _sha(graph) != right
    again = _run(client, "freeze", src, [], out, web_server, cache=cache)
    assert again.returncode == 0, again.stderr
    assert _sha(graph) == right, again.stdout + again.stderr


@pytest.fixture(scope="module")
def other_host(tmp_path_factory):
    """A TLS server whose CA-signed certificate names only other.example: reached as localhost."""
    import re

    import pki
    from conftest import start_server, stop_server

    d = pki.make(tmp_path_factory.mktemp("pki-other"), san="DNS:other.example")
    srv = start_server(str(tmp_path_factory.mktemp("other-data")),
                       ["--web-port", "0", "--tls-cert", str(d / "server.pem"), "--tls-key", str(d / "server.key")])
    srv.web_url = next(re.search(r"gRPC-Web on (https://\S+?)\)", line).group(1) for line in srv.log
                       if "gRPC-Web on" in line).replace("127.0.0.1", "localhost")
    srv.ca = str(d / "ca.pem")
    yield srv
    assert stop_server(srv) == 0


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
def test_a_certificate_for_another_host_is_refused_and_said_so(other_host, tmp_path, client):
    """Findings 2 and 3: tffreeze-cs sent the checkpoint (and a token) to a server whose certificate
    names another host; Python and C++ refused with "cannot reach ... Start one with tffreeze serve"."""
    import subprocess

    from test_parity import CPP, CS, PY

    src = models.dense(str(tmp_path / "m"), True).directory
    port = other_host.target.rsplit(":", 1)[1]
    argv = {"py": [PY, "freeze", src, "--server", "localhost:" + port],
            "cpp": [CPP, "freeze", src, "--server", "localhost:" + port],
            "cs": [CS, "freeze", src, "--server", other_host.web_url]}[client]
    out = subprocess.run(argv + ["--ca", other_host.ca, "-o", str(tmp_path / "m.pb")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert not os.path.exists(tmp_path / "m.pb")
    words = " ".join(out.stderr.split())
    assert "certificate does not name localhost" in words and "subjectAltName" in words, words
    assert "Start one with" not in words and "Pass --ca" not in words, words


def test_two_servers_that_share_no_store_are_said_to(tmp_path):
    """Finding 5: `--server A,B` naming two independent servers failed with BLOBS_MISSING and
    "Upload them (FindMissingBlobs, then UploadBlob)", which a command-line user cannot do."""
    import subprocess

    from conftest import start_server, stop_server
    from test_parity import PY

    a, b = start_server(str(tmp_path / "a")), start_server(str(tmp_path / "b"))
    try:
        failed = []
        for i in range(4):
            src = models.dense(str(tmp_path / ("m%d" % i)), True, steps=[i + 1]).directory
            out = subprocess.run([PY, "freeze", src, "--server", "%s,%s" % (a.target, b.target), "-o",
                                  str(tmp_path / ("m%d.pb" % i))], capture_output=True, text=True, timeout=300)
            if out.returncode:
                failed.append(" ".join(out.stderr.split()))
        for words in failed:
            assert "must be replicas over one store (tffreeze serve --store); name one server" in words, words
            assert "Upload them" not in words, words
    finally:
        assert stop_server(a) == 0 and stop_server(b) == 0


def test_text_tensors_run_in_python_and_are_refused_with_the_way_out_elsewhere(tmp_path):
    """Finding 6: a string output crashed Python's run writing the .npy (a traceback), and C#/C++
    refused text without saying what runs it."""
    import subprocess

    import numpy as np

    from test_parity import CPP, CS, PY

    tf, tf1 = models.tf, models.tf1
    g = tf.Graph()
    with g.as_default():
        words = tf1.placeholder(tf.string, [None], name="words")
        names = tf.constant([b"cat", b"dog", b"bird"])
        tf.gather(names, tf.strings.length(words) % 3, name="label")
    graph = tmp_path / "text.pb"
    graph.write_bytes(g.as_graph_def().SerializeToString())
    np.save(tmp_path / "words.npy", np.array(["a", "bb", "ccc"], dtype=str))
    np.save(tmp_path / "objects.npy", np.array(["a", "bb"], dtype=object), allow_pickle=True)
    out = subprocess.run([PY, "run", str(graph), "--input", "words=%s" % (tmp_path / "words.npy"), "--output",
                          "label=%s" % (tmp_path / "label.npy")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "label.npy").tolist() == [b"dog", b"bird", b"cat"]
    out = subprocess.run([PY, "run", str(graph), "--input", "words=%s" % (tmp_path / "objects.npy"), "--output",
                          "label"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "np.array(words, dtype=str)" in out.stderr and "Traceback" not in out.stderr, out.stderr
    for binary in (CS, CPP):
        out = subprocess.run([binary, "run", str(graph), "--input", "words=%s" % (tmp_path / "words.npy"), "--output",
                              "label"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 1 and "`tffreeze run`, the Python client" in out.stderr, (binary, out.stderr)
        assert "Exception" not in out.stderr, out.stderr


def test_a_store_folder_removed_under_a_running_server_is_made_again(tmp_path):
    """Finding 23: `rm -rf` of the store's folder while the server ran made every freeze fail with
    INTERNAL (FileNotFoundError) until a restart. The upload's folders are made again; the
    workers' task folder cannot be, and that is said with the fix (a restart)."""
    import subprocess

    from conftest import start_server, stop_server
    from test_parity import PY

    data = tmp_path / "data"
    srv = start_server(str(data))
    try:
        first = models.dense(str(tmp_path / "a"), True).directory
        out = subprocess.run([PY, "freeze", first, "--server", srv.target, "-o", str(tmp_path / "a.pb")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        shutil.rmtree(data)
        second = models.dense(str(tmp_path / "b"), False, steps=[7]).directory
        for source, name in ((second, "b"), (first, "a2")):  # its workers cannot see a new folder: said so
            out = subprocess.run([PY, "freeze", source, "--server", srv.target, "-o", str(tmp_path / (name + ".pb"))],
                                 capture_output=True, text=True, timeout=300)
            words = " ".join(out.stderr.split())
            assert out.returncode == 1 and "INTERNAL" not in words, (name, words, "".join(srv.log[-30:]))
            assert "was removed or replaced while the server ran" in words and "restart the server" in words, words
            assert "(STORE_UNAVAILABLE) [UNAVAILABLE]" in words, words
    finally:
        assert stop_server(srv) == 0
