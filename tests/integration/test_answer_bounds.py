"""Issue 32, finding 7: answers are bounded like requests.

An Inspect carrying a client-made plan of 10,000 checkpoints (4 MB) used to be answered in
12 MB (the list three times: the field, the report, the JSON), which gRPC's own send limit
refused with a bare RESOURCE_EXHAUSTED. Every answer that grows with its request now keeps
within one gRPC message, its lists ending in "... and N more", or is refused with a status
and an ErrorInfo reason. Sizes are printed (pytest -s) for the record."""

from __future__ import annotations

import hashlib
import re

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import models
from tffreeze import FreezeClient
from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2_grpc

LIMIT = 4 << 20  # gRPC's default receive limit: what every client accepts
MAX_REQUEST = 4 << 20  # and what the server accepts


def _channel(server):
    # a client as gRPC makes it by default: 4 MiB answers at most, 8 KiB of trailers
    return grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", MAX_REQUEST)])


def _error_info(err: grpc.RpcError):
    """(ErrorInfo, PreconditionFailure or None) of a failed call's rich status."""
    details = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert details, "no rich status: %s %s" % (err.code(), err.details())
    status = status_pb2.Status.FromString(details)
    info, failure = None, None
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
        elif d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            d.Unpack(failure)
    assert info is not None and info.reason.startswith("ERROR_REASON_"), status
    return info, failure


@pytest.fixture(scope="module")
def uploaded(server, tmp_path_factory):
    """A small model uploaded to the session's server: (its files, its plan, SourceFiles)."""
    model = models.dense(str(tmp_path_factory.mktemp("bounds") / "m"), True)
    with FreezeClient(server.target) as c:
        files, plan = c.plan(model.directory)
        c.upload(files)
    sources = [freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
               for f in files]
    return files, plan, sources


def _huge_plan(plan, checkpoints=10000, warnings=0, chars=395):
    """The client's plan, with ``checkpoints`` made-up checkpoints (``chars`` characters each)
    and ``warnings`` made-up warnings."""
    big = freeze_pb2.PlanFreezeResponse()
    big.CopyFrom(plan)
    stem = ("run/" * (chars // 4))[:chars - 12]
    big.available_checkpoints[:] = ["%smodel.ckpt-%d" % (stem, i) for i in range(checkpoints)]
    big.warnings.extend("made-up warning %d of the client's plan" % i for i in range(warnings))
    return big


def test_inspect_with_a_plan_of_10000_checkpoints(server, uploaded):
    _, plan, sources = uploaded
    big = _huge_plan(plan)
    request = freeze_pb2.InspectRequest(files=sources, options=plan.options, plan=big)
    assert 3_900_000 < request.ByteSize() < MAX_REQUEST  # the finding's 4 MB
    with _channel(server) as channel:
        answer = service_pb2_grpc.FreezeServiceStub(channel).Inspect(request, timeout=300)
    print("\nInspect, plan of 10,000 checkpoints: request %d bytes, answer %d bytes (report %d, JSON %d)"
          % (request.ByteSize(), answer.ByteSize(), len(answer.rendered.text), len(answer.rendered.json)))
    assert answer.ByteSize() < 256 << 10
    listed = list(answer.available_checkpoints)
    assert len(listed) == 101 and listed[50] == "... and 9900 more"
    assert listed[0].endswith("model.ckpt-0") and listed[-1].endswith("model.ckpt-9999")
    assert "... and 9900 more" in answer.rendered.text and "... and 9900 more" in answer.rendered.json
    assert [v.checkpoint_key for v in answer.variables]  # the inspection itself is whole


def test_inspect_and_freeze_cap_the_plans_warnings(server, uploaded):
    _, plan, sources = uploaded
    big = _huge_plan(plan, checkpoints=10000, warnings=30000, chars=200)
    with _channel(server) as channel:
        stub = service_pb2_grpc.FreezeServiceStub(channel)
        answer = stub.Inspect(freeze_pb2.InspectRequest(files=sources, options=plan.options, plan=big), timeout=300)
        assert answer.warnings[20] == "... and 29980 more", list(answer.warnings)[:25]
        assert "warning: ... and 29980 more" in answer.rendered.text
        request = freeze_pb2.FreezeRequest(files=sources, options=plan.options, plan=big)
        assert request.ByteSize() < MAX_REQUEST
        events = list(stub.Freeze(request, timeout=300))
    result = next(e.result for e in events if e.HasField("result"))
    manifest = next(e.manifest for e in events if e.HasField("manifest"))
    print("\nFreeze, plan of 10,000 checkpoints and 30,000 warnings: request %d bytes, result %d bytes, manifest %d "
          "bytes" % (request.ByteSize(), result.ByteSize(), len(manifest)))
    assert "... and 29980 more" in list(result.warnings) and b"... and 29980 more" in manifest
    assert len(result.warnings) <= 51 and len(manifest) < 64 << 10
    assert [o.name for o in result.outputs] == ["y:0"]


def test_plan_freeze_lists_at_most_100_checkpoints(server):
    # a Saver folder of 5,000 checkpoints (10,000 files, the most a listing may hold)
    listing = [freeze_pb2.ListedFile(path="model.ckpt-%d%s" % (i, ext), size_bytes=10)
               for i in range(1, 5001) for ext in (".index", ".data-00000-of-00001")]
    request = freeze_pb2.PlanFreezeRequest(files=listing)
    with _channel(server) as channel:
        answer = service_pb2_grpc.FreezeServiceStub(channel).PlanFreeze(request, timeout=60)
    print("\nPlanFreeze, 5,000 checkpoints: request %d bytes, answer %d bytes" % (request.ByteSize(), answer.ByteSize()))
    listed = list(answer.available_checkpoints)
    assert len(listed) == 101 and listed[50] == "... and 4900 more"
    assert listed[0] == "model.ckpt-1" and listed[-1] == "model.ckpt-5000"
    assert answer.options.checkpoint_prefix == "model.ckpt-5000"  # the newest, as before
    assert sorted(f.path for f in answer.files) == ["model.ckpt-5000.data-00000-of-00001", "model.ckpt-5000.index"]


def test_plan_freeze_whose_files_cannot_fit_is_refused_with_its_reason(server):
    # a SavedModel folder of 10,000 files with ~400-character paths: every file must be planned
    # (each path sent twice), so the answer cannot be cut; it used to be 8 MB, refused by gRPC
    listing = [freeze_pb2.ListedFile(path="saved_model.pb", size_bytes=10)]
    listing += [freeze_pb2.ListedFile(path="assets/%s/%s%05d" % ("a" * 200, "b" * 180, i), size_bytes=10)
                for i in range(9999)]
    request = freeze_pb2.PlanFreezeRequest(files=listing)
    assert request.ByteSize() < MAX_REQUEST
    with _channel(server) as channel:
        with pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.FreezeServiceStub(channel).PlanFreeze(request, timeout=60)
    print("\nPlanFreeze, SavedModel of 10,000 long paths: request %d bytes -> %s %s"
          % (request.ByteSize(), err.value.code().name, err.value.details()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    info, _ = _error_info(err.value)
    assert info.reason == "ERROR_REASON_INVALID_PATH"
    assert info.metadata["files"] == "10000" and int(info.metadata["answer_bytes"]) > int(info.metadata["limit"])
    assert "fewer files or shorter paths" in err.value.details()


def test_freeze_naming_10000_missing_files_keeps_its_error_within_the_trailers(server):
    # 10,000 files never uploaded, long paths: one violation each. The rich status used to carry
    # 40 violations of ~320 bytes, more than the 8 KiB of trailers a client accepts by default
    files = [freeze_pb2.SourceFile(path="x/%s-%05d.bin" % ("p" * 190, i),
                                   digest=blob_pb2.Digest(sha256=hashlib.sha256(b"%d" % i).hexdigest(),
                                                          size_bytes=i + 1)) for i in range(10000)]
    request = freeze_pb2.FreezeRequest(files=files)
    with _channel(server) as channel:
        with pytest.raises(grpc.RpcError) as err:
            list(service_pb2_grpc.FreezeServiceStub(channel).Freeze(request, timeout=120))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (err.value.code(), err.value.details())
    info, failure = _error_info(err.value)
    details = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
    print("\nFreeze, 10,000 missing files: rich status %d bytes, message %d characters, %d violations listed"
          % (len(details), len(err.value.details()), len(failure.violations)))
    assert info.reason == "ERROR_REASON_BLOBS_MISSING" and info.metadata["violations"] == "10000"
    assert 0 < len(failure.violations) < 40 and len(details) < 4096
    assert "10000 file(s) are not uploaded yet" in err.value.details() and "--store" in err.value.details()
    more = re.search(r"\.\.\. and (\d+) more; the tffreeze clients", err.value.details())
    assert more and int(more.group(1)) + err.value.details().count("x/ppp") == 10000, err.value.details()


def test_find_missing_blobs_answers_a_request_of_the_largest_size(server):
    # the answer lists only digests of the request, each once: never larger than the request
    digests = [blob_pb2.Digest(sha256=hashlib.sha256(b"m%d" % i).hexdigest(), size_bytes=(1 << 40) + i)
               for i in range(54000)]
    request = blob_pb2.FindMissingBlobsRequest(blobs=digests + digests[:1000])
    assert request.ByteSize() < MAX_REQUEST
    with _channel(server) as channel:
        answer = service_pb2_grpc.FreezeServiceStub(channel).FindMissingBlobs(request, timeout=120)
    print("\nFindMissingBlobs, 55,000 digests: request %d bytes, answer %d bytes"
          % (request.ByteSize(), answer.ByteSize()))
    assert len(answer.missing) == 54000 and answer.ByteSize() < request.ByteSize() <= LIMIT


# --- the graph's own lists: planning and status, without a worker -------------------------

def test_an_inspection_of_a_huge_graph_is_cut_to_fit():
    from tffreeze_server import planning

    response = freeze_pb2.InspectResponse(source_kind=freeze_pb2.SOURCE_KIND_SAVER)
    for i in range(40000):
        response.variables.add(checkpoint_key="layer_%05d/%s/kernel" % (i, "w" * 60), dtype="float32")
        response.candidates.add(name="layer_%05d/%s/out:0" % (i, "o" * 60), dtype="float32", reason="a sink")
    response.collections.extend("collection_%d" % i for i in range(20000))
    before = response.ByteSize()
    out = planning.rendered(response)
    print("\nInspect of 40,000 variables and candidates: %d bytes of lists -> answer %d bytes"
          % (before, out.ByteSize()))
    assert out.ByteSize() <= planning.ANSWER_BUDGET
    kept = len(out.variables)
    assert 0 < kept < 40000 and len(out.candidates) == kept
    more = "... and %d more" % (40000 - kept)
    assert "variables (40000):" in out.rendered.text and "  " + more in out.rendered.text
    notes = [w for w in out.warnings if w.startswith("variables:")]
    assert notes and more in notes[0] and more in out.rendered.json
    assert out.collections[-1] == "... and %d more" % (20000 - kept)


def test_a_freeze_result_cuts_what_it_tells_and_refuses_what_it_cannot_cut():
    from tffreeze_server import planning, status
    from tffreeze_server.core.errors import ResourceExhausted

    result = freeze_pb2.FreezeResult(sha256="0" * 64, size_bytes=1)
    result.outputs.add(name="y:0", dtype="float32")
    result.ema_variables.extend("layer_%06d/%s/ExponentialMovingAverage" % (i, "v" * 80) for i in range(60000))
    before = len(planning.manifest_bytes(result))
    manifest = planning.bounded_result(result)
    print("\nFreezeResult with 60,000 EMA variables: manifest %d -> %d bytes" % (before, len(manifest)))
    assert len(manifest) <= planning.ANSWER_BUDGET and result.ByteSize() <= planning.ANSWER_BUDGET
    assert result.ema_variables[-1] == "... and 50000 more"

    described = freeze_pb2.FreezeResult(sha256="0" * 64, size_bytes=1)
    for i in range(60000):  # outputs describe the graph: never cut
        described.outputs.add(name="head_%06d/%s:0" % (i, "o" * 80), dtype="float32")
    with pytest.raises(ResourceExhausted) as err:
        planning.bounded_result(described)
    assert err.value.reason == "ERROR_REASON_GRAPH_TOO_LARGE" and "60000 outputs" in err.value.message
    code, message, reason, metadata = status.to_status(err.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and metadata["limit"] == str(planning.ANSWER_BUDGET)


def test_every_answer_is_checked_against_the_send_limit():
    """The last guard (status.mapped): an answer over gRPC's limit is RESOURCE_EXHAUSTED with
    an ErrorInfo, set by the server, not gRPC's bare refusal."""
    from tffreeze_server import status

    class Context:
        def set_trailing_metadata(self, md):
            self.trailers = dict(md)

        def abort(self, code, message):
            self.aborted = (code, message)
            raise Exception()

    class Servicer:
        @status.mapped
        def Big(self, request, context):
            return blob_pb2.DownloadBlobResponse(data=b"x" * (5 << 20))

        @status.mapped_stream
        def Stream(self, request, context):
            yield blob_pb2.DownloadBlobResponse(data=b"x")
            yield blob_pb2.DownloadBlobResponse(data=b"x" * (5 << 20))

    for call in (lambda c: Servicer().Big(None, c), lambda c: list(Servicer().Stream(None, c))):
        context = Context()
        with pytest.raises(Exception):
            call(context)
        assert context.aborted[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_details_pb2.ErrorInfo()
        status_pb2.Status.FromString(context.trailers["grpc-status-details-bin"]).details[0].Unpack(info)
        assert info.reason == "ERROR_REASON_GRAPH_TOO_LARGE" and int(info.metadata["answer_bytes"]) > 5 << 20


def test_a_recipe_too_long_to_send_is_not_sent():
    from tffreeze_server import servicer

    pieces = [("file", "variables/%s.data-%05d" % ("v" * 100, i % 100), i * 8, 8) for i in range(80000)]
    assert servicer._early_recipe(pieces) is None  # the client downloads the graph instead
    assert servicer._early_recipe(pieces[:100]) is not None


def test_error_messages_fit_the_trailers_whatever_their_alphabet():
    from tffreeze_server import status

    message = status.trailer_message("名前, " * 400)
    assert status._quoted_len(message) <= status.TRAILER_MESSAGE_BYTES
    assert message.endswith("more") and "... and" in message
