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
  entry whose file changed since it was stored is ignored; a graph is copied out only once
  the bytes copied match the sha256 the server reported.

Both are trusted only as far as they are checked (issue 32): before anything in the cache
folder is read, the folder is checked by the local server folder's rules
(``tffreeze_api.localserver``, ``CACHE``): the folders above it only this user or root can
change, the folder itself not a symbolic link, this user's (the effective uid: root too) and
not writable by group or others; ``digests.json``, ``results/`` and each graph in it are
opened with O_NOFOLLOW relative to the checked folder and must be this user's, not writable
by group or others. When a check fails, the caches are not used for the rest of the process
(files are hashed, graphs downloaded) and one warning line on stderr says which folder, why
and the fix. What this client writes there is made 0600 (folders 0700) under a temporary
name and renamed into place, never through a symbolic link.
"""

from __future__ import annotations

# hashlib, shutil and tempfile are imported where they are used: a re-freeze that neither hashes
# nor writes starts ~10 ms sooner without them.
import json
import os
import sys
import threading
import time
from typing import Dict, List, Optional

from tffreeze_api import localserver

HASH_BLOCK = 1 << 20
_MAX_ENTRIES = 20000
_RACY_SECONDS = 2.0
_lock = threading.Lock()
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
DIGESTS = "digests.json"
RESULTS = "results"
_distrusted: Dict[str, str] = {}  # cache folder -> why it is not used (warned once per process)
_warn_lock = threading.Lock()  # not _lock: a check may fail while _lock is held


def cache_dir() -> Optional[str]:
    value = os.environ.get("TFFREEZE_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tffreeze")


def _distrust(root: str, exc: BaseException) -> None:
    """The cache folder ``root`` failed a check: not used again by this process; one warning."""
    with _warn_lock:
        if root in _distrusted:
            return
        _distrusted[root] = str(exc)
    sys.stderr.write("tffreeze: warning: the cache is not used: %s\n" % " ".join(str(exc).split()))
    sys.stderr.flush()


def _open_root(make: bool = False) -> Optional[localserver.Folder]:
    """The cache folder, checked and held open (made 0700 when ``make``); None when the caches
    are off, the folder is missing (or cannot be made) or it failed a check (warned)."""
    root = cache_dir()
    if not root:
        return None
    root = os.path.abspath(root)
    if root in _distrusted:
        return None
    try:
        return localserver.own_folder(root, localserver.CACHE, make=make)
    except localserver.UntrustedFolder as exc:
        _distrust(root, exc)
    except OSError:
        pass
    return None


def _write_in(folder: localserver.Folder, name: str, write) -> None:
    """Write ``name`` in the checked ``folder``: a new 0600 file (O_EXCL, O_NOFOLLOW) filled by
    ``write(fileobj)``, renamed into place."""
    tmp = ".%s.%d.%d.part" % (name, os.getpid(), threading.get_ident())
    folder.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=folder.fd)
    try:
        with open(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
    except BaseException:
        folder.unlink(tmp)
        raise


def _hash(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(st) -> List[int]:
    """What says a file is unchanged: size, mtime, inode, device, and ctime, which a file written
    in place with its mtime set back (tar --mtime, touch -d) does not keep."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns]


def owner_name(uid: int) -> str:
    """A user's name and uid ("uid N" where the name is unknown)."""
    import pwd

    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def unreadable(path: str, folder: bool = False) -> str:
    """The words every client says for a checkpoint file the user may not read (a folder: list):
    the chmod that fixes it, or, for another user's, its owner (chmod is not this user's to run)."""
    verb, mode = ("list", "u+rx") if folder else ("read", "u+r")
    owner = os.stat(path).st_uid
    if owner != os.geteuid():
        return ("cannot %s %s: permission denied; it belongs to another user, %s: ask them to make it readable, or "
                "freeze a copy you can read" % (verb, path, owner_name(owner)))
    return ("cannot %s %s: permission denied; make it readable (chmod %s %s), or freeze a copy you can read"
            % (verb, path, mode, path))


class _Digests:
    def __init__(self):
        self._entries: Optional[Dict[str, list]] = None
        self._dirty = False

    def _file(self) -> Optional[str]:
        root = cache_dir()
        if not root or os.path.abspath(root) in _distrusted:
            return None
        return os.path.join(root, DIGESTS)

    def _load(self) -> Dict[str, list]:
        if self._entries is None:
            self._entries = {}
            folder = _open_root() if self._file() else None
            if folder is not None:
                try:
                    with folder:
                        text = folder.read(DIGESTS)  # O_NOFOLLOW, then fstat: this user's, not writable by others
                    data = json.loads(text) if text else None
                    if isinstance(data, dict):
                        self._entries = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 6}
                except localserver.UntrustedFolder as exc:
                    _distrust(folder.path, exc)
                except (OSError, ValueError):
                    pass
        return self._entries

    def cached(self, path: str) -> Optional[str]:
        """The file's sha256 when the cache holds it for the file's current stamp, else None."""
        real = os.path.realpath(path)
        st = os.stat(real)
        with _lock:
            entry = self._load().get(real)
            return entry[5] if entry is not None and entry[:5] == _stamp(st) else None

    def sha256(self, path: str) -> str:
        """The file's sha256, from the cache when its stamp is unchanged."""
        if not os.access(path, os.R_OK) and os.path.exists(path):
            from tffreeze_api.errors import error_for
            raise error_for("PERMISSION_DENIED", unreadable(path), metadata={"path": path})
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
                if entry[2:4] == [st.st_ino, st.st_dev] and entry[5] == digest and other != real:
                    entries[other] = stamp + [digest]
            self._dirty = True

    def save(self) -> None:
        with _lock:
            if not self._file() or not self._dirty:
                return
            entries = self._load()
            if len(entries) > _MAX_ENTRIES:
                for k in list(entries)[:len(entries) - _MAX_ENTRIES]:
                    del entries[k]
            data = json.dumps(entries).encode("utf-8")
        folder = _open_root(make=True)
        if folder is None:
            return
        with _lock, folder:
            try:
                _write_in(folder, DIGESTS, lambda fh: fh.write(data))
                self._dirty = False
            except OSError:
                pass  # a cache that cannot be written only costs time


digests = _Digests()


def sha256_file(path: str) -> str:
    return digests.sha256(path)


DEFAULT_MAX_BYTES = 1 << 30


def max_bytes() -> int:
    """The results cache's size bound: $TFFREEZE_CACHE_MAX_BYTES (default 1 GiB)."""
    try:
        return max(0, int(os.environ.get("TFFREEZE_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BYTES


def _results(make: bool = False) -> Optional[localserver.Folder]:
    """``results/`` in the cache folder, both checked and held open; None when there is none
    (or the caches are off, or failed a check: warned)."""
    root = _open_root(make)
    if root is None:
        return None
    with root:
        try:
            return root.sub(RESULTS, make=make)
        except localserver.UntrustedFolder as exc:
            _distrust(root.path, exc)
        except OSError:
            pass
    return None


def _trim(folder: localserver.Folder, limit: int) -> None:
    """Remove the least recently used graphs (by atime, which place_result sets) beyond ``limit`` bytes."""
    try:
        entries = []
        for e in os.scandir(folder.fd):
            st = e.stat(follow_symlinks=False)
            entries.append((st.st_atime, st.st_size, e.name))
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, name in sorted(entries):
        if total <= limit:
            break
        try:
            os.unlink(name, dir_fd=folder.fd)
            total -= size
        except OSError:
            pass


def keep_result(path: str, sha256: str) -> None:
    """Copy a received graph into the results cache (a copy: the output is never a link into
    the cache), when it takes at most an eighth of the cache's bound; then trim the cache."""
    limit = max_bytes()
    try:
        if os.path.getsize(path) > limit // 8:
            return
    except OSError:
        return
    folder = _results(make=True)
    if folder is None:
        return
    with folder:
        try:
            try:
                folder.lstat(sha256)
                return  # held already (checked when it is used)
            except FileNotFoundError:
                pass

            def copy(out) -> None:
                import shutil

                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, HASH_BLOCK)

            _write_in(folder, sha256, copy)
            digests.remember(os.path.join(folder.path, sha256), sha256)  # a copy of ``path``, just verified
            _trim(folder, limit)
        except OSError:
            pass


def place_result(sha256: str, size: int, path: str) -> bool:
    """Put a copy of a cached graph with this digest at ``path`` (atomically), once the bytes
    copied are checked against ``sha256``: a cached graph that does not match is never output
    (and is removed). False when the cache does not hold it unchanged."""
    folder = _results()
    if folder is None:
        return False
    import hashlib

    with folder:
        try:
            fd = folder.open(sha256)  # O_NOFOLLOW, then fstat: a regular file of this user's, not writable by others
        except localserver.UntrustedFolder as exc:
            _distrust(os.path.dirname(folder.path), exc)
            return False
        except OSError:
            return False
        with open(fd, "rb") as src:
            st = os.fstat(fd)
            if st.st_size != size:
                return False
            directory = os.path.dirname(os.path.abspath(path))
            import tempfile

            from tffreeze_api.fileio import as_user_file

            try:
                out_fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".part")
            except OSError:
                return False
            try:
                h = hashlib.sha256()
                with open(out_fd, "wb") as out:
                    for block in iter(lambda: src.read(HASH_BLOCK), b""):
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != sha256:  # damaged, or not what it claims to be: never output
                    folder.unlink(sha256)
                    return False
                as_user_file(tmp)
                os.replace(tmp, path)
                os.utime(fd, ns=(time.time_ns(), st.st_mtime_ns))  # used now (atime); mtime kept for the digest cache
                return True
            except OSError:
                return False
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


__all__ = ["cache_dir", "sha256_file", "digests", "keep_result", "place_result"]
