"""Hostile uploads through the public API (real server, port 0): nothing from an
upload is imported or run when it holds ops outside the positive list, no file is
read or written on the server, and the store's blobs stay intact (re-hashed)."""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest

import attacks
import models
import proctree
from tffreeze import InvalidArgumentError

SECRET = b"SECRET-7\n"


def _store_intact(data_dir: str) -> int:
    """Every stored blob still hashes to its name; returns how many were checked."""
    checked = 0
    for root, _, files in os.walk(os.path.join(data_dir, "blobs")):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                assert hashlib.sha256(fh.read()).hexdigest() == name, "blob %s was modified" % name
            checked += 1
    return checked


@pytest.fixture()
def secret(tmp_path):
    """A server file the client cannot see: it is written after the model is built,
    so nothing in the upload was computed from it."""
    return str(tmp_path / "server-secret.txt")


def _write_secret(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(SECRET)


def _refused(client, directory, **kw) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(directory, **kw)
    assert err.value.reason == "ERROR_REASON_UNSAFE_OP", err.value.message
    assert len(err.value.message) < 2000
    return err.value


@pytest.mark.parametrize("name", sorted(attacks.LEAKS))
def test_file_reads_are_refused_before_import(client, server, secret, tmp_path, name):
    """Finding 1: a graph computing shapes or values from a server file is never
    imported (shape inference would evaluate the read); inspect describes it without
    importing and warns."""
    directory = attacks.LEAKS[name](str(tmp_path / name), secret)
    _write_secret(secret)
    err = _refused(client, directory)
    assert "ReadFile" in err.metadata["ops"] and "safe_ops.txt" in err.message
    assert SECRET.decode().strip() not in err.message
    err = _refused(client, directory, verify=True)
    report = client.inspect(directory)
    assert any("would be refused" in w and "ReadFile" in w for w in report.warnings)
    shapes = [list(v.number_value for v in t.shape.values) for t in report.outputs if t.HasField("shape")]
    assert not any(s[:4] == list(SECRET[:4]) for s in shapes)
    assert _store_intact(server.data_dir) > 0


def test_glob_and_named_outputs_are_refused(client, tmp_path):
    directory = attacks.glob_leak(str(tmp_path / "glob"), "/etc/*")
    err = _refused(client, directory, outputs=["out"])
    assert err.metadata["ops"] == "MatchingFiles" and err.metadata["nodes"] == "MatchingFiles"


@pytest.mark.parametrize("build", [attacks.write_on_run, attacks.print_to_file])
def test_file_writes_are_refused_with_and_without_verify(client, server, tmp_path, build):
    """Finding 2: PrintV2 to a file and WriteFile on the outputs' path are refused;
    nothing is written, with or without verify."""
    target = str(tmp_path / "written.txt")
    directory = build(str(tmp_path / "model"), target)
    if os.path.exists(target):
        os.unlink(target)  # building the model in the test may have written it
    for verify in (False, True):
        err = _refused(client, directory, verify=verify)
        assert ("PrintV2 to file://" in err.message) or ("WriteFile" in err.message)
    assert not os.path.exists(target)
    assert _store_intact(server.data_dir) > 0


def test_saved_model_initializer_writing_files_is_refused(client, server, tmp_path):
    """Finding 3: a TF2 SavedModel whose resource initializer writes a file (run by
    TensorFlow's loader) is refused before loading; nothing is written, the
    store's blobs re-hash to their names."""
    target = str(tmp_path / "pwned.txt")
    directory = attacks.saved_model_writer(str(tmp_path / "sm"), target)
    err = _refused(client, directory)
    assert "WriteFile" in err.message and "SavedModel" in err.message
    assert not os.path.exists(target)
    assert _store_intact(server.data_dir) > 0


def test_ordinary_saved_model_still_freezes(client, tmp_path):
    """The saver functions every TF2 SavedModel carries (SaveV2/RestoreV2) are not the
    model's: they are not run by the loader and do not refuse it."""
    model = models.saved_model_v2(str(tmp_path / "sm2"))
    outcome = client.freeze(model.directory, verify=True)
    assert {o["name"] for o in outcome.manifest["outputs"]}


def test_without_a_sandbox_what_would_run_the_upload_is_refused(tmp_path):
    """A server without its sandbox freezes Saver checkpoints (nothing of them runs)
    but refuses what would run the upload: TF2 SavedModels (loading runs their
    functions) and verify."""
    from conftest import start_server, stop_server
    from tffreeze import FailedPreconditionError, FreezeClient

    bare = start_server(str(tmp_path / "data"), ["--sandbox", "none"])
    try:
        assert any("no sandbox" in line for line in bare.log)
        with FreezeClient(bare.target) as c:
            ckpt = models.dense(str(tmp_path / "dense"), True)
            assert [o["name"] for o in c.freeze(ckpt.directory).manifest["outputs"]] == ["y:0"]
            saved = models.saved_model_v2(str(tmp_path / "sm2"))
            for directory, kw in ((saved.directory, {}), (ckpt.directory, {"verify": True})):
                with pytest.raises(FailedPreconditionError) as err:
                    c.freeze(directory, **kw)
                assert err.value.reason == "ERROR_REASON_SANDBOX_UNAVAILABLE"
                assert "bubblewrap" in err.value.message
    finally:
        assert stop_server(bare) == 0


def test_index_declaring_more_than_its_data_is_refused_before_reading(client, tmp_path):
    """Finding 5: a small .index declaring a 2^27-element string tensor (one element
    stored) is INVALID_ARGUMENT from the index alone; the worker does not allocate it."""
    directory = attacks.index_bomb(str(tmp_path / "bomb"))
    assert sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)) < 1 << 20
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(directory)
    assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"
    assert "bomb" in err.value.message and "134217728" in err.value.message


def test_graph_limits_refuse_before_work(tmp_path):
    """Finding 5: node count, function nesting/recursion and graph file size are
    checked before any analysis; a 600k-node graph (over the default 500k) is
    refused with the worker's peak memory under the documented 2 GiB budget."""
    from conftest import start_server, stop_server
    from tffreeze import FreezeClient, ResourceExhaustedError

    srv = start_server(str(tmp_path / "data"))
    try:
        with FreezeClient(srv.target) as c:
            wide = attacks.wide_graph(str(tmp_path / "wide"), 600_000)
            with pytest.raises(ResourceExhaustedError) as err:
                c.freeze(wide, timeout=120)
            assert err.value.reason == "ERROR_REASON_GRAPH_TOO_LARGE" and "--max-graph-nodes" in err.value.message
            peak = max(proctree.peak_rss_mib(p) for p in proctree.descendants(srv.proc.pid))
            assert 0 < peak < 2048, peak  # MiB
            with pytest.raises(InvalidArgumentError) as err:
                c.freeze(attacks.recursive_function(str(tmp_path / "rec")), outputs=["looped"])
            assert "calls itself" in err.value.message
    finally:
        assert stop_server(srv) == 0
    small = start_server(str(tmp_path / "data2"), ["--max-graph-file-bytes", "2000"])
    try:
        with FreezeClient(small.target) as c:
            with pytest.raises(ResourceExhaustedError) as err:
                c.freeze(models.dense(str(tmp_path / "dense"), True).directory)
            assert "--max-graph-file-bytes" in err.value.message and err.value.metadata["limit"] == "2000"
    finally:
        assert stop_server(small) == 0


def test_resolution_of_200k_sinks_is_refused_within_the_call(client, tmp_path):
    """Finding 5: automatic output resolution is linear in the graph: 200k sinks are
    refused as ambiguous well within a 60 s deadline (they took over 300 s)."""
    from tffreeze import FailedPreconditionError

    directory = attacks.wide_graph(str(tmp_path / "sinks"), 200_000)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(directory, timeout=60)
    assert err.value.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS" and len(err.value.message) < 4000


def _chunk(stub, data: bytes, size: int, sha: str, offset: int, finish: bool, upload_id: str):
    from tffreeze_api.v1 import blob_pb2

    return stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(
        digest=blob_pb2.Digest(sha256=sha, size_bytes=size), offset=offset, data=data, finish_write=finish,
        upload_id=upload_id), timeout=30)


def test_resumable_uploads_belong_to_their_uploader_count_against_the_cap_and_expire(tmp_path):
    """Finding 7: another client's finish_write cannot discard a victim's partial
    upload; partial uploads reserve their declared size (12 x 1 MiB against a 2 MiB
    cap: the third is refused before a byte is written); idle ones expire, also
    across a restart."""
    import grpc

    from conftest import start_server, stop_server
    from tffreeze_api.v1 import service_pb2_grpc

    data = os.urandom(1 << 20)
    sha, size = hashlib.sha256(data).hexdigest(), len(data)
    srv = start_server(str(tmp_path / "data"), ["--max-store-bytes", str(2 << 20), "--partial-upload-ttl", "2"])
    try:
        with grpc.insecure_channel(srv.target) as channel:
            stub = service_pb2_grpc.FreezeServiceStub(channel)
            assert _chunk(stub, data[:1000], size, sha, 0, False, "victim").committed_size == 1000
            with pytest.raises(grpc.RpcError) as err:  # the attacker's "last chunk" is its own upload
                _chunk(stub, b"x" * 10, size, sha, 1000, True, "attacker")
            assert err.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
            done = _chunk(stub, data[1000:], size, sha, 1000, True, "victim")
            assert done.complete and done.committed_size == size

            others = [os.urandom(1 << 20) for _ in range(12)]
            refused = 0
            for i, blob in enumerate(others):
                try:
                    _chunk(stub, blob[:10], len(blob), hashlib.sha256(blob).hexdigest(), 0, False, "u%d" % i)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "expire" in exc.details()
                    refused += 1
            # one 1 MiB reservation fits beside the victim's 1 MiB blob in the 2 MiB cap; the
            # others would need that blob evicted, and reservations never evict
            assert refused == 11
            partial = os.path.join(srv.data_dir, "partial")
            assert len(os.listdir(partial)) == 1 and sum(
                os.path.getsize(os.path.join(partial, f)) for f in os.listdir(partial)) == 10
            assert _store_intact(srv.data_dir) == 1
    finally:
        assert stop_server(srv) == 0
    time.sleep(2.5)
    again = start_server(str(tmp_path / "data"), ["--max-store-bytes", str(2 << 20), "--partial-upload-ttl", "2"])
    try:
        assert os.listdir(os.path.join(again.data_dir, "partial")) == []  # expired across the restart
        assert _store_intact(again.data_dir) == 1
    finally:
        assert stop_server(again) == 0


def test_grpc_web_freeze_stops_when_the_http_client_goes(tmp_path):
    """Finding 4: a gRPC-Web freeze whose HTTP client disconnects stops its task (its
    processes are killed; the warm worker serves on) instead of running to the end."""
    import socket
    import struct

    from conftest import start_server, stop_server
    from tffreeze import FreezeClient
    from tffreeze.source import local_file
    from tffreeze_api.v1 import blob_pb2, freeze_pb2

    directory = attacks.wide_graph(str(tmp_path / "slow"), 300_000, chain=True)  # a long freeze
    srv = start_server(str(tmp_path / "data"), ["--web-port", "0"])
    try:
        files = [local_file(n, os.path.join(directory, n)) for n in sorted(os.listdir(directory))]
        with FreezeClient(srv.target) as c:
            c.upload(files)
            c.health()
        request = freeze_pb2.FreezeRequest()
        for f in files:
            request.files.add(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
        body = request.SerializeToString()
        body = struct.pack(">BI", 0, len(body)) + body
        port = int(next(re.search(r"gRPC-Web on http://\S+:(\d+)\)", l).group(1) for l in srv.log
                        if "gRPC-Web on" in l))
        deadline = time.monotonic() + 120
        while not set(proctree.workers(srv.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        before = set(proctree.workers(srv.proc.pid))
        assert len(before) == 1
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /tffreeze.v1.FreezeService/Freeze HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Content-Type: application/grpc-web+proto\r\nContent-Length: %d\r\n\r\n" % (port, len(body)) + body)
        received = b""
        while b"loading" not in received and b"reading" not in received and len(received) < 100000:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        assert b"200 OK" in received  # the freeze is under way on the worker
        time.sleep(1)
        tasks = set(proctree.split_workers(srv.proc.pid)[1])
        assert tasks  # the task's own process (and the next task's, prepared and waiting), below the warm worker
        sock.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(proctree.workers(srv.proc.pid)) >= tasks:
            time.sleep(0.2)
        assert not set(proctree.workers(srv.proc.pid)) >= tasks, "the task kept running the abandoned freeze"
        assert set(proctree.split_workers(srv.proc.pid)[0]) == before  # the warm worker was kept
        with FreezeClient(srv.target) as c:  # and the server goes on serving
            assert c.freeze(models.dense(str(tmp_path / "d"), True).directory).manifest["outputs"][0]["name"] == "y:0"
    finally:
        assert stop_server(srv) == 0


def test_a_freeze_on_a_full_disk_is_resource_exhausted(tmp_path):
    """Finding 6: the server's data directory on a full file system (a 6 MiB tmpfs in a
    private mount namespace, filled by uploads): the freeze is RESOURCE_EXHAUSTED with
    no server path in the message, never INTERNAL, and the server keeps serving."""
    import shutil

    from conftest import start_server, stop_server
    from tffreeze import FreezeClient, ResourceExhaustedError
    from tffreeze.source import local_file

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    data = str(tmp_path / "small-disk")
    os.makedirs(data)
    srv = start_server(data, wrapper=["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=6m tmpfs "$0" && exec "$@"',
                                      data])
    target = srv.target
    try:
        model = models.dense(str(tmp_path / "m"), True)
        with FreezeClient(target) as c:
            c.upload([local_file(n, os.path.join(model.directory, n)) for n in os.listdir(model.directory)])
            filled = 0
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):  # fill what is left, coarse to fine
                while True:
                    path = tmp_path / ("filler-%d" % filled)
                    path.write_bytes(os.urandom(size))
                    filled += 1
                    try:
                        c.upload([local_file(path.name, str(path))])
                    except ResourceExhaustedError:
                        break
            with pytest.raises(ResourceExhaustedError) as err:
                c.freeze(model.directory)
            assert "disk is full" in err.value.message and data not in err.value.message
            assert c.health() == "SERVING"
    finally:
        assert stop_server(srv) == 0
