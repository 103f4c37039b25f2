"""FreezeService handlers: validate, stage files, hand work to the pool,
translate results to protos. Errors go through ``status``; no TensorFlow here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator, List, Tuple

from tffreeze.v1 import blob_pb2, freeze_pb2, service_pb2_grpc

from . import __version__
from .blobstore import CHUNK, BlobStore, check_digest
from .core.errors import FailedPrecondition, InvalidArgument
from .status import mapped, mapped_stream
from .workers import WorkerPool

MAX_FILES = 10000


def _check_path(path: str) -> str:
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(p in ("", ".", "..") for p in parts)):
        raise InvalidArgument("file path %r is not a safe relative path: use '/'-separated names inside the "
                              "checkpoint directory, without '..' or a leading '/'" % path)
    return path


def _shape(value) -> freeze_pb2.TensorShape:
    if value is None:
        return freeze_pb2.TensorShape(unknown_rank=True)
    return freeze_pb2.TensorShape(dims=value)


def _tensor(info: dict) -> freeze_pb2.TensorInfo:
    msg = freeze_pb2.TensorInfo(name=info["name"], dtype=info.get("dtype", ""), shape=_shape(info.get("shape")),
                                reason=info.get("reason", ""), has_default=bool(info.get("has_default")))
    if "default" in info:
        msg.default_json = json.dumps(info["default"])
    return msg


def _checkpoint(info: dict) -> freeze_pb2.CheckpointInfo:
    msg = freeze_pb2.CheckpointInfo(prefix=info["prefix"], meta_graph=info.get("meta_graph") or "")
    if info.get("step") is not None:
        msg.step = info["step"]
    return msg


def _provenance(info: dict) -> freeze_pb2.Provenance:
    return freeze_pb2.Provenance(tensorflow_version=info.get("tensorflow_version", ""), server_version=__version__)


def _options(options: freeze_pb2.FreezeOptions) -> dict:
    def names(values):
        return [v.strip() for v in values if v.strip()]

    return {
        "outputs": names(options.outputs),
        "inputs": names(options.inputs),
        "step": options.step if options.HasField("step") else None,
        "checkpoint_prefix": options.checkpoint_prefix,
        "graph_path": options.graph_path,
        "signature": options.signature,
        "tags": names(options.tags),
        "bind": list(options.bind),
        "ema": options.ema,
        "var_map": list(options.var_map),
        "include_variables": names(options.include_variables),
        "exclude_variables": names(options.exclude_variables),
        "optimize": options.optimize,
        "verify": options.verify,
        "target": options.target.strip(),
    }


def _signature(info) -> freeze_pb2.SignatureInfo:
    msg = freeze_pb2.SignatureInfo(name=info["name"])
    for alias, t in info["inputs"].items():
        msg.inputs[alias].CopyFrom(_tensor(t))
    for alias, t in info["outputs"].items():
        msg.outputs[alias].CopyFrom(_tensor(t))
    return msg


class FreezeServicer(service_pb2_grpc.FreezeServiceServicer):
    def __init__(self, store: BlobStore, pool: WorkerPool, allow_unsafe_verify: bool = False):
        self.store = store
        self.pool = pool
        self.allow_unsafe_verify = allow_unsafe_verify

    # -- blobs -------------------------------------------------------------
    @mapped
    def FindMissingBlobs(self, request, context):
        missing = self.store.missing((d.sha256, d.size_bytes) for d in request.blobs)
        return blob_pb2.FindMissingBlobsResponse(
            missing=[blob_pb2.Digest(sha256=s, size_bytes=n) for s, n in missing])

    @mapped
    def UploadBlob(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or not first.digest.sha256:
            raise InvalidArgument("the first UploadBlob message must carry the blob's digest")
        digest = first.digest

        def chunks():
            yield first.offset, first.data
            for msg in request_iterator:
                yield msg.offset, msg.data

        self.store.write_stream(digest.sha256, digest.size_bytes, chunks())
        return blob_pb2.UploadBlobResponse(digest=digest)

    @mapped
    def WriteBlobChunk(self, request, context):
        committed, complete = self.store.write_chunk(request.digest.sha256, request.digest.size_bytes,
                                                     request.offset, request.data, request.finish_write)
        return blob_pb2.WriteBlobChunkResponse(committed_size=committed, complete=complete)

    @mapped_stream
    def DownloadBlob(self, request, context):
        with self.store.open(request.digest.sha256) as fh:
            size = os.fstat(fh.fileno()).st_size
            if not 0 <= request.offset <= size:
                raise InvalidArgument("offset %d is outside the blob's %d bytes" % (request.offset, size))
            fh.seek(request.offset)
            offset = request.offset
            while True:
                data = fh.read(CHUNK)
                if not data:
                    break
                yield blob_pb2.DownloadBlobResponse(offset=offset, data=data)
                offset += len(data)

    # -- freezing ----------------------------------------------------------
    @contextlib.contextmanager
    def _staged(self, files) -> Iterator[str]:
        """A private working directory holding the request's files; always removed."""
        if not files:
            raise InvalidArgument("the request names no files; upload the checkpoint directory's files and list "
                                  "them (path + digest)")
        if len(files) > MAX_FILES:
            raise InvalidArgument("the request names %d files; at most %d" % (len(files), MAX_FILES))
        seen = set()
        entries: List[Tuple[str, str, int]] = []
        for f in files:
            path = _check_path(f.path)
            if path in seen:
                raise InvalidArgument("file %r is listed twice" % path)
            seen.add(path)
            check_digest(f.digest.sha256, f.digest.size_bytes)
            entries.append((path, f.digest.sha256, f.digest.size_bytes))
        missing = self.store.missing((s, n) for _, s, n in entries)
        if missing:
            names = [p for p, s, n in entries if (s, n) in set(missing)]
            raise FailedPrecondition("%d file(s) are not uploaded yet: %s. Upload them (FindMissingBlobs, then "
                                     "UploadBlob) before freezing." % (len(names), ", ".join(names[:10])))
        workdir = tempfile.mkdtemp(prefix="work-", dir=self.store.tmp_dir)
        try:
            for path, sha, _ in entries:
                dest = os.path.join(workdir, *path.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                self.store.link_into(sha, dest)
            yield workdir
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, kind, payload, context):
        def cancelled():
            try:
                return not context.is_active()
            except NotImplementedError:  # the gRPC-Web adapter cannot tell
                return False

        return self.pool.run(kind, payload, timeout=context.time_remaining(), cancelled=cancelled)

    @mapped_stream
    def Freeze(self, request, context):
        options = _options(request.options)
        options["_allow_unsafe_verify"] = self.allow_unsafe_verify
        with self._staged(request.files) as workdir:
            yield freeze_pb2.FreezeEvent(progress=freeze_pb2.Progress(
                stage="staging", message="%d file(s) staged" % len(request.files), fraction=0.0))
            out_path = workdir + ".frozen.pb"  # beside the upload, never among its files
            manifest = None
            try:
                for event in self._run("freeze", {"workdir": workdir, "options": options, "out_path": out_path},
                                       context):
                    if event[0] == "progress":
                        _, stage, message, fraction = event
                        yield freeze_pb2.FreezeEvent(progress=freeze_pb2.Progress(
                            stage=stage, message=message, fraction=fraction))
                    else:
                        manifest = event[1]
                self.store.adopt(out_path, manifest["sha256"], manifest["size_bytes"])
            finally:
                for leftover in (out_path, out_path + ".part"):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
        yield freeze_pb2.FreezeEvent(progress=freeze_pb2.Progress(
            stage="stored", message="frozen graph %s stored" % manifest["sha256"][:12], fraction=1.0))
        result = freeze_pb2.FreezeResult(
            graph=blob_pb2.Digest(sha256=manifest["sha256"], size_bytes=manifest["size_bytes"]),
            inputs=[_tensor(t) for t in manifest["inputs"]],
            outputs=[_tensor(t) for t in manifest["outputs"]],
            checkpoint=_checkpoint(manifest["checkpoint"]),
            warnings=manifest["warnings"],
            provenance=_provenance(manifest["provenance"]),
            node_count=manifest["node_count"],
            variables_frozen=manifest["variables_frozen"],
            bindings=[freeze_pb2.Binding(name=b["name"], value_json=json.dumps(b["value"]), reason=b["reason"])
                      for b in manifest["bindings"]],
            verification=[freeze_pb2.OutputCheck(name=v["name"], max_abs_diff=v["max_abs_diff"])
                          for v in manifest["verification"]],
            source_kind=manifest["source_kind"],
            ema_variables=manifest["ema_variables"],
            target=manifest["target"])
        if manifest["signature"]:
            result.signature.CopyFrom(_signature(manifest["signature"]))
        yield freeze_pb2.FreezeEvent(result=result)

    @mapped
    def Inspect(self, request, context):
        options = _options(request.options)
        with self._staged(request.files) as workdir:
            result = None
            for event in self._run("inspect", {"workdir": workdir, "options": options}, context):
                if event[0] == "result":
                    result = event[1]
        return freeze_pb2.InspectResponse(
            checkpoint=_checkpoint(result["checkpoint"]),
            available_checkpoints=result["available_checkpoints"],
            variables=[freeze_pb2.VariableInfo(checkpoint_key=v["checkpoint_key"], dtype=v["dtype"],
                                               shape=_shape(v["shape"]), graph_variable=v["graph_variable"])
                       for v in result["variables"]],
            inputs=[_tensor(t) for t in result["inputs"]],
            outputs=[_tensor(t) for t in result["outputs"]],
            signatures=result["signatures"],
            collections=result["collections"],
            warnings=result["warnings"],
            provenance=_provenance(result["provenance"]),
            switches=[freeze_pb2.SwitchInfo(name=sw["name"], dtype=sw["dtype"], inference_value_json=(
                "" if sw["inference_value"] is None else json.dumps(sw["inference_value"])))
                for sw in result["switches"]],
            ema_shadows=result["ema_shadows"],
            source_kind=result["source_kind"])
