"""SOURCE on this machine: its listing for PlanFreeze, and the files the plan names.

The server chooses which files make up the checkpoint (PlanFreeze); this module only
lists SOURCE and reads its ``checkpoint`` state files, as every client does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional

from tffreeze_api.v1 import freeze_pb2

from . import cache as _cache
from .errors import error_for

# What a listing covers (the server's GetCapabilities says the same).
LIST_DEPTH = 6
LIST_FILES = 10000
STATE_FILE = "checkpoint"
STATE_BYTES = 64 << 10


@dataclass
class LocalFile:
    path: str  # as sent: relative to the uploaded folder, '/'-separated
    local: str  # absolute local path
    sha256: str
    size: int
    from_cache: bool = False  # the digest came from the local cache: this client saw the file before


def sha256_file(path: str) -> str:
    """The file's sha256; unchanged files come from the local digest cache (see cache.py)."""
    return _cache.sha256_file(path)


def local_file(rel: str, local: str) -> LocalFile:
    cached = _cache.digests.cached(local)
    return LocalFile(rel, local, cached or sha256_file(local), os.path.getsize(local), cached is not None)


def _walk(root: str) -> List[freeze_pb2.ListedFile]:
    out: List[freeze_pb2.ListedFile] = []
    for folder, dirs, names in os.walk(root, followlinks=True):  # as the C# and C++ clients list
        rel = os.path.relpath(folder, root)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if level < LIST_DEPTH else []
        for name in sorted(names):
            path = name if rel == "." else "%s/%s" % (rel.replace(os.sep, "/"), name)
            try:
                size = os.path.getsize(os.path.join(folder, name))
            except OSError:
                continue
            out.append(freeze_pb2.ListedFile(path=path, size_bytes=size))
            if len(out) >= LIST_FILES:
                return out
    return out


_CHECKPOINT_FILE = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")


def missing_source(source: str) -> str:
    """Why SOURCE (neither a file, a folder nor a checkpoint prefix) is refused: it does not
    exist, and the name beside it that it most likely meant (a file, a folder, or a checkpoint
    prefix of the files there), as the C# and C++ clients say it."""
    from .runner import close_names

    folder, name = os.path.split(source.rstrip("/") or source)
    try:
        entries = [e for e in os.listdir(folder or ".") if not e.startswith(".")]
    except OSError:
        entries = []
    names = sorted(set(entries) | {_CHECKPOINT_FILE.sub("", e) for e in entries})
    close = close_names(name, names, 1) if name else []
    if not close:
        return "%s does not exist" % source
    return "%s does not exist; did you mean %s?" % (source, os.path.join(folder, latest_of_family(close[0], names)))


def unlistable(folder: str) -> str:
    """The words every client says for a SOURCE folder the user may not list."""
    return _cache.unreadable(folder, folder=True)


def unreadable_state(path: str) -> str:
    """The words every client says for a checkpoint state file the user may not read: it names the
    latest checkpoint, so the folder cannot be frozen without it, but a checkpoint named can."""
    return ("%s. It is the state file that names the latest checkpoint; a checkpoint named by its prefix (%s) needs "
            "none" % (_cache.unreadable(path), os.path.join(os.path.dirname(path), "PREFIX")))


def latest_of_family(name: str, names) -> str:
    """A checkpoint prefix PREFIX-N meant: the one of that prefix with the highest N (the latest),
    as the C# and C++ clients pick it; any other name as it is."""
    m = re.match(r"^(.*)-(\d+)$", name)
    if not m:
        return name
    family = [n for n in names if re.fullmatch(re.escape(m.group(1)) + r"-\d+", n)]
    return max(family, key=lambda n: int(n.rsplit("-", 1)[1]))


def plan_request(source: str, graph_file: Optional[str] = None):
    """(the folder the listing is relative to, the PlanFreezeRequest without options)."""
    source = os.path.expanduser(source)
    request = freeze_pb2.PlanFreezeRequest()
    listed = source if os.path.isdir(source) else (os.path.dirname(source) or ".")
    if os.path.isdir(listed) and not os.access(listed, os.R_OK | os.X_OK):  # (a colleague's folder, mode 0700)
        raise error_for("PERMISSION_DENIED", unlistable(listed), metadata={"path": listed})
    if os.path.isdir(source):
        root = os.path.abspath(source)
        request.files.extend(_walk(root))
    else:
        root = os.path.abspath(os.path.dirname(source) or ".")
        if not os.path.exists(source) and not os.path.isfile(source + ".index"):
            raise error_for("NOT_FOUND", missing_source(source), "ERROR_REASON_CHECKPOINT_NOT_FOUND")
        request.prefix = os.path.basename(source)
        for name in sorted(os.listdir(root)):
            if os.path.isfile(os.path.join(root, name)):
                request.files.add(path=name, size_bytes=os.path.getsize(os.path.join(root, name)))
    for f in request.files:
        if f.path.rsplit("/", 1)[-1] == STATE_FILE and f.size_bytes <= STATE_BYTES:
            path = os.path.join(root, *f.path.split("/"))
            try:
                with open(path, "r", encoding="utf-8", errors="replace") as fh:
                    request.state_files[f.path] = fh.read()
            except PermissionError:
                if request.prefix:  # (a checkpoint named: which is the latest does not matter)
                    continue
                raise error_for("PERMISSION_DENIED", unreadable_state(path), metadata={"path": path}) from None
    if graph_file:
        graph = os.path.expanduser(graph_file)
        if os.path.isdir(graph):
            raise error_for("INVALID_ARGUMENT", "%s is a folder: the graph option takes a file (a GraphDef or "
                            "MetaGraphDef)" % graph_file, "ERROR_REASON_GRAPH_INVALID", {"field": "options.graph_path"})
        if not os.path.isfile(graph):
            raise error_for("NOT_FOUND", "the graph file %s does not exist" % graph_file,
                            "ERROR_REASON_GRAPH_INVALID", {"field": "options.graph_path"})
        request.graph_file = os.path.basename(graph)
    return root, request


def planned_files(root: str, plan: freeze_pb2.PlanFreezeResponse, graph_file: Optional[str] = None) -> List[LocalFile]:
    """The plan's files on this machine, with their digests."""
    out = []
    for f in plan.files:
        local = (os.path.abspath(os.path.expanduser(graph_file)) if not f.local_path
                 else os.path.join(root, *f.local_path.split("/")))
        try:
            out.append(local_file(f.path, local))
        except FileNotFoundError:  # (listed a moment ago)
            raise error_for("FAILED_PRECONDITION", "%s was removed while the command ran (it was listed a moment ago): "
                            "run the command again once the checkpoint is complete" % local,
                            metadata={"path": local}) from None
    return out
