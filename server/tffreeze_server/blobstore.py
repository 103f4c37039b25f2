"""Content-addressed blob store on disk.

Layout under the data directory::

    blobs/ab/abcdef...     complete blobs, named by lower-case sha256
    partial/<sha256>-<size>-<owner>  resumable uploads in progress, one per upload_id;
                           their declared sizes count against the cap; idle ones expire
    tmp/                   streaming uploads and adopted outputs before commit
    tasks/<task>/in, out   a running task's staged upload and its output folder (see workers.py)

Every blob is verified (length and sha256) before it is renamed into place, so
a reader never sees a half-written blob. The store has a size cap: when a new
blob would exceed it, least-recently-used blobs are evicted; a blob larger than
the cap is refused.

What eviction never takes: the other files of the same freeze as the blob being made room
for (the digests one FindMissingBlobs, or a freeze's own check, asked about together; a
freeze needs them all at once, so evicting one to fit another would loop). A shared server's
resumable upload evicts only blobs unused for ``partial_ttl`` (another client may need them).
The per-user local server's store (``local=True``) evicts any least recently used blob and
discards reservations idle for ``ACTIVE_UPLOAD_SECONDS``, as there is no other user's work to
protect; it keeps the staged inputs of running tasks (hard links: unlinking them frees
nothing), and its refusals name the ``tffreeze local-server`` options that make the store
larger or empty it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from typing import BinaryIO, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

from tffreeze_api.fileio import write_all

from .settings import DEFAULT_MAX_STORE_BYTES, DEFAULT_PARTIAL_TTL_SECONDS
from .core.digest import BackgroundSha256
from .core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable

CHUNK = 1 << 20  # 1 MiB: the largest chunk either direction carries.
MAX_UPLOAD_ID = 128
MAX_OPEN_UPLOADS = 256  # resumable uploads in progress (each reserves its declared size)
MAX_OPEN_UPLOADS_PER_ID = 32  # of those, sharing one upload_id
_HEX = re.compile(r"^[0-9a-f]{64}$")
ACTIVE_UPLOAD_SECONDS = 30.0  # a resumable upload written to this recently is in progress: never discarded for room
MAX_GROUPS = 20000  # digests remembered with the files asked about beside them


def human(size: int) -> str:
    """Bytes for people: 64 MiB, 4 GiB, 1.5 GiB, 300 bytes."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if size >= 1 << shift:
            value = size / float(1 << shift)
            return ("%d %s" if value == int(value) else "%.1f %s") % (value, unit)
    return "%d bytes" % size


def suggest(cap: int, need: int) -> str:
    """A larger store for --max-store-bytes: at least twice the cap and twice what is needed,
    in whole GiB (whole MiB below 1 GiB)."""
    want = max(2 * cap, 2 * need)
    unit = 1 << 30 if want >= 1 << 30 else 1 << 20
    n = -(-want // unit)
    return "%d%s" % (n, "G" if unit == 1 << 30 else "M")


def check_digest(sha256: str, size: int) -> None:
    if not _HEX.match(sha256 or ""):
        raise InvalidArgument("digest %r is not a lower-case hex sha256 (64 characters)" % ((sha256 or "")[:80],),
                              "ERROR_REASON_INVALID_DIGEST")
    if size < 0:
        raise InvalidArgument("digest %s has negative size %d" % (sha256[:12], size), "ERROR_REASON_INVALID_DIGEST", sha256=sha256)


class BlobStore:
    def __init__(self, root: str, max_bytes: int = DEFAULT_MAX_STORE_BYTES,
                 partial_ttl: float = DEFAULT_PARTIAL_TTL_SECONDS, local: bool = False):
        self.root = os.path.abspath(root)
        self.max_bytes = max_bytes
        self.partial_ttl = partial_ttl
        self.local = local  # the per-user local server's store (see the module's docstring)
        self._lock = threading.Lock()
        # sha256 -> (when, the digests asked about with it): a freeze's files, kept from evicting each other
        self._groups: Dict[str, Tuple[float, FrozenSet[Tuple[str, int]]]] = {}
        for sub in ("blobs", "partial", "tmp", "tasks"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        # the folder the workers' sandboxes were given, held open: its inode is not reused while held
        self._tasks_fd = os.open(os.path.join(self.root, "tasks"), os.O_RDONLY | os.O_DIRECTORY)
        self._expire_at_start()  # resumable uploads survive a restart, but not forever
        # Leftovers of a previous run (crash mid-upload or mid-freeze) are garbage.
        for folder in (self.tmp_dir, self.tasks_dir):
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)

    def _expire_at_start(self) -> None:
        self.expire_partials()

    def _folder(self, sub: str) -> str:
        """One of the store's folders, made again if it went (a user who cleared the store's folder
        by hand while the server ran: the next call works, it is not an INTERNAL error)."""
        path = os.path.join(self.root, sub)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def tmp_dir(self) -> str:
        return self._folder("tmp")

    @property
    def tasks_dir(self) -> str:
        """Running tasks' folders (staged uploads as hard links to blobs, outputs); each task's
        sandbox sees only its own, the inputs read-only."""
        return os.path.join(self.root, "tasks")

    def check_tasks_folder(self) -> None:
        """UNAVAILABLE / STORE_UNAVAILABLE when the tasks folder the workers were given is gone or
        another (the store's folder removed by hand while the server ran): the workers cannot see
        a task staged now, so the server must be restarted."""
        try:
            st, held = os.stat(os.path.join(self.root, "tasks")), os.fstat(self._tasks_fd)
            same = (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino) and held.st_nlink > 0
        except OSError:
            same = False
        if not same:
            raise Unavailable("the server's store folder %s was removed or replaced while the server ran, and its "
                              "TensorFlow workers no longer see it: restart the server (your local server: "
                              "`tffreeze local-server stop`; the next command starts a new one)" % self.root,
                              "ERROR_REASON_STORE_UNAVAILABLE")

    def path(self, sha256: str) -> str:
        return os.path.join(self.root, "blobs", sha256[:2], sha256)

    def _partial(self, sha256: str, size: int, upload_id: str) -> str:
        """One file per (blob, uploader): ``<sha256>-<declared size>-<hash of the upload id>``."""
        return os.path.join(self._folder("partial"), "%s-%d-%s" % (sha256, size, self._owner(upload_id)))

    @staticmethod
    def _owner(upload_id: str) -> str:
        return hashlib.sha256(upload_id.encode("utf-8")).hexdigest()[:16]

    def _partials(self) -> List[Tuple[str, int, float]]:
        """(path, declared size, last write time) of every partial upload."""
        out = []
        folder = self._folder("partial")
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            parts = name.split("-")
            try:
                out.append((path, int(parts[1]) if len(parts) == 3 else os.path.getsize(path),
                            os.path.getmtime(path)))
            except (OSError, ValueError):
                continue
        return out

    def expire_partials(self, now: Optional[float] = None) -> int:
        """Delete partial uploads idle for longer than ``partial_ttl``; returns how many."""
        now = time.time() if now is None else now
        gone = 0
        for path, _, mtime in self._partials():
            if now - mtime > self.partial_ttl:
                try:
                    os.unlink(path)
                    gone += 1
                except OSError:
                    pass
        return gone

    def _reserve_partial(self, size: int, upload_id: str, sha256: str = "") -> None:
        """A new resumable upload reserves its declared size, but only what fits beside
        the stored blobs and the other reservations without evicting a blob used within
        the last ``partial_ttl`` seconds (another client may still need it): idle
        uploads expire and long-unused blobs are evicted first; beyond that it is
        RESOURCE_EXHAUSTED. The local server's store evicts any least recently used blob
        but the same freeze's other files, and discards idle reservations, to make room.
        At most MAX_OPEN_UPLOADS reservations are open, and MAX_OPEN_UPLOADS_PER_ID for one
        upload_id."""
        self.expire_partials()
        self._check_group(sha256, size)
        if self.local:
            self._drop_idle_partials(size)
        partials = self._partials()
        owner = self._owner(upload_id)
        mine = sum(1 for path, _, _ in partials if path.endswith("-" + owner))
        if len(partials) >= MAX_OPEN_UPLOADS or mine >= MAX_OPEN_UPLOADS_PER_ID:
            raise ResourceExhausted(
                "too many resumable uploads are open (%s); finish or abandon some (idle ones expire after %d s)"
                % ("%d of at most %d for this upload_id" % (mine, MAX_OPEN_UPLOADS_PER_ID)
                   if mine >= MAX_OPEN_UPLOADS_PER_ID else "%d, at most %d" % (len(partials), MAX_OPEN_UPLOADS),
                   self.partial_ttl), "ERROR_REASON_STORE_FULL")
        reserved = sum(s for _, s, _ in partials)
        free = self.max_bytes - reserved - self._blob_bytes()
        if size > free:
            free += self._evict(size - free, idle_for=0.0 if self.local else self.partial_ttl,
                                keep=self._kept(sha256))
        if size > free and self.local:
            raise self._local_full(size, reserved, free, sha256)
        if size > free:
            raise ResourceExhausted(
                "a resumable upload of %d bytes does not fit: the store's cap is %d bytes, resumable uploads in "
                "progress reserve %d and recently used blobs hold the rest (only %d bytes are free). Retry once uploads "
                "in progress finish (idle ones expire after %d s), upload without resuming (UploadBlob), or start "
                "the server with a larger --max-store-bytes" % (size, self.max_bytes, reserved, max(0, free),
                                                                 self.partial_ttl), "ERROR_REASON_STORE_FULL")

    # -- queries ---------------------------------------------------------
    def _local_has(self, sha256: str, size: int) -> bool:
        try:
            return os.path.getsize(self.path(sha256)) == size
        except OSError:
            return False

    def has(self, sha256: str, size: int) -> bool:
        """The blob is in the store (for a shared store: in the bucket, maybe not in this cache)."""
        return self._local_has(sha256, size)

    def missing(self, digests: Iterable[Tuple[str, int]]) -> List[Tuple[str, int]]:
        """The digests not stored. Those asked about together are remembered as one freeze's
        files (not evicted to make room for each other), and the stored ones count as used now."""
        out, seen, asked = [], set(), []
        for sha, size in digests:
            check_digest(sha, size)
            if (sha, size) in seen:
                continue
            seen.add((sha, size))
            asked.append((sha, size))
            if not self.has(sha, size):
                out.append((sha, size))
            else:
                self.touch(sha)
        self._remember(asked)
        return out

    # -- writing ---------------------------------------------------------
    def _check_fits(self, size: int) -> None:
        """A blob larger than the whole store is refused from its declared size, before a byte is written."""
        if size > self.max_bytes and self.local:
            raise ResourceExhausted(
                "a file of %s (%d bytes) is larger than the local server's whole store (%s). %s"
                % (human(size), size, human(self.max_bytes), self.local_fix(size)), "ERROR_REASON_STORE_FULL")
        if size > self.max_bytes:
            raise ResourceExhausted("blob of %d bytes exceeds the store's cap of %d bytes; start the server "
                                    "with a larger --max-store-bytes" % (size, self.max_bytes), "ERROR_REASON_STORE_FULL")

    def _blobs(self) -> List[Tuple[float, int, str, int]]:
        """(last use, size, path, links) of every stored blob; more than one link: staged in a task."""
        entries = []
        for root, _, files in os.walk(os.path.join(self.root, "blobs")):
            for f in files:
                p = os.path.join(root, f)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, p, st.st_nlink))
        return entries

    def _blob_bytes(self) -> int:
        return sum(e[1] for e in self._blobs())

    def _evict(self, wanted: int, idle_for: float = 0.0, keep: Optional[Set[str]] = None) -> int:
        """Evict least recently used blobs (only those unused for ``idle_for`` seconds, never
        those in ``keep``) until ``wanted`` bytes are freed; returns the bytes freed."""
        freed = 0
        now = time.time()
        for mtime, sz, p, links in sorted(self._blobs()):
            if freed >= wanted or now - mtime < idle_for:
                break
            if (links > 1 and self.local) or (keep and os.path.basename(p) in keep):
                continue  # links > 1: a running task's input (unlinking frees nothing; the local store keeps it)
            try:
                os.unlink(p)
                freed += sz
            except OSError:
                pass
        return freed

    def fit_cap(self) -> int:
        """Evict least recently used blobs until the store is within its cap (a server restarted
        with a smaller --max-store-bytes over a larger store); returns the bytes freed."""
        with self._lock:
            over = self._blob_bytes() - self.max_bytes
            return self._evict(over) if over > 0 else 0

    # -- what a freeze needs together ------------------------------------
    def _remember(self, asked: List[Tuple[str, int]]) -> None:
        """The digests of one request (a freeze's files): none is evicted to make room for another."""
        if len(asked) < 2:
            return
        now = time.time()
        group = frozenset(asked)
        with self._lock:
            if len(self._groups) + len(group) > MAX_GROUPS:
                self._groups = {k: v for k, v in self._groups.items() if now - v[0] <= self.partial_ttl}
                if len(self._groups) + len(group) > MAX_GROUPS:
                    self._groups.clear()
            for sha, _ in group:
                self._groups[sha] = (now, group)

    def _group(self, sha256: str) -> FrozenSet[Tuple[str, int]]:
        if getattr(self, "remote", None) is not None:  # a shared bucket's cache: evicted files are fetched again
            return frozenset()
        entry = self._groups.get(sha256)
        if entry is None or time.time() - entry[0] > self.partial_ttl:
            return frozenset()
        return entry[1]

    def _kept(self, sha256: str) -> Set[str]:
        """Blobs that making room for ``sha256`` must not evict: the same freeze's other files."""
        return {s for s, _ in self._group(sha256) if s != sha256}

    def _check_group(self, sha256: str, size: int) -> None:
        """Refused up front when the freeze's files cannot all be in the store at once."""
        group = self._group(sha256)
        total = sum(n for _, n in group) if (sha256, size) in group else 0
        if total <= self.max_bytes:
            return
        if self.local:
            raise ResourceExhausted(
                "this freeze's %d files total %s (%d bytes), more than the local server's store holds (%s): a freeze "
                "needs all its files in the store at once. %s" % (len(group), human(total), total,
                                                                   human(self.max_bytes), self.local_fix(total)),
                "ERROR_REASON_STORE_FULL")
        raise ResourceExhausted(
            "this freeze's %d files total %d bytes, more than the store's cap of %d bytes: a freeze needs all its "
            "files in the store at once; start the server with a larger --max-store-bytes"
            % (len(group), total, self.max_bytes), "ERROR_REASON_STORE_FULL")

    def _drop_idle_partials(self, size: int) -> None:
        """The local store: discard reservations of resumable uploads not written to for
        ACTIVE_UPLOAD_SECONDS (an interrupted freeze), oldest first, while ``size`` more
        bytes do not fit beside them and every blob (an interrupted upload goes before a
        stored checkpoint is evicted, and is never said to be in progress)."""
        partials = sorted(self._partials(), key=lambda p: p[2])
        over = sum(s for _, s, _ in partials) + self._blob_bytes() + size - self.max_bytes
        now = time.time()
        for path, declared, mtime in partials:
            if over <= 0 or now - mtime < ACTIVE_UPLOAD_SECONDS:
                break
            try:
                os.unlink(path)
                over -= declared
            except OSError:
                pass

    def local_fix(self, need: int) -> str:
        """What a user of the local server does about a full store, from any client."""
        bigger = suggest(self.max_bytes, need)
        return ("Give the local server a larger store: `tffreeze local-server stop`, then `tffreeze local-server "
                "start --max-store-bytes %s` (or set TFFREEZE_LOCAL_STORE_BYTES=%s wherever the server is started "
                "from, e.g. before the next freeze); `tffreeze local-server clean` empties the store"
                % (bigger, bigger))

    def _local_full(self, size: int, reserved: int, free: int, sha256: str, what: str = "") -> ResourceExhausted:
        kept = sum(n for s, n in self._group(sha256) if s != sha256 and self._local_has(s, n))
        staged = sum(e[1] for e in self._blobs() if e[3] > 1)
        held = []
        if kept:
            held.append("the same freeze's other files hold %s" % human(kept))
        if staged:
            held.append("the checkpoint files of the freezes running now (this one's too) hold %s" % human(staged))
        if reserved:
            held.append("uploads in progress (written to within %d s) reserve %s"
                        % (ACTIVE_UPLOAD_SECONDS, human(reserved)))
        return ResourceExhausted(
            "%s does not fit in the local server's store (%s; %s, %s free). %s"
            % ("%s (%s)" % (what, human(size)) if what else "a file of %s" % human(size), human(self.max_bytes),
               "; ".join(held) or "nothing else can be evicted",
               human(max(0, free)), self.local_fix(size + kept + reserved)), "ERROR_REASON_STORE_FULL")

    def _make_room(self, size: int, sha256: str = "", what: str = "") -> None:
        """Evict least recently used blobs until ``size`` more bytes fit; when they cannot
        fit even with every blob gone (reservations hold the rest), nothing is evicted."""
        self._check_fits(size)
        self._check_group(sha256, size)
        if self.local:
            self._drop_idle_partials(size)
        reserved = sum(s for _, s, _ in self._partials())
        if reserved + size > self.max_bytes and self.local:
            raise self._local_full(size, reserved, self.max_bytes - reserved - self._blob_bytes(), sha256, what)
        if reserved + size > self.max_bytes:
            raise ResourceExhausted(
                "a blob of %d bytes does not fit: resumable uploads in progress reserve %d of the store's %d bytes; "
                "retry once they finish or expire, or start the server with a larger --max-store-bytes"
                % (size, reserved, self.max_bytes), "ERROR_REASON_STORE_FULL")
        over = self._blob_bytes() + reserved + size - self.max_bytes
        if over > 0 and self._evict(over, keep=self._kept(sha256)) < over:
            if self.local:
                raise self._local_full(size, reserved, size - over, sha256, what)
            raise ResourceExhausted(
                "a blob of %d bytes does not fit: the same freeze's other files and resumable uploads in progress "
                "hold the store's %d bytes; start the server with a larger --max-store-bytes" % (size, self.max_bytes),
                "ERROR_REASON_STORE_FULL")

    def commit_file(self, tmp_path: str, sha256: str, size: int, actual_sha256: Optional[str] = None) -> None:
        """Verify a complete temporary file and move it into place (or drop it if
        present). ``actual_sha256``: the hash already computed while writing."""
        actual_size = os.path.getsize(tmp_path)
        if actual_size != size:
            os.unlink(tmp_path)
            raise InvalidArgument("upload of %s has %d bytes, the digest says %d" % (sha256[:12], actual_size, size),
                                  "ERROR_REASON_INVALID_DIGEST", sha256=sha256)
        if actual_sha256 is None:
            h = hashlib.sha256()
            with open(tmp_path, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    h.update(block)
            actual_sha256 = h.hexdigest()
        if actual_sha256 != sha256:
            os.unlink(tmp_path)
            raise InvalidArgument("upload's sha256 is %s, the digest says %s; the data was corrupted in "
                                  "transit or the digest is wrong" % (actual_sha256, sha256), "ERROR_REASON_INVALID_DIGEST",
                                  sha256=sha256)
        self.adopt(tmp_path, sha256, size)

    def adopt(self, tmp_path: str, sha256: str, size: int, what: str = "") -> None:
        """Move a verified file into place atomically (``what``: the file, in a refusal's words)."""
        with self._lock:
            if self._local_has(sha256, size):
                os.unlink(tmp_path)
                self.touch(sha256)
                return
            self._make_room(size, sha256, what)
            dest = self.path(sha256)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(tmp_path, dest)

    def take_output(self, path: str, sha256: str, size: int) -> None:
        """Copy a task's output into the store, checking its sha256 on the way in.
        Called once the task's processes are gone; the file is read through one
        descriptor opened without following symlinks, must be a regular file of
        ``size`` bytes, and is never linked or renamed into the store."""
        check_digest(sha256, size)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise FailedPrecondition("the task reported an output it did not write as a regular file (%s); "
                                     "nothing was stored" % exc.strerror, "ERROR_REASON_WORKER_CRASHED") from None
        tmp = None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise FailedPrecondition("the task's output is not a regular file of the %d bytes it reported; "
                                         "nothing was stored" % size, "ERROR_REASON_WORKER_CRASHED")
            self._check_fits(size)
            fh, tmp = self.new_tmp(".output")
            h = BackgroundSha256()
            try:
                with fh, os.fdopen(os.dup(fd), "rb", buffering=0) as src:
                    copied = 0
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        h.update(block)
                        write_all(fh, block)
                        copied += len(block)
                actual = h.hexdigest()
            finally:
                h.close()
            if copied != size or actual != sha256:
                raise FailedPrecondition("the task's output does not match the digest it reported (%d bytes, sha256 "
                                         "%s); nothing was stored" % (copied, actual[:12]),
                                         "ERROR_REASON_WORKER_CRASHED")
            self.adopt(tmp, sha256, size, "the frozen graph")
        finally:
            os.close(fd)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def new_tmp(self, suffix: str = "") -> Tuple[BinaryIO, str]:
        fd, path = tempfile.mkstemp(dir=self.tmp_dir, suffix=suffix)
        return os.fdopen(fd, "wb"), path

    def write_stream(self, sha256: str, size: int, chunks: Iterator[Tuple[int, bytes]]) -> str:
        """Store a blob from (offset, data) chunks in order; nothing is left on failure.
        Returns the sha256."""
        check_digest(sha256, size)
        self._check_fits(size)
        self._check_group(sha256, size)
        fh, tmp = self.new_tmp(".upload")
        h = BackgroundSha256()  # hashed beside the writes
        try:
            written = 0
            with fh:
                for offset, data in chunks:
                    if offset != written:
                        raise InvalidArgument("chunk at offset %d, expected %d: chunks must be sent in order"
                                              % (offset, written), "ERROR_REASON_INVALID_CHUNK")
                    if len(data) > CHUNK:
                        raise InvalidArgument("chunk of %d bytes exceeds the 1 MiB limit" % len(data), "ERROR_REASON_INVALID_CHUNK")
                    written += len(data)
                    if written > size:
                        raise InvalidArgument("upload of %s exceeds its declared size %d" % (sha256[:12], size),
                                              "ERROR_REASON_INVALID_CHUNK")
                    write_all(fh, data)
                    h.update(data)
            self.commit_file(tmp, sha256, size, h.hexdigest())
            return sha256
        finally:
            h.close()
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _chunk_done(self, sha256: str, size: int, data: bytes, upload_id: str) -> bool:
        """Check a resumable chunk's digest, upload id and size; True when the blob is already stored."""
        check_digest(sha256, size)
        if len(upload_id) > MAX_UPLOAD_ID:
            raise InvalidArgument("upload_id is %d characters; at most %d" % (len(upload_id), MAX_UPLOAD_ID),
                                  "ERROR_REASON_INVALID_CHUNK")
        if self.has(sha256, size):
            return True
        self._check_fits(size)
        self._check_group(sha256, size)
        if len(data) > CHUNK:
            raise InvalidArgument("chunk of %d bytes exceeds the 1 MiB limit" % len(data), "ERROR_REASON_INVALID_CHUNK")
        return False

    def write_chunk(self, sha256: str, size: int, offset: int, data: bytes, finish: bool,
                    upload_id: str = "") -> Tuple[int, bool]:
        """Append one chunk of a resumable upload. Returns (committed size, complete).
        Each ``upload_id`` has its own partial file: another client's chunks or
        finish_write never touch it."""
        if self._chunk_done(sha256, size, data, upload_id):
            return size, True
        part = self._partial(sha256, size, upload_id)
        with self._lock:
            current = os.path.getsize(part) if os.path.exists(part) else 0
            if current == 0 and offset == 0 and not os.path.exists(part):
                self._reserve_partial(size, upload_id, sha256)
            if offset != current:
                raise FailedPrecondition("chunk at offset %d but %d bytes of %s are committed; resume at %d"
                                         % (offset, current, sha256[:12], current), "ERROR_REASON_WRONG_OFFSET",
                                         committed_size=current)
            if current + len(data) > size:
                if os.path.exists(part):
                    os.unlink(part)
                raise InvalidArgument("upload of %s exceeds its declared size %d" % (sha256[:12], size), "ERROR_REASON_INVALID_CHUNK")
            with open(part, "ab") as fh:
                write_all(fh, data)
            current += len(data)
        if finish:
            fh, tmp = self.new_tmp(".upload")
            fh.close()
            os.replace(part, tmp)
            try:
                self.commit_file(tmp, sha256, size)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return size, True
        return current, False

    # -- reading ---------------------------------------------------------
    def touch(self, sha256: str) -> None:
        try:
            os.utime(self.path(sha256))
        except OSError:
            pass

    def open(self, sha256: str, size: Optional[int] = None) -> BinaryIO:
        check_digest(sha256, size if size is not None else 0)
        try:
            fh = open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise NotFound("blob %s is not on the server; upload it (or freeze again)" % sha256[:12],
                           "ERROR_REASON_BLOB_NOT_FOUND", sha256=sha256) from None
        self.touch(sha256)
        return fh

    def stored_bytes(self) -> int:
        """Bytes of complete blobs in the store."""
        total = 0
        for root, _, files in os.walk(os.path.join(self.root, "blobs")):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def link_into(self, sha256: str, dest: str) -> None:
        """Place a blob at ``dest`` (hard link, else copy)."""
        src = self.path(sha256)
        self.touch(sha256)
        try:
            os.link(src, dest)
        except FileNotFoundError:
            raise FailedPrecondition("blob %s is not on the server (evicted or never uploaded); upload it "
                                     "again" % sha256[:12], "ERROR_REASON_BLOBS_MISSING", sha256=sha256) from None
        except OSError:
            shutil.copyfile(src, dest)
