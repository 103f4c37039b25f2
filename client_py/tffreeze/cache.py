"""The client's local caches, under ``$TFFREEZE_CACHE_DIR`` (default
``$XDG_CACHE_HOME/tffreeze``, i.e. ``~/.cache/tffreeze``; ``off`` disables them):

- digests of local files keyed by (real path, size, mtime, inode), as build tools
  do: an unchanged checkpoint is not read again to be hashed. A file modified
  within the last 2 seconds is hashed but not remembered (its mtime could still
  change within the same tick).
- frozen graphs by sha256 (``results/``): a graph this machine already received
  is copied to a new output path instead of being downloaded again (outputs are never
  links into the cache). Graphs up to an eighth of ``$TFFREEZE_CACHE_MAX_BYTES``
  (default 1 GiB) are kept; the least recently used go first beyond that bound. An
  entry whose file changed since it was stored is ignored.
"""

from __future__ import annotations

# hashlib, shutil and tempfile are imported where they are used: a re-freeze that neither hashes
# nor writes starts ~10 ms sooner without them.
import json
import os
import threading
import time
from typing import Dict, List, Optional

HASH_BLOCK = 1 << 20
_MAX_ENTRIES = 20000
_RACY_SECONDS = 2.0
_lock = threading.Lock()


def cache_dir() -> Optional[str]:
    value = os.environ.get("TFFREEZE_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tffreeze")


def _hash(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(st) -> List[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


class _Digests:
    def __init__(self):
        self._entries: Optional[Dict[str, list]] = None
        self._dirty = False

    def _file(self) -> Optional[str]:
        root = cache_dir()
        return os.path.join(root, "digests.json") if root else None

    def _load(self) -> Dict[str, list]:
        if self._entries is None:
            self._entries = {}
            path = self._file()
            if path:
                try:
                    with open(path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    if isinstance(data, dict):
                        self._entries = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 5}
                except (OSError, ValueError):
                    pass
        return self._entries

    def cached(self, path: str) -> Optional[str]:
        """The file's sha256 when the cache holds it for the file's current stamp, else None."""
        real = os.path.realpath(path)
        st = os.stat(real)
        with _lock:
            entry = self._load().get(real)
            return entry[4] if entry is not None and entry[:4] == _stamp(st) else None

    def sha256(self, path: str) -> str:
        """The file's sha256, from the cache when its stamp is unchanged."""
        digest = self.cached(path)
        if digest is not None:
            return digest
        real = os.path.realpath(path)
        st = os.stat(real)
        digest = _hash(real)
        self.hashed(real, st, digest)
        return digest

    def hashed(self, path: str, before: os.stat_result, digest: str) -> None:
        """Record a digest computed over a file's bytes read since ``before`` (its stat
        before the first read): kept only if the file's stamp did not change meanwhile."""
        real = os.path.realpath(path)
        try:
            after = os.stat(real)
        except OSError:
            return
        if _stamp(after) == _stamp(before) and time.time() - after.st_mtime > _RACY_SECONDS and self._file():
            with _lock:
                self._load()[real] = _stamp(after) + [digest]
                self._dirty = True

    def remember(self, path: str, digest: str) -> None:
        """Record a file this process just wrote (complete, renamed into place) and
        verified against ``digest``: a downloaded or placed graph."""
        if not self._file():
            return
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            return
        stamp = _stamp(st)
        with _lock:
            entries = self._load()
            entries[real] = stamp + [digest]
            for other, entry in entries.items():  # hard links of it (the results cache) share the new stamp
                if entry[2:5] == [st.st_ino, st.st_dev, digest] and other != real:
                    entries[other] = stamp + [digest]
            self._dirty = True

    def save(self) -> None:
        path = self._file()
        with _lock:
            if not path or not self._dirty:
                return
            entries = self._load()
            if len(entries) > _MAX_ENTRIES:
                for k in list(entries)[:len(entries) - _MAX_ENTRIES]:
                    del entries[k]
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                import tempfile
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(entries, fh)
                os.replace(tmp, path)
                self._dirty = False
            except OSError:
                pass  # a cache that cannot be written only costs time


digests = _Digests()


def sha256_file(path: str) -> str:
    return digests.sha256(path)


def _results_dir() -> Optional[str]:
    root = cache_dir()
    return os.path.join(root, "results") if root else None


DEFAULT_MAX_BYTES = 1 << 30


def max_bytes() -> int:
    """The results cache's size bound: $TFFREEZE_CACHE_MAX_BYTES (default 1 GiB)."""
    try:
        return max(0, int(os.environ.get("TFFREEZE_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BYTES


def _trim(folder: str, limit: int) -> None:
    """Remove the least recently used graphs (by atime, which place_result sets) beyond ``limit`` bytes."""
    try:
        entries = [(e.stat().st_atime, e.stat().st_size, e.path) for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        try:
            os.unlink(path)
            total -= size
        except OSError:
            pass


def keep_result(path: str, sha256: str) -> None:
    """Copy a received graph into the results cache (a copy: the output is never a link into
    the cache), when it takes at most an eighth of the cache's bound; then trim the cache."""
    folder = _results_dir()
    limit = max_bytes()
    if not folder:
        return
    dest = os.path.join(folder, sha256)
    try:
        if os.path.exists(dest) or os.path.getsize(path) > limit // 8:
            return
        import shutil
        import tempfile

        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        digests.remember(dest, sha256)  # a copy of ``path``, whose digest was just verified
        _trim(folder, limit)
    except OSError:
        pass


def place_result(sha256: str, size: int, path: str) -> bool:
    """Put a copy of a cached graph with this digest at ``path`` (atomically).
    False when the cache does not hold it unchanged."""
    folder = _results_dir()
    if not folder:
        return False
    src = os.path.join(folder, sha256)
    try:
        if os.path.getsize(src) != size or digests.sha256(src) != sha256:
            return False
    except OSError:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    import shutil
    import tempfile

    from tffreeze_api.fileio import as_user_file

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)  # a copy, never a link into the cache
        as_user_file(tmp)
        os.replace(tmp, path)
        st = os.stat(src)
        os.utime(src, ns=(time.time_ns(), st.st_mtime_ns))  # used now (atime); mtime kept for the digest cache
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


__all__ = ["cache_dir", "sha256_file", "digests", "keep_result", "place_result"]
