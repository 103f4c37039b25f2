"""FreezeClient: upload a checkpoint, freeze it, download the frozen graph.

Needs only gRPC and protobuf; never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence

import grpc

from . import source as _source
from .errors import FailedPreconditionError, TffreezeError, from_rpc_error
from .v1 import blob_pb2, freeze_pb2, service_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
CHUNK = 1 << 20
_MAX_MESSAGE = 4 << 20

# progress(kind, done, total, message): kind is "upload" (bytes) or "freeze" (fraction in [0, 1]).
ProgressFn = Callable[[str, float, float, str], None]


def default_target() -> str:
    return os.environ.get("TFFREEZE_SERVER") or DEFAULT_TARGET


@dataclass
class UploadStats:
    files: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    skipped_bytes: int = 0


@dataclass
class FreezeOutcome:
    """What ``FreezeClient.freeze`` returns."""

    manifest: dict
    graph: Optional[bytes] = None  # the frozen GraphDef, unless written to a path
    path: Optional[str] = None
    upload: UploadStats = field(default_factory=UploadStats)
    downloaded: bool = True  # False when output_path already held exactly this graph


def _shape(msg) -> Optional[List[int]]:
    return None if msg.unknown_rank else list(msg.dims)


def tensor_dict(msg) -> dict:
    out = {"name": msg.name, "dtype": msg.dtype, "shape": _shape(msg.shape), "reason": msg.reason}
    if msg.has_default:
        out["has_default"] = True
        if msg.default_json:
            out["default"] = json.loads(msg.default_json)
    return out


def _checkpoint_dict(msg) -> dict:
    return {"prefix": msg.prefix, "step": msg.step if msg.HasField("step") else None, "meta_graph": msg.meta_graph}


def _signature_dict(sig) -> Optional[dict]:
    if not sig.name:
        return None
    strip = ("reason",)
    return {"name": sig.name,
            "inputs": {a: {k: v for k, v in tensor_dict(t).items() if k not in strip} for a, t in sorted(sig.inputs.items())},
            "outputs": {a: {k: v for k, v in tensor_dict(t).items() if k not in strip}
                        for a, t in sorted(sig.outputs.items())}}


def manifest_from_result(result, target: str) -> dict:
    """The manifest JSON users keep beside the frozen .pb."""
    return {
        "inputs": [tensor_dict(t) for t in result.inputs],
        "outputs": [tensor_dict(t) for t in result.outputs],
        "sha256": result.graph.sha256,
        "size_bytes": result.graph.size_bytes,
        "checkpoint": _checkpoint_dict(result.checkpoint),
        "warnings": list(result.warnings),
        "node_count": result.node_count,
        "variables_frozen": result.variables_frozen,
        "source_kind": result.source_kind,
        "bindings": [{"name": b.name, "value": json.loads(b.value_json), "reason": b.reason} for b in result.bindings],
        "signature": _signature_dict(result.signature),
        "ema_variables": list(result.ema_variables),
        "verification": [{"name": v.name, "max_abs_diff": v.max_abs_diff} for v in result.verification],
        "target": result.target or None,
        "provenance": {"tensorflow_version": result.provenance.tensorflow_version,
                       "server_version": result.provenance.server_version, "server": target},
    }


def _same_file(path: str, sha256: str, size: int) -> bool:
    try:
        return os.path.getsize(path) == size and _source.sha256_file(path) == sha256
    except OSError:
        return False


def _collect(source: str, step, graph: Optional[str], options: dict):
    """The chosen checkpoint's files, plus the --graph file (recorded in ``options``)."""
    src = _source.collect(source, step)
    files = list(src.files)
    if graph:
        extra = _source.graph_file(graph)
        files.append(extra)
        options["graph_path"] = extra.path
    return src, files


def _source_files(files) -> list:
    return [freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
            for f in files]


def _bind_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory:
    an existing file is replaced only by a complete one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class FreezeClient:
    """A connection to a tffreeze server.

    >>> with FreezeClient("127.0.0.1:50051") as client:
    ...     outcome = client.freeze("ckpt_dir", output_path="model.pb")
    ...     outcome.manifest["outputs"]

    ``timeout`` (seconds) applies to each call unless a method is given its own.
    """

    def __init__(self, target: Optional[str] = None, timeout: float = 600.0):
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)])
        self._stub = service_pb2_grpc.FreezeServiceStub(self._channel)

    def __enter__(self) -> "FreezeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from exc

    # -- blobs ---------------------------------------------------------------
    def upload(self, files: Sequence[_source.LocalFile], progress: Optional[ProgressFn] = None,
               timeout: Optional[float] = None) -> UploadStats:
        """Upload the files the server lacks (by sha256); returns what was sent."""
        timeout = timeout or self.timeout
        stats = UploadStats(files=len(files))
        digests = [blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size) for f in files]
        missing = self._call(self._stub.FindMissingBlobs, blob_pb2.FindMissingBlobsRequest(blobs=digests),
                             timeout=timeout).missing
        wanted = {(d.sha256, d.size_bytes) for d in missing}
        todo, seen = [], set()
        for f in files:
            key = (f.sha256, f.size)
            if key in wanted and key not in seen:
                todo.append(f)
                seen.add(key)
            elif key not in wanted:
                stats.skipped_bytes += f.size
        total = sum(f.size for f in todo)
        done = 0
        for f in todo:
            def chunks(f=f):
                nonlocal done
                with open(f.local, "rb") as fh:
                    offset = 0
                    first = True
                    while True:
                        data = fh.read(CHUNK)
                        if not data and not first:
                            return
                        msg = blob_pb2.UploadBlobRequest(offset=offset, data=data)
                        if first:
                            msg.digest.CopyFrom(blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
                            first = False
                        yield msg
                        offset += len(data)
                        done += len(data)
                        if progress:
                            progress("upload", done, total, f.path)
                        if not data:
                            return
            self._call(self._stub.UploadBlob, chunks(), timeout=timeout)
            stats.uploaded_files += 1
            stats.uploaded_bytes += f.size
        return stats

    def download(self, sha256: str, size: int, path: Optional[str] = None,
                 timeout: Optional[float] = None) -> Optional[bytes]:
        """Fetch a blob, verifying length and sha256. With ``path`` it is streamed
        to that file atomically (and None is returned); else its bytes are returned."""
        req = blob_pb2.DownloadBlobRequest(digest=blob_pb2.Digest(sha256=sha256, size_bytes=size))
        directory = os.path.dirname(os.path.abspath(path)) if path else None
        fd, tmp = (tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".part")
                   if path else (None, None))
        sink = os.fdopen(fd, "wb") if path else io.BytesIO()
        h = hashlib.sha256()
        received = 0
        try:
            try:
                for chunk in self._stub.DownloadBlob(req, timeout=timeout or self.timeout):
                    sink.write(chunk.data)
                    h.update(chunk.data)
                    received += len(chunk.data)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, self.target) from exc
            if received != size or h.hexdigest() != sha256:
                raise TffreezeError("downloaded %d bytes of %s that do not match the digest (%d bytes); retry"
                                    % (received, sha256[:12], size))
            if not path:
                return sink.getvalue()
            sink.close()
            os.replace(tmp, path)
            return None
        finally:
            sink.close()
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    # -- freezing --------------------------------------------------------------
    @staticmethod
    def _options(outputs=(), inputs=(), step=None, prefix=None, graph_path="", signature="", tags=(), bind=None,
                 ema=False, var_map=None, include_variables=(), exclude_variables=(), optimize=False,
                 verify=False, target="") -> freeze_pb2.FreezeOptions:
        def pairs(value):
            if isinstance(value, dict):
                return ["%s=%s" % (k, _bind_text(v)) for k, v in value.items()]
            return list(value or [])

        opts = freeze_pb2.FreezeOptions(
            outputs=list(outputs or []), inputs=list(inputs or []), checkpoint_prefix=prefix or "",
            graph_path=graph_path or "", signature=signature or "", tags=list(tags or []), bind=pairs(bind),
            ema=bool(ema), var_map=pairs(var_map), include_variables=list(include_variables or []),
            exclude_variables=list(exclude_variables or []), optimize=bool(optimize), verify=bool(verify),
            target=target or "")
        if step is not None:
            opts.step = int(step)
        return opts

    def freeze(self, source: str, output_path: Optional[str] = None, outputs: Iterable[str] = (),
               inputs: Iterable[str] = (), step: Optional[int] = None, progress: Optional[ProgressFn] = None,
               timeout: Optional[float] = None, graph: Optional[str] = None, **options) -> FreezeOutcome:
        """Freeze a Saver directory, a checkpoint prefix or a SavedModel directory.

        Uploads only the files the server lacks (of the chosen checkpoint),
        freezes, and returns the manifest with the graph bytes (or writes them
        to ``output_path`` atomically). ``graph``: a GraphDef/MetaGraphDef file
        for a checkpoint without .meta. Further keyword options, as in
        FreezeOptions: signature, tags, bind ({name: value} or ["name=value"]),
        ema, var_map ({graph_var: key}), include_variables, exclude_variables,
        optimize, verify, target ("tensorflowsharp": loads in libtensorflow 1.15)."""
        src, files = _collect(source, step, graph, options)
        outcome = self.freeze_files(files, output_path, outputs, inputs, None, src.prefix, progress, timeout,
                                    **options)
        outcome.manifest["warnings"] = src.warnings + outcome.manifest["warnings"]
        return outcome

    def freeze_files(self, files: Sequence[_source.LocalFile], output_path: Optional[str] = None,
                     outputs: Iterable[str] = (), inputs: Iterable[str] = (), step: Optional[int] = None,
                     checkpoint_prefix: Optional[str] = None, progress: Optional[ProgressFn] = None,
                     timeout: Optional[float] = None, **options) -> FreezeOutcome:
        """Freeze exactly these files (the server chooses the checkpoint among them)."""
        timeout = timeout or self.timeout
        options = self._options(outputs, inputs, step, checkpoint_prefix, **options)
        for attempt in (1, 2):
            stats = self.upload(files, progress, timeout)
            request = freeze_pb2.FreezeRequest(files=_source_files(files), options=options)
            try:
                result = self._freeze_call(request, progress, timeout)
                break
            except FailedPreconditionError as exc:
                # A blob evicted between upload and freeze: upload again, once.
                if attempt == 2 or "not uploaded yet" not in exc.message:
                    raise
        manifest = manifest_from_result(result, self.target)
        if output_path and _same_file(output_path, result.graph.sha256, result.graph.size_bytes):
            os.utime(output_path)  # already there (an incremental build): skip the download
            return FreezeOutcome(manifest=manifest, path=output_path, upload=stats, downloaded=False)
        data = self.download(result.graph.sha256, result.graph.size_bytes, output_path, timeout)
        return FreezeOutcome(manifest=manifest, graph=None if output_path else data, path=output_path, upload=stats)

    def _freeze_call(self, request, progress, timeout):
        result = None
        try:
            for event in self._stub.Freeze(request, timeout=timeout):
                if event.HasField("progress") and progress:
                    progress("freeze", event.progress.fraction, 1.0,
                             "%s: %s" % (event.progress.stage, event.progress.message))
                elif event.HasField("result"):
                    result = event.result
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from exc
        if result is None:
            raise TffreezeError("the server ended the freeze without a result")
        return result

    def inspect(self, source: str, outputs: Iterable[str] = (), inputs: Iterable[str] = (),
                step: Optional[int] = None, timeout: Optional[float] = None, graph: Optional[str] = None,
                **options) -> dict:
        """Describe a checkpoint: variables, candidate inputs/outputs with reasons,
        switches a freeze would bind, EMA shadows, signatures."""
        src, files = _collect(source, step, graph, options)
        info = self.inspect_files(files, outputs, inputs, None, src.prefix, timeout, **options)
        # Only the chosen checkpoint was uploaded; the local directory knows them all.
        info["available_checkpoints"] = src.available
        info["warnings"] = src.warnings + info["warnings"]
        return info

    def inspect_files(self, files, outputs=(), inputs=(), step=None, checkpoint_prefix=None,
                      timeout=None, **options) -> dict:
        timeout = timeout or self.timeout
        self.upload(files, None, timeout)
        request = freeze_pb2.InspectRequest(files=_source_files(files),
                                            options=self._options(outputs, inputs, step, checkpoint_prefix, **options))
        r = self._call(self._stub.Inspect, request, timeout=timeout)
        return {
            "checkpoint": _checkpoint_dict(r.checkpoint),
            "available_checkpoints": list(r.available_checkpoints),
            "variables": [{"checkpoint_key": v.checkpoint_key, "dtype": v.dtype, "shape": _shape(v.shape),
                           "graph_variable": v.graph_variable} for v in r.variables],
            "inputs": [tensor_dict(t) for t in r.inputs],
            "outputs": [tensor_dict(t) for t in r.outputs],
            "signatures": list(r.signatures),
            "collections": list(r.collections),
            "warnings": list(r.warnings),
            "provenance": {"tensorflow_version": r.provenance.tensorflow_version,
                           "server_version": r.provenance.server_version},
            "switches": [{"name": sw.name, "dtype": sw.dtype,
                          "inference_value": json.loads(sw.inference_value_json) if sw.inference_value_json else None}
                         for sw in r.switches],
            "ema_shadows": list(r.ema_shadows),
            "source_kind": r.source_kind,
        }

    def health(self, timeout: float = 5.0) -> str:
        """The server's health status name ("SERVING"...), via grpc.health.v1."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # optional dependency

        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = self._call(stub.Check, health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


__all__ = ["FreezeClient", "FreezeOutcome", "UploadStats", "default_target", "manifest_from_result",
           "write_atomically"]
