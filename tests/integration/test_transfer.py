"""Fewer passes and fewer calls: a big file is hashed while it is uploaded (one read,
not two), a client that hashed its files before freezes without asking which blobs
the server lacks, and a small graph comes inside the Freeze stream (no DownloadBlob)."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

import models
from tffreeze import FreezeClient, cache
from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2_grpc


def _unique(directory, seed, n=64):
    """A checkpoint no other test uploads (its weights come from ``seed``)."""
    import numpy as np

    from models import tf, tf1

    os.makedirs(directory, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, n], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(
            np.random.RandomState(seed).standard_normal((n, 4)).astype(np.float32)))
        tf.matmul(x, w, name="y")
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(s, os.path.join(directory, "model.ckpt"))
    return directory


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class _Counting:
    """Counts the calls made through a FreezeClient's stub (the real stub does the work)."""

    def __init__(self, client, monkeypatch):
        self.calls = []
        stub = client._stub
        for name in ("FindMissingBlobs", "UploadBlob", "Freeze", "DownloadBlob"):
            real = getattr(stub, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                self.calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(stub, name, counted)


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield service_pb2_grpc.FreezeServiceStub(channel)


def _missing(stub, sha, size):
    return list(stub.FindMissingBlobs(blob_pb2.FindMissingBlobsRequest(
        blobs=[blob_pb2.Digest(sha256=sha, size_bytes=size)])).missing)


@pytest.mark.parametrize("case", ["no digest", "empty sha256"])
def test_an_upload_without_its_digest_is_refused_and_stores_nothing(stub, case):
    """Every upload names its digest first (hashing while sending was removed: one client could use it)."""
    data = os.urandom(4096)
    sha = hashlib.sha256(data).hexdigest()
    msgs = {
        "no digest": [blob_pb2.UploadBlobRequest(offset=0, data=data)],
        "empty sha256": [blob_pb2.UploadBlobRequest(digest=blob_pb2.Digest(size_bytes=len(data)), offset=0, data=data)],
    }[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.UploadBlob(iter(msgs))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "digest" in err.value.details()
    assert _missing(stub, sha, len(data)) != []  # nothing stored


def test_a_new_file_is_hashed_once_and_its_digest_remembered(client, tmp_path, monkeypatch):
    d = _unique(str(tmp_path / "m"), 11)
    data = os.path.join(d, next(n for n in os.listdir(d) if ".data-" in n))
    hashed = []
    real_hash = cache._hash
    monkeypatch.setattr(cache, "_hash", lambda path: hashed.append(path) or real_hash(path))
    old = os.path.getmtime(data) - 60  # not racy: its digest may be remembered
    os.utime(data, (old, old))
    outcome = client.freeze(d, output_path=str(tmp_path / "a.pb"))
    assert hashed.count(os.path.realpath(data)) == 1  # hashed once, before it was sent
    assert outcome.upload.uploaded_bytes >= os.path.getsize(data)
    assert cache.digests.cached(data) == _sha(data)
    del hashed[:]
    client.freeze(d, output_path=str(tmp_path / "b.pb"))
    assert os.path.realpath(data) not in hashed  # unchanged: its digest came from the cache
    # The graph runs with the checkpoint's weights.
    import numpy as np

    (y,) = models.run_frozen((tmp_path / "a.pb").read_bytes(), {"x:0": np.ones((1, 64), np.float32)}, ["y:0"])
    w = np.random.RandomState(11).standard_normal((64, 4)).astype(np.float32)
    np.testing.assert_allclose(y, np.ones((1, 64), np.float32) @ w, rtol=1e-5)


def test_capabilities_name_the_transfer_features(client):
    caps = client.capabilities()
    assert {"assembly_recipe", "early_recipe", "inline_graph", "manifest", "plan"} <= set(caps.features)
    assert caps.max_inline_graph_bytes > 0 and caps.chunk_bytes > 0 and caps.max_list_depth >= 4
    assert caps.server_version and caps.tensorflow_version.startswith("2.")


def test_a_known_checkpoint_is_frozen_in_one_call(client, tmp_path, monkeypatch):
    d = _unique(str(tmp_path / "m"), 12)
    for name in os.listdir(d):  # not racy: digests remembered
        os.utime(os.path.join(d, name), (1_600_000_000, 1_600_000_000))
    first = client.freeze(d)
    counter = _Counting(client, monkeypatch)
    again = client.freeze(d)
    assert counter.calls == ["Freeze"]  # no FindMissingBlobs, no upload, the graph inline
    assert again.graph_bytes == first.graph_bytes and again.manifest == first.manifest
    assert "graph" not in again.manifest


def test_a_known_checkpoint_the_server_lost_is_uploaded_again(tmp_path, monkeypatch):
    """The client's digest cache says it saw the files; a fresh server lacks them: the
    optimistic freeze is refused with BLOBS_MISSING, the client uploads, freezes again."""
    from conftest import start_server, stop_server

    d = _unique(str(tmp_path / "m"), 13)
    for name in os.listdir(d):
        os.utime(os.path.join(d, name), (1_600_000_000, 1_600_000_000))
    for attempt in ("first", "fresh server"):
        srv = start_server(str(tmp_path / ("data-" + attempt.replace(" ", "-"))))
        try:
            with FreezeClient(srv.target) as c:
                counter = _Counting(c, monkeypatch)
                outcome = c.freeze(d, output_path=str(tmp_path / ("%s.pb" % attempt)))
                if attempt == "fresh server":
                    assert counter.calls[:2] == ["Freeze", "FindMissingBlobs"], counter.calls
                    assert "UploadBlob" in counter.calls and counter.calls[-1] == "Freeze"
                assert outcome.upload.uploaded_files == len(c.plan(d)[0])  # all, both times
        finally:
            assert stop_server(srv) == 0
    assert (tmp_path / "first.pb").read_bytes() == (tmp_path / "fresh server.pb").read_bytes()


def test_inline_graphs_and_quiet_freezes(client, stub, tmp_path):
    d = _unique(str(tmp_path / "m"), 14)
    client.freeze(d)  # uploaded
    files = client.plan(d)[0]
    req = dict(files=[freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
                      for f in files], options=freeze_pb2.FreezeOptions(outputs=["y"]))

    def kinds(**kw):
        events = list(stub.Freeze(freeze_pb2.FreezeRequest(**req, **kw)))
        return [e.WhichOneof("event") for e in events], events

    loud, _ = kinds()
    assert "progress" in loud and "graph" not in loud and loud[-1] == "result"
    quiet, events = kinds(quiet=True, inline_graph_bytes=1 << 20)
    assert quiet == ["graph", "manifest", "result"]
    graph, result = events[0].graph, events[2].result
    assert len(graph) == result.size_bytes and hashlib.sha256(graph).hexdigest() == result.sha256
    small, _ = kinds(quiet=True, inline_graph_bytes=result.size_bytes - 1)  # the limit is the client's
    assert small == ["manifest", "result"]


def test_a_graph_over_the_servers_inline_cap_is_downloaded(client, stub, tmp_path):
    from tffreeze_server.servicer import MAX_INLINE_GRAPH

    d = _unique(str(tmp_path / "m"), 15, n=(MAX_INLINE_GRAPH // 16) + 1024)  # 4 floats a row: > the cap
    whole = client.freeze(d)
    assert len(whole.graph_bytes) > MAX_INLINE_GRAPH
    files = client.plan(d)[0]
    events = list(stub.Freeze(freeze_pb2.FreezeRequest(
        files=[freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
               for f in files], options=freeze_pb2.FreezeOptions(outputs=["y"]), quiet=True,
        inline_graph_bytes=1 << 40)))
    assert [e.WhichOneof("event") for e in events] == ["manifest", "result"]


def _request(client, d, **kw):
    files = client.plan(d)[0]
    return freeze_pb2.FreezeRequest(
        files=[freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
               for f in files], options=freeze_pb2.FreezeOptions(outputs=["y"]), **kw)


def _follow(recipe, directory):
    out = b""
    for p in recipe.pieces:
        if p.WhichOneof("source") == "data":
            out += p.data
        else:
            with open(os.path.join(directory, p.file.path), "rb") as fh:
                fh.seek(p.file.offset)
                out += fh.read(p.length)
        assert len(out) and p.length > 0
    return out


def test_an_early_recipe_comes_before_the_graph_is_stored_and_rebuilds_it(client, stub, tmp_path):
    d = _unique(str(tmp_path / "m"), 16, n=1 << 15)  # a 512 KiB variable: most of the graph is file bytes
    whole = client.freeze(d, optimize=True)  # uploaded (another option set: the next call runs the engine)
    events = list(stub.Freeze(_request(client, d, accept_recipe=True, accept_early_recipe=True, quiet=True)))
    assert [e.WhichOneof("event") for e in events] == ["recipe", "manifest", "result"]
    recipe, result = events[0].recipe, events[2].result
    assert {p.WhichOneof("source") for p in recipe.pieces} == {"data", "file"}
    built = _follow(recipe, d)
    assert len(built) == result.size_bytes and hashlib.sha256(built).hexdigest() == result.sha256
    assert len(whole.graph_bytes) > 1 << 19
    # A result-cache hit (or a client without accept_early_recipe): the late recipe, ranges of the stored graph.
    late = list(stub.Freeze(_request(client, d, accept_recipe=True, accept_early_recipe=True, quiet=True)))
    kinds = [e.WhichOneof("event") for e in late]
    assert kinds == ["recipe", "manifest", "result"]
    assert {p.WhichOneof("source") for p in late[0].recipe.pieces} == {"graph_offset", "file"}


def test_the_client_assembles_while_the_server_writes(client, tmp_path):
    d = _unique(str(tmp_path / "m"), 17, n=1 << 15)
    outcome = client.freeze(d, output_path=str(tmp_path / "a.pb"))
    assert outcome.assembled and not outcome.downloaded
    assert client.freeze(d).graph_bytes == (tmp_path / "a.pb").read_bytes()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".part")] == []


def test_a_damaged_shard_fails_the_freeze_and_the_early_assembly_leaves_nothing(client, tmp_path):
    """The recipe comes before the crc32c checks: the client has started assembling when
    the freeze fails with DATA_LOSS; its half-built output is removed, OUT.pb untouched."""
    from tffreeze import DataLossError

    d = _unique(str(tmp_path / "m"), 18, n=1 << 15)
    data = os.path.join(d, next(n for n in os.listdir(d) if ".data-" in n))
    with open(data, "r+b") as fh:
        content = bytearray(fh.read())
        content[len(content) // 2] ^= 0xFF
        fh.seek(0)
        fh.write(bytes(content))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.pb").write_bytes(b"previous build")
    with pytest.raises(DataLossError) as err:
        client.freeze(d, output_path=str(out / "a.pb"))
    assert err.value.metadata["variable"] == "w"
    assert sorted(os.listdir(out)) == ["a.pb"] and (out / "a.pb").read_bytes() == b"previous build"
