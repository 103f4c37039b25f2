"""The gRPC-Web endpoint serves the same servicers as the native port."""

from __future__ import annotations

import hashlib
import os

import pytest

import grpcweb
import models
from tffreeze import FreezeClient
from tffreeze_api.v1 import blob_pb2, freeze_pb2


def _upload_unary(url, path, chunk=1 << 20):
    data = open(path, "rb").read()
    digest = blob_pb2.Digest(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    (resp,) = grpcweb.call(url, "FindMissingBlobs", blob_pb2.FindMissingBlobsRequest(blobs=[digest]).SerializeToString())
    if blob_pb2.FindMissingBlobsResponse.FromString(resp).missing:
        offset = 0
        while True:
            part = data[offset:offset + chunk]
            last = offset + len(part) >= len(data)
            req = blob_pb2.WriteBlobChunkRequest(digest=digest, offset=offset, data=part, finish_write=last)
            (r,) = grpcweb.call(url, "WriteBlobChunk", req.SerializeToString())
            r = blob_pb2.WriteBlobChunkResponse.FromString(r)
            offset = r.committed_size
            if r.complete:
                break
    return digest


def test_freeze_over_grpc_web_matches_native(web_server, tmp_path):
    model = models.dense(str(tmp_path), True, steps=[5])
    files = sorted(f for f in os.listdir(model.directory))
    request = freeze_pb2.FreezeRequest()
    for name in files:
        request.files.add(path=name, digest=_upload_unary(web_server.web_url, os.path.join(model.directory, name),
                                                          chunk=1000))
    events = [freeze_pb2.FreezeResponse.FromString(m) for m in
              grpcweb.call(web_server.web_url, "Freeze", request.SerializeToString())]
    assert events[0].HasField("progress") and events[-1].HasField("result")
    result = events[-1].result
    chunks = grpcweb.call(web_server.web_url, "DownloadBlob",
                          blob_pb2.DownloadBlobRequest(digest=blob_pb2.Digest(sha256=result.sha256, size_bytes=result.size_bytes)).SerializeToString())
    web_bytes = b"".join(blob_pb2.DownloadBlobResponse.FromString(c).data for c in chunks)
    with FreezeClient(web_server.target) as native:
        assert native.freeze(model.directory).graph_bytes == web_bytes
    assert [t.name for t in result.outputs] == ["y:0"]


def test_errors_carry_status_and_message(web_server):
    with pytest.raises(grpcweb.WebError) as err:
        grpcweb.call(web_server.web_url, "Freeze", freeze_pb2.FreezeRequest().SerializeToString())
    assert err.value.status == 3 and "names no files" in err.value.message  # INVALID_ARGUMENT
    bad = blob_pb2.WriteBlobChunkRequest(digest=blob_pb2.Digest(sha256="0" * 64, size_bytes=4), offset=7, data=b"x")
    with pytest.raises(grpcweb.WebError) as err:
        grpcweb.call(web_server.web_url, "WriteBlobChunk", bad.SerializeToString())
    assert err.value.status == 9 and "resume at 0" in err.value.message  # FAILED_PRECONDITION
    # The reason travels in the gRPC-Web trailer too, for clients to branch on.
    assert err.value.reason == "ERROR_REASON_WRONG_OFFSET" and err.value.metadata == {"committed_size": "0"}


def _raw_post(web_server, headers, body=b"", send_body=True):
    """One raw HTTP/1.1 POST to the gRPC-Web port: (status, reason text)."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlparse(web_server.web_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", "/tffreeze.v1.FreezeService/FindMissingBlobs", skip_host="Host" in headers)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders(body if send_body else None)
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, text


def _find_missing_body():
    import struct

    digest = blob_pb2.Digest(sha256="ab" * 32, size_bytes=3)
    msg = blob_pb2.FindMissingBlobsRequest(blobs=[digest]).SerializeToString()
    return struct.pack(">BI", 0, len(msg)) + msg


def test_grpc_web_port_answers_only_grpc_web_requests_from_its_own_names(web_server):
    body = _find_missing_body()
    ok = {"Content-Type": "application/grpc-web+proto", "Content-Length": str(len(body))}
    assert _raw_post(web_server, ok, body)[0] == 200
    # A "simple" request a web page can send without a CORS preflight.
    status, text = _raw_post(web_server, dict(ok, **{"Content-Type": "text/plain"}), body)
    assert status == 415 and "application/grpc-web" in text
    # Any page's origin (none is allowed by default).
    status, text = _raw_post(web_server, dict(ok, Origin="https://evil.example"), body)
    assert status == 403 and "Origin 'https://evil.example' is not allowed" in text
    # DNS rebinding: an attacker's name pointing at 127.0.0.1.
    status, text = _raw_post(web_server, dict(ok, Host="rebind.evil.example:80"), body)
    assert status == 403 and "is not a name this server listens as" in text
    assert _raw_post(web_server, dict(ok, Host="localhost:1234"), body)[0] == 200


def test_grpc_web_refuses_an_oversized_body_before_reading_it(web_server):
    """A 200 MiB declared body is refused from its Content-Length: nothing is sent, nothing buffered."""
    headers = {"Content-Type": "application/grpc-web+proto", "Content-Length": str(200 << 20)}
    status, text = _raw_post(web_server, headers, send_body=False)
    assert status == 413 and "a call carries at most" in text


def test_allowed_origin_is_served(tmp_path):
    from conftest import start_server, stop_server

    srv = start_server(str(tmp_path / "data"), ["--web-port", "0", "--web-allow-origin", "https://tools.example"])
    try:
        import re

        srv.web_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
        body = _find_missing_body()
        ok = {"Content-Type": "application/grpc-web", "Content-Length": str(len(body))}
        assert _raw_post(srv, dict(ok, Origin="https://tools.example"), body)[0] == 200
        assert _raw_post(srv, dict(ok, Origin="https://other.example"), body)[0] == 403
    finally:
        assert stop_server(srv) == 0


def _raw(web_server, method, headers, body=b""):
    """One raw HTTP/1.1 request to the gRPC-Web port: (status, headers as a dict, body)."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlparse(web_server.web_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request(method, "/tffreeze.v1.FreezeService/FindMissingBlobs", body=body or None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def test_cors_for_an_allowed_browser_origin(tmp_path):
    """Issue 26: a browser page on an allowed origin can call the service cross-origin: its
    preflight is answered (204, the origin, POST, the gRPC-Web headers), the call's answer
    names that origin (not the Host) with the gRPC-Web content type and exposes the status;
    a page on another origin gets neither."""
    from conftest import start_server, stop_server
    import re

    allowed = "http://tools.example:8000"
    srv = start_server(str(tmp_path / "data"), ["--web-port", "0", "--web-allow-origin", allowed])
    try:
        srv.web_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
        preflight = {"Origin": allowed, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type,x-grpc-web,x-user-agent,authorization"}
        status, headers, _ = _raw(srv, "OPTIONS", preflight)
        assert status == 204, headers
        assert headers["access-control-allow-origin"] == allowed and "origin" in headers["vary"].lower()
        assert "POST" in headers["access-control-allow-methods"]
        assert {"content-type", "x-grpc-web", "authorization"} <= {
            h.strip() for h in headers["access-control-allow-headers"].split(",")}
        status, headers, _ = _raw(srv, "OPTIONS", dict(preflight, Origin="http://evil.example"))
        assert status == 403 and "access-control-allow-origin" not in headers
        body = _find_missing_body()
        call = {"Content-Type": "application/grpc-web+proto", "Accept": "*/*", "X-Grpc-Web": "1",
                "Origin": allowed}
        status, headers, data = _raw(srv, "POST", call, body)
        assert status == 200 and headers["access-control-allow-origin"] == allowed
        assert headers["content-type"] == "application/grpc-web+proto"
        assert "grpc-status" in headers["access-control-expose-headers"]
        assert data[:1] == b"\x00"  # a message frame, then the trailer frame
        status, headers, _ = _raw(srv, "POST", {k: v for k, v in call.items() if k != "Origin"}, body)
        assert status == 200 and "access-control-allow-origin" not in headers  # no browser, no CORS
    finally:
        assert stop_server(srv) == 0


def test_the_page_and_its_own_origin(web_server):
    """GET / is the page (HTML with a strict CSP; its script beside it); a POST carrying the
    port's own origin (browsers send Origin on same-origin POSTs too) is the page calling."""
    status, headers, body = _raw_get(web_server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'id="source"' in body
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    status, headers, body = _raw_get(web_server, "/nope")
    assert status == 404
    own = web_server.web_url.rstrip("/")
    body = _find_missing_body()
    call = {"Content-Type": "application/grpc-web+proto", "Origin": own, "Content-Length": str(len(body))}
    assert _raw_post(web_server, call, body)[0] == 200
    # a page elsewhere naming a rebound Host: refused (Host check), and another origin: refused
    assert _raw_post(web_server, dict(call, Origin="http://evil.example:80", Host="evil.example:80"), body)[0] == 403
    assert _raw_post(web_server, dict(call, Origin="http://localhost:1"), body)[0] == 403


def _raw_get(web_server, path):
    import http.client
    import urllib.parse

    url = urllib.parse.urlparse(web_server.web_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
