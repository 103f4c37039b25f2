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
