"""Issue 32, finding 4: the --health-socket answers health checks and nothing else.

A server that requires client certificates (mutual TLS) and no token, started with
--health-socket, used to answer the whole FreezeService on that plaintext socket to anyone
who could open it (mode 0755). Here the same attack is replayed: every FreezeService call on
the socket is UNIMPLEMENTED, health Check and Watch answer, reflection lists only health,
and the socket file is 0600 (or 0660 for --health-socket-group)."""

from __future__ import annotations

import grp
import hashlib
import os
import stat
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import models
import pki as pki_files
from conftest import BIN, start_server, stop_server
from tffreeze import FreezeClient
from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2, service_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, a client certificate (both signed by it)."""
    return pki_files.make(tmp_path_factory.mktemp("health-pki"), days=1)


@pytest.fixture(scope="module")
def mtls_server(certificates, tmp_path_factory):
    """The finding's server: client certificates required, no token, a health socket."""
    data = tmp_path_factory.mktemp("health-mtls")
    sock = str(data / "health.sock")
    srv = start_server(str(data), ["--tls-cert", str(certificates / "server.pem"),
                                   "--tls-key", str(certificates / "server.key"),
                                   "--tls-client-ca", str(certificates / "ca.pem"), "--health-socket", sock])
    srv.health_socket = sock
    yield srv
    assert stop_server(srv) == 0, "".join(srv.log[-30:])
    assert not os.path.exists(sock), "the health socket outlived its server"


def _client(srv, certificates):
    return FreezeClient(srv.target, ca=str(certificates / "ca.pem"), client_cert=str(certificates / "client.pem"),
                        client_key=str(certificates / "client.key"))


def _unimplemented(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (err.value.code(), err.value.details())


def test_the_socket_answers_no_freeze_service_call(mtls_server, certificates, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    with _client(mtls_server, certificates) as c:  # what a client with a certificate gets on the port
        outcome = c.freeze(model.directory)
        files, plan = c.plan(model.directory)
    graph_sha = hashlib.sha256(outcome.graph_bytes).hexdigest()
    assert graph_sha == outcome.result.sha256
    digests = [blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size) for f in files]
    sources = [freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
               for f in files]
    data = open(files[0].local, "rb").read()
    with grpc.insecure_channel("unix:" + mtls_server.health_socket) as channel:  # the attack: no certificate
        stub = service_pb2_grpc.FreezeServiceStub(channel)
        _unimplemented(lambda: stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10))
        _unimplemented(lambda: stub.PlanFreeze(freeze_pb2.PlanFreezeRequest(), timeout=10))
        _unimplemented(lambda: stub.FindMissingBlobs(blob_pb2.FindMissingBlobsRequest(blobs=digests), timeout=10))
        _unimplemented(lambda: stub.UploadBlob(iter([blob_pb2.UploadBlobRequest(
            digest=digests[0], offset=0, data=data)]), timeout=10))
        _unimplemented(lambda: stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(
            digest=digests[0], offset=0, data=data, finish_write=True), timeout=10))
        _unimplemented(lambda: list(stub.Freeze(freeze_pb2.FreezeRequest(files=sources, options=plan.options,
                                                                           plan=plan), timeout=30)))
        _unimplemented(lambda: stub.Inspect(freeze_pb2.InspectRequest(files=sources, options=plan.options,
                                                                       plan=plan), timeout=30))
        _unimplemented(lambda: list(stub.DownloadBlob(blob_pb2.DownloadBlobRequest(
            digest=blob_pb2.Digest(sha256=graph_sha, size_bytes=len(outcome.graph_bytes))), timeout=10)))
        # ...and health is there, for anyone who can open the socket
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    with _client(mtls_server, certificates) as c:  # the port itself still serves the graph (with a certificate)
        assert c.download(graph_sha, len(outcome.graph_bytes)) == outcome.graph_bytes


def test_check_and_watch_on_the_socket(mtls_server):
    with grpc.insecure_channel("unix:" + mtls_server.health_socket) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "liveness", "tffreeze.v1.FreezeService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == SERVING
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service="liveness"), timeout=30)
        assert next(watch).status == SERVING
        watch.cancel()
    # the probe command of the container image, against the socket
    probe = subprocess.run([sys.executable, "-m", "tffreeze_server.healthcheck", "unix:" + mtls_server.health_socket],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr


def test_reflection_on_the_socket_lists_only_health(mtls_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel("unix:" + mtls_server.health_socket) as channel:
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        services = {s.name for a in answers for s in a.list_services_response.service}
    assert "grpc.health.v1.Health" in services
    assert "tffreeze.v1.FreezeService" not in services, services


def test_the_socket_is_this_users_alone(mtls_server):
    st = os.lstat(mtls_server.health_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    # no private folder it was made in is left beside it
    assert sorted(os.listdir(os.path.dirname(mtls_server.health_socket))).count("health.sock") == 1
    assert not [n for n in os.listdir(os.path.dirname(mtls_server.health_socket)) if n.startswith(".h")]


def test_the_group_flag_makes_it_0660_for_that_group(tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name
    sock = str(tmp_path / "health.sock")
    srv = start_server(str(tmp_path / "data"), ["--health-socket", sock, "--health-socket-group", group])
    try:
        st = os.lstat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert st.st_gid == os.getgid()
        with grpc.insecure_channel("unix:" + sock) as channel:
            assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                             timeout=10).status == SERVING
    finally:
        assert stop_server(srv) == 0


def _serve(*extra, tmp_path):
    return subprocess.run([os.path.join(BIN, "tffreeze"), "serve", "--port", "0", "--data-dir",
                           str(tmp_path / "data"), "--workers", "1", *extra], capture_output=True, text=True,
                          timeout=120)


def test_an_unknown_group_stops_the_start(tmp_path):
    sock = tmp_path / "health.sock"
    out = _serve("--health-socket", str(sock), "--health-socket-group", "no-such-group-tffreeze", tmp_path=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "--health-socket-group 'no-such-group-tffreeze': no such group" in out.stderr, out.stderr
    assert "listening" not in out.stdout and not sock.exists()
    out = _serve("--health-socket-group", group_name(), tmp_path=tmp_path)  # without a socket to give it
    assert out.returncode == 1 and "--health-socket-group needs --health-socket" in out.stderr, out.stderr


def group_name() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def test_help_describes_the_socket():
    out = subprocess.run([os.path.join(BIN, "tffreeze"), "serve", "--help"], capture_output=True, text=True,
                         timeout=60)
    text = " ".join(out.stdout.split())
    assert "--health-socket-group GROUP" in text
    assert "never the FreezeService" in text and "0600" in text and "0660" in text
