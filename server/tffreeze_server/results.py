"""The result cache: the same uploaded bytes + the same options + the same engine
give the same frozen bytes, so a repeated freeze is a lookup — no worker, no
TensorFlow — answered with the stored FreezeResult (the manifest) while its
frozen graph is still in the blob store.

The key is a SHA-256 over the engine's fingerprint (this package's code, its op
list, the TensorFlow version), the request's files (path, sha256, size, sorted)
and options (deterministic serialization) and the server limits that change
what the engine does. Entries are small files under ``DATA/results``; one whose
frozen graph was evicted from the store is a miss (and is removed).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from importlib import metadata
from typing import Optional, Tuple

from tffreeze_api.v1 import freeze_pb2

from . import __version__


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """Changes whenever the engine could produce other bytes: our code or data, or TensorFlow."""
    h = hashlib.sha256(__version__.encode())
    try:
        h.update(metadata.version("tensorflow").encode())
    except metadata.PackageNotFoundError:
        h.update(b"tensorflow?")
    root = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".py", ".txt", ".json")):
                path = os.path.join(folder, name)
                h.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def key(request: freeze_pb2.FreezeRequest, limits) -> str:
    h = hashlib.sha256(engine_fingerprint().encode())
    for f in sorted(request.files, key=lambda f: f.path):
        h.update(b"%s\0%s\0%d\0" % (f.path.encode("utf-8", "surrogatepass"), f.digest.sha256.encode(),
                                     f.digest.size_bytes))
    h.update(request.options.SerializeToString(deterministic=True))
    h.update(repr(limits).encode())
    return h.hexdigest()


class ResultCache:
    """``shared``: with a shared store (s3store.SharedResults), entries live in the bucket
    and this replica's files are a cache in front of it, so any replica's freeze is a hit
    on every other."""

    def __init__(self, root: str, store, shared=None):
        self.root = os.path.join(root, "results")
        self.store = store
        self.shared = shared
        os.makedirs(self.root, exist_ok=True)

    def _fetch(self, k: str) -> None:
        """Copy a shared entry (and its recipe) into this replica's cache."""
        if self.shared is None or os.path.exists(self._path(k)):
            return
        data = self.shared.get(k)
        if data is None:
            return
        recipe = self.shared.get(k + ".recipe")
        if recipe is not None:
            self._write(self._path(k) + ".recipe", recipe)
        self._write(self._path(k), data)

    def _path(self, k: str) -> str:
        return os.path.join(self.root, k)

    def get(self, k: str) -> Tuple[Optional[freeze_pb2.FreezeResult], Optional[freeze_pb2.AssemblyRecipe]]:
        """(result, its assembly recipe or None), or (None, None) on a miss."""
        self._fetch(k)
        try:
            with open(self._path(k), "rb") as fh:
                entry = freeze_pb2.FreezeResponse.FromString(fh.read())
            recipe = None
            if os.path.exists(self._path(k) + ".recipe"):
                with open(self._path(k) + ".recipe", "rb") as fh:
                    recipe = freeze_pb2.AssemblyRecipe.FromString(fh.read())
        except OSError:
            return None, None
        except Exception:  # noqa: BLE001 - a damaged entry is a miss
            self._drop(k)
            return None, None
        result = entry.result
        if not self.store.has(result.sha256, result.size_bytes):
            self._drop(k)  # its graph was evicted: freeze again
            return None, None
        self.store.touch(result.sha256)
        return result, recipe

    def put(self, k: str, result: freeze_pb2.FreezeResult,
            recipe: Optional[freeze_pb2.AssemblyRecipe] = None) -> None:
        entry = freeze_pb2.FreezeResponse(result=result).SerializeToString(deterministic=True)
        if recipe is not None:
            self._write(self._path(k) + ".recipe", recipe.SerializeToString(deterministic=True))
            if self.shared is not None:
                self.shared.put(k + ".recipe", recipe.SerializeToString(deterministic=True))
        if self.shared is not None:
            self.shared.put(k, entry)  # the entry last: a reader that finds it finds its recipe
        self._write(self._path(k), entry)

    def _write(self, path: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            if os.path.exists(tmp):
                os.unlink(tmp)  # a cache that cannot be written is only slower

    def _drop(self, k: str) -> None:
        if self.shared is not None:
            self.shared.delete(k)
        for path in (self._path(k), self._path(k) + ".recipe"):
            try:
                os.unlink(path)
            except OSError:
                pass


__all__ = ["ResultCache", "key", "engine_fingerprint"]
