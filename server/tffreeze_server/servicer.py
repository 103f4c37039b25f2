"""FreezeService handlers: parse the request into a typed spec at the edge,
stage files, hand work to the pool, pass the engine's messages on. Errors go
through ``status``; no TensorFlow here."""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Iterator

from google.protobuf.message import DecodeError

from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2_grpc

from . import __version__, metrics, planning, results, webguard, wire
from .blobstore import CHUNK, BlobStore, check_digest
from .core.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable, Violation
from .core import stages
from .core.spec import MAX_NAME_BYTES, MAX_PATH_CHARS, MAX_PATH_PARTS, FreezeSpec, ServerLimits, safe_relative_path
from .settings import DEFAULT_EXPORT_SECONDS, DEFAULT_LOAD_SECONDS, DEFAULT_MAX_CALL_SECONDS, DEFAULT_VERIFY_SECONDS

MAX_INLINE_GRAPH = 2 << 20  # FreezeRequest.inline_graph_bytes is capped here (gRPC's 4 MiB message cap)
from .status import ACTIVITY, mapped, mapped_stream
from .tasks import OUTPUT_NAME, PLAN
from .workers import QUEUED, WorkerPool

MAX_FILES = 10000


def _check_path(path: str) -> str:
    if not safe_relative_path(path):
        raise InvalidArgument("file path %r is not a safe relative path: use '/'-separated names inside the "
                              "checkpoint directory, without '..' or a leading '/', at most %d characters, %d "
                              "folders deep, names of at most %d bytes" % (path[:200], MAX_PATH_CHARS, MAX_PATH_PARTS,
                                                                            MAX_NAME_BYTES),
                              "ERROR_REASON_INVALID_PATH", path=path[:200])
    return path


def _progress(stage, message: str, fraction: float) -> freeze_pb2.FreezeResponse:
    stage = freeze_pb2.STAGE_QUEUED if stage == QUEUED else stages.contract(stage)
    return freeze_pb2.FreezeResponse(progress=freeze_pb2.Progress(stage=stage, message=message, fraction=fraction))


def _recipe(pieces, size: int) -> "freeze_pb2.AssemblyRecipe | None":
    """The worker's pieces as a recipe, when at least half of the graph is file bytes
    (else downloading it whole is as good)."""
    from_files = sum(p[3] for p in pieces if p[0] == "file")
    if not pieces or from_files * 2 < size:
        return None
    recipe = freeze_pb2.AssemblyRecipe()
    for p in pieces:
        if p[0] == "file":
            recipe.pieces.add(length=p[3], file=freeze_pb2.FileRange(path=p[1], offset=p[2]))
        else:
            recipe.pieces.add(length=p[2], graph_offset=p[1])
    return recipe if recipe.ByteSize() <= planning.ANSWER_BUDGET else None  # too long to send: downloaded


def _early_recipe(plan) -> "freeze_pb2.AssemblyRecipe | None":
    """The worker's plan (literal bytes and file ranges, before it writes) as a recipe,
    when at least half of the graph is file bytes."""
    from_files = sum(p[3] for p in plan if p[0] == "file")
    literal = sum(len(p[1]) for p in plan if p[0] == "data")
    if not from_files or from_files < literal:
        return None
    recipe = freeze_pb2.AssemblyRecipe()
    for p in plan:
        if p[0] == "file":
            recipe.pieces.add(length=p[3], file=freeze_pb2.FileRange(path=p[1], offset=p[2]))
        else:
            recipe.pieces.add(length=len(p[1]), data=p[1])
    return recipe if recipe.ByteSize() <= planning.ANSWER_BUDGET else None  # too long to send: downloaded


def _value(value, keys) -> dict:
    if not isinstance(value, dict) or set(value) != set(keys):
        raise _bad_result("its result is not an object with %s" % ", ".join(keys))
    return value


def _bad_result(why: str) -> FailedPrecondition:
    return FailedPrecondition("the TensorFlow task's answer was refused (%s); nothing was stored" % why,
                              "ERROR_REASON_WORKER_CRASHED")


def _parsed(cls, text):
    try:
        return cls.FromString(wire.unb64(text, "result"))
    except (wire.WireError, DecodeError) as exc:
        raise _bad_result("%s: %s" % (cls.__name__, str(exc)[:100])) from None


def _freeze_value(value):
    """A freeze task's result: (FreezeResult, recipe pieces), each checked."""
    value = _value(value, ("result", "recipe"))
    try:
        pieces = wire.check_pieces(value["recipe"], ("file", "graph"))
    except wire.WireError as exc:
        raise _bad_result(str(exc)) from None
    return _parsed(freeze_pb2.FreezeResult, value["result"]), pieces


def _recipe_paths(pieces, paths):
    """Recipe pieces may only name files of the request: a client assembles from them."""
    for p in pieces:
        if p[0] == "file" and p[1] not in paths:
            raise _bad_result("its recipe names %r, not a file of the request" % p[1][:100])
    return pieces


def _naming_stage_limit(events, limits):
    """The pool's events, passed on; a stage's time limit reached (DEADLINE_EXCEEDED with the
    ``limit`` metadata the pool gives it) also names, in its metadata, that stage and the server
    flag that sets the limit."""
    stage = None
    try:
        for event in events:
            if event[0] == "progress" and event[1] != PLAN:
                stage = event[1]
            yield event
    except DeadlineExceeded as exc:
        if stage in limits and "limit" in exc.metadata:
            exc.metadata.setdefault("stage", freeze_pb2.Stage.Name(stages.contract(stage)))
            exc.metadata.setdefault("server_flag", limits[stage][2])
        raise
    finally:
        events.close()


class FreezeServicer(service_pb2_grpc.FreezeServiceServicer):
    def __init__(self, store: BlobStore, pool: WorkerPool, limits: ServerLimits = ServerLimits(),
                 max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS, result_cache: bool = True, shared_results=None,
                 verify_seconds: float = DEFAULT_VERIFY_SECONDS, load_seconds: float = DEFAULT_LOAD_SECONDS,
                 export_seconds: float = DEFAULT_EXPORT_SECONDS):
        self.store = store
        self.pool = pool
        self.limits = limits
        self.max_call_seconds = max_call_seconds  # a call without a deadline (gRPC-Web) still gets one
        self.verify_seconds = verify_seconds  # the longest the verify stage of a freeze may run
        self.load_seconds = load_seconds  # ... loading a TF2 SavedModel (its restore and initialisers run)
        self.export_seconds = export_seconds  # ... the format option's export (conversion and runtime check)
        self.results = results.ResultCache(store.root, store, shared_results) if result_cache else None
        self.stopping = threading.Event()  # set by Server.stop: new commands are refused, those under way finish

    # -- planning ----------------------------------------------------------
    @mapped
    def GetCapabilities(self, request, context):
        return planning.capabilities(MAX_INLINE_GRAPH, CHUNK)

    @mapped
    def PlanFreeze(self, request, context):
        if self.stopping.is_set():  # a new command: the commands under way are finished, no new one begun
            raise Unavailable("the tffreeze server is stopping (it was sent SIGTERM or SIGINT): it finishes the "
                              "freezes under way and begins no new one. Run the command again once the server is "
                              "back, or on another server", "ERROR_REASON_SERVER_STOPPING")
        answer = planning.plan_freeze(request, self.limits)
        ACTIVITY.planned()
        return answer

    # -- blobs -------------------------------------------------------------
    @mapped
    def FindMissingBlobs(self, request, context):
        missing = self.store.missing((d.sha256, d.size_bytes) for d in request.blobs)
        return blob_pb2.FindMissingBlobsResponse(
            missing=[blob_pb2.Digest(sha256=s, size_bytes=n) for s, n in missing])

    @mapped
    def UploadBlob(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or not first.HasField("digest"):
            raise InvalidArgument("the first UploadBlob message must carry the blob's digest",
                                  "ERROR_REASON_INVALID_DIGEST")
        digest = first.digest

        def chunks():
            msg = first
            while msg is not None:
                ACTIVITY.check_halted()
                metrics.UPLOADED.inc(len(msg.data))
                yield msg.offset, msg.data
                msg = next(request_iterator, None)

        sha256 = self.store.write_stream(digest.sha256, digest.size_bytes, chunks())
        return blob_pb2.UploadBlobResponse(digest=blob_pb2.Digest(sha256=sha256, size_bytes=digest.size_bytes))

    @mapped
    def WriteBlobChunk(self, request, context):
        metrics.UPLOADED.inc(len(request.data))
        committed, complete = self.store.write_chunk(request.digest.sha256, request.digest.size_bytes,
                                                     request.offset, request.data, request.finish_write,
                                                     request.upload_id)
        return blob_pb2.WriteBlobChunkResponse(committed_size=committed, complete=complete)

    @mapped_stream
    def DownloadBlob(self, request, context):
        with self.store.open(request.digest.sha256) as fh:
            size = os.fstat(fh.fileno()).st_size
            if not 0 <= request.offset <= size:
                raise InvalidArgument("offset %d is outside the blob's %d bytes" % (request.offset, size),
                                      "ERROR_REASON_INVALID_CHUNK")
            if request.limit < 0:
                raise InvalidArgument("limit %d is negative" % request.limit, "ERROR_REASON_INVALID_CHUNK")
            fh.seek(request.offset)
            offset = request.offset
            end = min(size, offset + request.limit) if request.limit else size
            while offset < end:
                data = fh.read(min(CHUNK, end - offset))
                if not data:
                    break
                yield blob_pb2.DownloadBlobResponse(offset=offset, data=data)
                metrics.DOWNLOADED.inc(len(data))
                offset += len(data)
        ACTIVITY.downloaded(request.digest.sha256)

    # -- freezing ----------------------------------------------------------
    def _checked(self, files):
        """The request's (path, sha256, size) entries: paths safe, digests valid, blobs present."""
        if not files:
            raise InvalidArgument("the request names no files; upload the checkpoint directory's files and list "
                                  "them (path + digest)", "ERROR_REASON_INVALID_PATH")
        if len(files) > MAX_FILES:
            raise InvalidArgument("the request names %d files; at most %d" % (len(files), MAX_FILES),
                                  "ERROR_REASON_INVALID_PATH")
        seen = set()
        for f in files:
            path = _check_path(f.path)
            if path in seen:
                raise InvalidArgument("file %r is listed twice" % path[:200], "ERROR_REASON_INVALID_PATH",
                                      path=path[:200])
            seen.add(path)
            check_digest(f.digest.sha256, f.digest.size_bytes)
        folders = {path.rsplit("/", 1)[0] for path in seen if "/" in path}
        folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
        clash = sorted(folders & seen)
        if clash:
            raise InvalidArgument("%r is listed as a file and is also a folder of other files" % clash[0][:200],
                                  "ERROR_REASON_INVALID_PATH", path=clash[0][:200])
        entries = [(f.path, f.digest.sha256, f.digest.size_bytes) for f in files]
        missing = set(self.store.missing((s, n) for _, s, n in entries))
        if missing:
            lacking = [(p, s, n) for p, s, n in entries if (s, n) in missing]
            raise FailedPrecondition(
                "%d file(s) are not uploaded yet: %s; the tffreeze clients upload them first (again once, if the "
                "store dropped them), so from a client this means its uploads went to another server: servers "
                "named together (--server A,B) must be replicas over one store (tffreeze serve --store); name one "
                "server. From code: FindMissingBlobs, then UploadBlob, before the freeze"
                % (len(lacking), planning.named(p[:200] for p, _, _ in lacking)),
                "ERROR_REASON_BLOBS_MISSING",
                violations=[Violation("MISSING", "blobs/%s/%d" % (s, n), "%s is not uploaded" % p[:200])
                            for p, s, n in lacking])
        return entries

    def _stager(self, entries):
        """Puts the checked files (``_checked``) into a task's input folder, as hard links to their blobs."""
        def stage(in_dir: str) -> None:
            for path, sha, _ in entries:
                dest = os.path.join(in_dir, *path.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                self.store.link_into(sha, dest)
        return stage

    def _run(self, kind, request, entries, context, **extra):
        self.store.check_tasks_folder()

        def cancelled():
            ACTIVITY.check_halted()  # the server stops now: the task is stopped, the call told why
            try:
                return not context.is_active()
            except NotImplementedError:  # the gRPC-Web adapter: look at the HTTP connection
                return webguard.client_gone()

        remaining = context.time_remaining()
        timeout = min(remaining, self.max_call_seconds) if remaining is not None else self.max_call_seconds
        payload = dict(extra, options=wire.b64(request.options.SerializeToString()),
                       limits=dataclasses.asdict(self.limits))
        limits = self._stage_limits()
        events = self.pool.run(kind, payload, timeout=timeout, cancelled=cancelled, stage=self._stager(entries),
                               stage_limits={stage: (seconds, what) for stage, (seconds, what, _) in limits.items()},
                               server_limit=remaining is None or self.max_call_seconds < remaining)
        return _naming_stage_limit(events, limits)

    def _stage_limits(self):
        """{stage: (seconds, what, server flag)}: each stage that runs code of the upload has its own
        time limit; the task is stopped when it stays longer in it (``WorkerPool.run``)."""
        return {
            stages.LOADING_SAVED_MODEL: (
                self.load_seconds, "loading the TF2 SavedModel (TensorFlow runs its restore functions and resource "
                "initialisers; tffreeze serve --load-seconds)", "--load-seconds"),
            freeze_pb2.STAGE_VERIFYING: (
                self.verify_seconds, "verify (running the original and frozen graphs; tffreeze serve "
                "--verify-seconds)", "--verify-seconds"),
            freeze_pb2.STAGE_EXPORTING: (
                self.export_seconds, "the format option's export (converting the frozen graph and running it in "
                "TensorFlow and the format's runtime; tffreeze serve --export-seconds)", "--export-seconds"),
        }

    def _inline(self, request, result) -> Iterator[freeze_pb2.FreezeResponse]:
        """The graph's bytes as an event, when the request takes them inline."""
        if 0 < result.size_bytes <= min(request.inline_graph_bytes, MAX_INLINE_GRAPH):
            try:
                with self.store.open(result.sha256) as fh:
                    data = fh.read(result.size_bytes + 1)
            except Exception:  # noqa: BLE001 - evicted meanwhile: the client downloads (and learns why)
                return
            if len(data) == result.size_bytes:
                yield freeze_pb2.FreezeResponse(graph=data)

    @mapped_stream
    def Freeze(self, request, context):
        if request.HasField("plan"):
            ACTIVITY.plan_used()
        FreezeSpec.from_options(request.options, self.limits)  # every option error before any file (the task parses again)
        entries = self._checked(request.files)
        cache_key = results.key(request, self.limits)
        cached, cached_recipe = self.results.get(cache_key) if self.results else (None, None)
        if self.results:
            metrics.RESULT_CACHE.labels("hit" if cached is not None else "miss").inc()
        quiet = request.quiet
        if cached is not None:  # the same bytes, options and engine: the same graph, already stored
            if not quiet:
                yield _progress(freeze_pb2.STAGE_STORED, "frozen graph %s (cached result)" % cached.sha256[:12], 1.0)
            sent = cached_recipe if cached_recipe is not None and request.accept_recipe else None
            if sent is not None:
                yield freeze_pb2.FreezeResponse(recipe=sent)
            yield from self._finish(request, cached, sent)
            return
        timer = metrics.StageTimer()
        timer.enter("STAGE_STAGING")
        result = recipe = task = sent = None
        early = request.accept_recipe and request.accept_early_recipe
        paths = {path for path, _, _ in entries}
        for event in self._run("freeze", request, entries, context, early_recipe=bool(early)):
            if event[0] == "task":
                task = event[1]
                if not quiet:
                    yield _progress(freeze_pb2.STAGE_STAGING, "%d file(s) staged" % len(request.files), 0.0)
            elif event[0] == "progress" and event[1] == PLAN:
                plan = _early_recipe(_recipe_paths(event[2], paths))
                if plan is not None:
                    early = "sent"
                    sent = plan
                    yield freeze_pb2.FreezeResponse(recipe=plan)
            elif event[0] == "progress":
                message = _progress(*event[1:])
                timer.enter(freeze_pb2.Stage.Name(message.progress.stage))
                if not quiet:
                    yield message
            else:
                result, pieces = _freeze_value(event[1])
                recipe = _recipe(_recipe_paths(pieces, paths), result.size_bytes)
                # the task's processes are gone (a result comes only then): copy its output
                # in, checking the digest it reported
                self.store.take_output(os.path.join(task.out_dir, OUTPUT_NAME), result.sha256, result.size_bytes)
        if self.results:
            self.results.put(cache_key, result, recipe)
        timer.done()
        if not quiet:
            yield _progress(freeze_pb2.STAGE_STORED, "frozen graph %s stored" % result.sha256[:12], 1.0)
        if recipe is not None and request.accept_recipe and early != "sent":
            sent = recipe
            yield freeze_pb2.FreezeResponse(recipe=recipe)
        yield from self._finish(request, result, sent)

    def _finish(self, request, result, recipe=None) -> Iterator[freeze_pb2.FreezeResponse]:
        """The last events of a freeze: the graph (if inline), the manifest's bytes, the result.
        ``recipe``: the one sent; a client that assembles from the local files alone (every piece a
        file range or data) downloads nothing, so a stopping server waits for no download."""
        answer = freeze_pb2.FreezeResult()
        answer.CopyFrom(result)  # the cached entry stays as stored
        answer.provenance.server_version = __version__
        planning.with_plan(answer, request.plan)
        manifest = planning.bounded_result(answer)  # both within one gRPC message, lists cut if need be
        inline = list(self._inline(request, answer))
        local = recipe is not None and all(p.WhichOneof("source") in ("file", "data") for p in recipe.pieces)
        if not inline and answer.size_bytes and not local:  # the client downloads it next (a stopping server waits)
            ACTIVITY.download_owed(answer.sha256)
        yield from inline
        yield freeze_pb2.FreezeResponse(manifest=manifest)
        yield freeze_pb2.FreezeResponse(result=answer)

    @mapped
    def Inspect(self, request, context):
        if request.HasField("plan"):
            ACTIVITY.plan_used()
        FreezeSpec.from_options(request.options, self.limits)  # every option error before any file
        response = None
        for event in self._run("inspect", request, self._checked(request.files), context):
            if event[0] == "result":
                response = _parsed(freeze_pb2.InspectResponse, _value(event[1], ("result",))["result"])
        response.provenance.server_version = __version__
        return planning.rendered(planning.with_plan(response, request.plan, inspect=True))
