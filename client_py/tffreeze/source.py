"""Local checkpoints: which files of a directory or prefix to upload."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from tffreeze_api import layout

from . import cache as _cache
from .errors import error_for

GRAPH_DIR = ".tffreeze-graph"


# A file at least this big whose digest is not in the local cache is hashed while it is
# uploaded (one read instead of two); smaller ones are hashed first, so the server can
# say it already holds them.
HASH_WHILE_SENDING = 8 << 20


@dataclass
class LocalFile:
    path: str  # relative to the checkpoint directory, '/'-separated
    local: str  # absolute local path
    sha256: Optional[str]  # None: not hashed yet (FreezeClient.upload hashes it while sending)
    size: int
    from_cache: bool = False  # the digest came from the local cache: this client saw the file before


@dataclass
class LocalCheckpoint:
    """What a SOURCE argument names on this machine, and the files to upload."""

    directory: str
    prefix: str  # chosen checkpoint prefix, relative to directory ("" for a SavedModel)
    files: List[LocalFile]
    warnings: List[str]
    available: List[str]  # every checkpoint prefix in the directory, oldest first


def sha256_file(path: str) -> str:
    """The file's sha256; unchanged files come from the local digest cache (see cache.py)."""
    return _cache.sha256_file(path)


def local_file(rel: str, local: str, defer: bool = False) -> LocalFile:
    """A file to upload. ``defer``: leave a big file's sha256 unknown (None) unless the
    local cache holds it, for the upload to compute while sending."""
    size = os.path.getsize(local)
    cached = _cache.digests.cached(local)
    if cached is not None:
        return LocalFile(rel, local, cached, size, True)
    if defer and size >= HASH_WHILE_SENDING:
        return LocalFile(rel, local, None, size)
    return LocalFile(rel, local, sha256_file(local), size)


def _saved_model(directory: str) -> LocalCheckpoint:
    files = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            local = os.path.join(root, name)
            files.append(local_file(os.path.relpath(local, directory).replace(os.sep, "/"), local, True))
    return LocalCheckpoint(os.path.abspath(directory), "", files, [], [])


def graph_file(path: str) -> LocalFile:
    """An extra graph file (--graph) uploaded beside the checkpoint."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise error_for("NOT_FOUND", "--graph %s does not exist" % path, "ERROR_REASON_GRAPH_INVALID")
    return local_file("%s/%s" % (GRAPH_DIR, os.path.basename(path)), os.path.abspath(path), True)


NESTED_DEPTH = 3


def _relative_files(directory: str, depth: int) -> List[str]:
    """Files below ``directory`` (at most ``depth`` folders down, hidden folders skipped)."""
    out = []
    for root, dirs, files in os.walk(directory):
        rel = os.path.relpath(root, directory)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if level < depth else []
        out += [f if rel == "." else "%s/%s" % (rel.replace(os.sep, "/"), f) for f in files]
    return out


def _nested(directory: str, step: Optional[int]) -> Optional[LocalCheckpoint]:
    """SOURCE holds no checkpoint: the only folder below it that does, with a warning;
    several such folders are listed in the error."""
    only, dirs = layout.nested_source(_relative_files(directory, NESTED_DEPTH))
    if only is not None:
        found = collect(os.path.join(directory, *only.split("/")), step)
        found.warnings.insert(0, "%s holds no checkpoint itself; using %s/, the only folder below it that does"
                              % (directory, only))
        return found
    if dirs:
        raise error_for("NOT_FOUND", "%s holds no checkpoint itself, but %d folders below it do: %s. Pass one of "
                        "them as SOURCE." % (directory, len(dirs), ", ".join(d + "/" for d in dirs[:10])),
                        "ERROR_REASON_CHECKPOINT_NOT_FOUND")
    return None


def collect(source: str, step: Optional[int] = None) -> LocalCheckpoint:
    """Resolve SOURCE (a Saver directory, a checkpoint prefix, or a SavedModel
    directory) to the files to upload. Raises TffreezeError naming the problem."""
    source = os.path.expanduser(source)
    if os.path.isdir(source) and any(os.path.isfile(os.path.join(source, f)) for f in layout.SAVED_MODEL_FILES):
        return _saved_model(source)
    if os.path.isdir(source):
        directory, prefix = source, None
    else:
        directory, prefix = os.path.dirname(source) or ".", os.path.basename(source)
        if not os.path.isdir(directory) or not (os.path.exists(source + ".index") or os.path.exists(source)):
            raise error_for("NOT_FOUND", "%s is neither a checkpoint directory nor a checkpoint prefix "
                                         "(no %s.index)" % (source, source), "ERROR_REASON_CHECKPOINT_NOT_FOUND")
    directory = os.path.abspath(directory)
    names = sorted(n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n)))
    if prefix is None and not layout.checkpoint_dirs(names):
        nested = _nested(directory, step)
        if nested is not None:
            return nested
    state = None
    if layout.STATE_FILE in names:
        with open(os.path.join(directory, layout.STATE_FILE), "r", encoding="utf-8", errors="replace") as fh:
            state = fh.read()
    try:
        sel = layout.select(names, state, step, prefix)
    except layout.SelectionError as exc:
        raise error_for(exc.code, "%s (in %s)" % (exc, directory), exc.reason) from None
    files = [local_file(rel, os.path.join(directory, rel), True) for rel in sel.checkpoint.files()]
    return LocalCheckpoint(directory, sel.checkpoint.prefix, files, sel.warnings, sel.available)
