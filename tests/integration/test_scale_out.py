"""Several replicas over one shared S3 store (--store s3://...), against a real S3 API
served on loopback by moto's standalone server; and the Prometheus metrics."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
import urllib.request

import grpc
import pytest

import models
import s3moto
from conftest import start_server, stop_server
from s3moto import BUCKET, Moto, free_port
from tffreeze import FreezeClient
from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2_grpc

@pytest.fixture(scope="module")
def moto():
    s3moto.credentials()  # the replicas (children) inherit them, as from a k8s Secret
    m = Moto().start()
    m.s3().create_bucket(Bucket=BUCKET)
    yield m
    m.stop()


def _replica(tmp_path_factory, moto, name, prefix="shared", extra=()):
    return start_server(str(tmp_path_factory.mktemp(name)), ["--store", "s3://%s/%s" % (BUCKET, prefix),
                                                             "--s3-endpoint", moto.url, *extra])


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, moto):
    reps = [_replica(tmp_path_factory, moto, "replica-%s" % n) for n in "abc"]
    yield reps
    for r in reps:
        if r.proc.poll() is None:
            stop_server(r)


def _stub(target):
    channel = grpc.insecure_channel(target)
    return channel, service_pb2_grpc.FreezeServiceStub(channel)


def _digest(path):
    data = open(path, "rb").read()
    return blob_pb2.Digest(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)), data


def test_an_upload_through_one_replica_is_found_frozen_and_cached_by_the_others(replicas, server, tmp_path):
    a, b, c = replicas
    model = models.dense(str(tmp_path / "m"), True)
    with FreezeClient(a.target) as client:
        stats = client.upload(client.plan(model.directory)[0])
    assert stats.uploaded_files == 3
    with FreezeClient(b.target) as client:  # B finds every blob A received: nothing re-sent
        files = client.plan(model.directory)[0]
        assert client.upload(files).uploaded_bytes == 0
        on_b = client.freeze(model.directory)
    with FreezeClient(server.target) as local:  # the same freeze on a local-store server
        assert on_b.graph_bytes == local.freeze(model.directory).graph_bytes
    events = []
    with FreezeClient(a.target) as client:  # A answers from B's result: a cache hit
        again = client.freeze(model.directory, progress=lambda kind, d, t, msg: events.append(msg))
    assert again.graph_bytes == on_b.graph_bytes and any("cached result" in e for e in events), events
    with FreezeClient(c.target) as client:  # and C downloads what B froze
        assert client.download(on_b.result.sha256, on_b.result.size_bytes) == on_b.graph_bytes


def test_a_resumable_upload_started_on_one_replica_finishes_on_another(replicas, tmp_path):
    a, b, c = replicas
    blob = os.urandom(3 * 1024 * 1024 + 17)
    digest = blob_pb2.Digest(sha256=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob))
    chunk = 1 << 20
    for i, offset in enumerate(range(0, len(blob), chunk)):
        target = (a, b)[i % 2].target  # alternate replicas
        channel, stub = _stub(target)
        with channel:
            resp = stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(
                digest=digest, offset=offset, data=blob[offset:offset + chunk], upload_id="resume-1",
                finish_write=offset + chunk >= len(blob)), timeout=60)
        assert resp.committed_size == min(offset + chunk, len(blob))
    assert resp.complete
    # A wrong offset is told where to resume, on any replica.
    other = os.urandom(2 * chunk)
    d2 = blob_pb2.Digest(sha256=hashlib.sha256(other).hexdigest(), size_bytes=len(other))
    channel, stub = _stub(a.target)
    with channel:
        stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(digest=d2, offset=0, data=other[:chunk], upload_id="r2"))
    channel, stub = _stub(c.target)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(digest=d2, offset=0, data=other[:chunk], upload_id="r2"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "resume at 1048576" in err.value.details()
        got = b"".join(r.data for r in stub.DownloadBlob(blob_pb2.DownloadBlobRequest(digest=digest), timeout=60))
    assert got == blob  # C serves what A and B assembled


def test_a_client_given_every_replica_completes_every_freeze_when_one_dies(tmp_path_factory, moto, tmp_path):
    reps = [_replica(tmp_path_factory, moto, "kill-%s" % n, prefix="kill", extra=["--no-result-cache"]) for n in "xyz"]
    try:
        kinds = [models.dense(str(tmp_path / ("d%d" % i)), True, steps=[i + 1]) for i in range(4)]
        kinds.append(models.loop_and_cond(str(tmp_path / "loop"), True, False))
        targets = ",".join(r.target for r in reps)
        results = []
        with FreezeClient(targets, timeout=300) as client:
            for i, model in enumerate(kinds * 2):
                if i == 3:
                    reps[1].proc.send_signal(signal.SIGKILL)  # mid-run, no warning
                    reps[1].proc.wait(30)
                results.append(client.freeze(model.directory))
        assert len(results) == 10 and all(r.graph_bytes for r in results)
        for first, second in zip(results[:5], results[5:]):  # the same freeze, on whichever replica
            assert first.graph_bytes == second.graph_bytes
    finally:
        for r in reps:
            if r.proc.poll() is None:
                stop_server(r)
    # Nothing in the bucket is partial or corrupt: every blob hashes to its name, every
    # cached result parses and names a stored blob.
    s3 = moto.s3()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="kill/")
            for o in page.get("Contents", [])]
    blobs = [k for k in keys if k.startswith("kill/blobs/")]
    assert blobs and all(k.startswith(("kill/blobs/", "kill/partial/", "kill/results/")) for k in keys), keys
    for key in blobs:
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1], key
    names = {k.rsplit("/", 1)[1] for k in blobs}
    for key in (k for k in keys if k.startswith("kill/results/") and not k.endswith(".recipe")):
        entry = freeze_pb2.FreezeResponse.FromString(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert entry.result.sha256 in names


def test_health_follows_the_shared_store(tmp_path_factory, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    own = Moto().start()
    own.s3().create_bucket(Bucket=BUCKET)
    rep = start_server(str(tmp_path_factory.mktemp("health")), ["--store", "s3://%s/h" % BUCKET, "--s3-endpoint", own.url])

    def status(service=""):
        channel = grpc.insecure_channel(rep.target)
        with channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=10).status

    def wait_for(want):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status() != want:
            time.sleep(0.3)
        return status()

    try:
        assert wait_for(health_pb2.HealthCheckResponse.SERVING) == health_pb2.HealthCheckResponse.SERVING
        own.stop()
        assert wait_for(health_pb2.HealthCheckResponse.NOT_SERVING) == health_pb2.HealthCheckResponse.NOT_SERVING
        # the liveness probe's name does not follow the store: an outage restarts no pod
        assert status("liveness") == health_pb2.HealthCheckResponse.SERVING
        model = models.dense(str(tmp_path / "m"), True)
        with FreezeClient(rep.target, timeout=60) as client:  # a call meanwhile: UNAVAILABLE, naming the store
            with pytest.raises(Exception) as err:
                client.freeze(model.directory)
        assert getattr(err.value, "code", "") == "UNAVAILABLE" and "shared store" in str(err.value)
        own.start()
        own.s3().create_bucket(Bucket=BUCKET)
        assert wait_for(health_pb2.HealthCheckResponse.SERVING) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert stop_server(rep) == 0
        if own.proc.poll() is None:
            own.stop()


def _scrape(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


def test_metrics_count_calls_bytes_cache_and_stages(tmp_path_factory, tmp_path):
    port = free_port()
    srv = start_server(str(tmp_path_factory.mktemp("metrics")), ["--metrics-port", str(port)])
    try:
        assert "metrics on http://127.0.0.1:%d/metrics" % port in "".join(srv.log)
        before = _scrape(port)
        model = models.dense(str(tmp_path / "m"), True)
        with FreezeClient(srv.target) as client:
            client.freeze(model.directory)
            client.freeze(model.directory)  # a cache hit
            with pytest.raises(Exception):
                client.freeze(model.directory, outputs=["nope"])
        after = _scrape(port)
    finally:
        assert stop_server(srv) == 0

    def moved(name):
        return after.get(name, 0) - before.get(name, 0)

    assert moved('tffreeze_calls_total{code="OK",method="Freeze"}') == 2
    assert moved('tffreeze_calls_total{code="INVALID_ARGUMENT",method="Freeze"}') == 1
    # The first freeze asks which blobs are missing; a later one whose digests all came from the
    # client's digest cache (files older than 2 s by then) freezes straight away.
    assert 1 <= moved('tffreeze_calls_total{code="OK",method="FindMissingBlobs"}') <= 3
    assert moved("tffreeze_uploaded_bytes_total") == sum(os.path.getsize(os.path.join(model.directory, f))
                                                        for f in os.listdir(model.directory) if f != "checkpoint")
    assert moved('tffreeze_result_cache_total{outcome="hit"}') == 1
    assert moved('tffreeze_result_cache_total{outcome="miss"}') == 2  # the first freeze and the failing one
    assert moved("tffreeze_freeze_seconds_count") == 1
    assert moved('tffreeze_freeze_stage_seconds_count{stage="STAGE_LOADING_GRAPH"}') == 1
    assert "tffreeze_queue_depth" in after and "tffreeze_workers" in after


def test_every_client_takes_several_addresses_and_skips_a_dead_one(tmp_path_factory, moto, tmp_path):
    """--server with several replicas in the Python, C++ and C# clients: one address is dead
    (nothing listens there), every freeze still completes, with the same bytes."""
    reps = [_replica(tmp_path_factory, moto, "multi-%s" % n, prefix="multi", extra=["--web-port", "0"]) for n in "pq"]
    dead = free_port()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        webs = [next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in r.log if "gRPC-Web on" in l)
                for r in reps]
        model = models.dense(str(tmp_path / "m"), True)
        grpc_targets = ",".join(["127.0.0.1:%d" % dead] + [r.target for r in reps])
        with FreezeClient(grpc_targets, timeout=120) as client:
            want = [client.freeze(model.directory).graph_bytes for _ in range(3)]
        assert want[0] == want[1] == want[2]
        cpp = os.path.join(root, "client_cpp", "bin", "tffreeze-cpp")
        if os.path.exists(cpp) or os.environ.get("TFFREEZE_REQUIRE_CPP") == "1":
            out = subprocess.run([cpp, "freeze", model.directory, "-o", str(tmp_path / "cpp.pb"), "--server",
                                  grpc_targets, "--timeout", "120"], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
            assert (tmp_path / "cpp.pb").read_bytes() == want[0]
        cs = os.path.join(root, "client_csharp", "bin", "tffreeze-cs")
        if not os.path.exists(cs):
            subprocess.run(["make", "-s", "-C", root, "csharp"], check=True, capture_output=True)
        out = subprocess.run([cs, "freeze", model.directory, "-o", str(tmp_path / "cs.pb"), "--server",
                              ",".join(["http://127.0.0.1:%d" % dead] + webs)], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "cs.pb").read_bytes() == want[0]
    finally:
        for r in reps:
            stop_server(r)
