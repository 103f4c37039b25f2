"""FreezeClient: upload a checkpoint, freeze it, download the frozen graph.

Needs only gRPC and protobuf; never imports TensorFlow.
"""

from __future__ import annotations

# hashlib and tempfile are imported where they are used: a re-freeze that neither hashes
# nor writes starts ~10 ms sooner without them.
import collections
import io
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import grpc

from tffreeze_api.fileio import as_user_file, write_all
from tffreeze_api.options import OptionError, freeze_options, to_text
from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2, service_pb2_grpc

from . import cache as _cache, local as _local, source as _source
from .errors import InvalidArgumentError, TffreezeError, UnavailableError, error_for, from_rpc_error

CHUNK = 1 << 20
_MAX_MESSAGE = 4 << 20
BLOBS_MISSING = "ERROR_REASON_BLOBS_MISSING"
INLINE_GRAPH = 1 << 20  # graphs up to this size come inside the Freeze result (no DownloadBlob)

# progress(kind, done, total, message): kind is "upload" (bytes) or "freeze" (fraction in [0, 1]).
ProgressFn = Callable[[str, float, float, str], None]


def default_target() -> Optional[str]:
    """$TFFREEZE_SERVER, or None: this user's local server (started on demand, see ``local``)."""
    return os.environ.get("TFFREEZE_SERVER") or None


# Calls that may be repeated safely: gRPC retries them on UNAVAILABLE (another replica, or
# the same one a moment later) as long as no response has arrived — for Freeze, before the
# server started work. Round-robin spreads calls over every address of the target.
_RETRIED = ("GetCapabilities", "PlanFreeze", "FindMissingBlobs", "WriteBlobChunk", "DownloadBlob", "Freeze",
            "Inspect")
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "tffreeze.v1.FreezeService", "method": m} for m in _RETRIED],
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "2s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def channel_target(target: str) -> Tuple[str, Optional[str]]:
    """(gRPC target, TLS name) for ``--server``: HOST:PORT, several as H1:P1,H2:P2 (their
    addresses resolved here, balanced round-robin), or a gRPC target URI (dns:///name:port,
    which re-resolves and balances over every address the name has)."""
    for item in target.split(","):
        scheme = item.strip().partition("://")[0].lower()
        if "://" in item and scheme in ("http", "https"):  # the gRPC-Web address, given to a gRPC client
            raise error_for("INVALID_ARGUMENT", "--server %s: tffreeze speaks gRPC: give HOST:PORT (the server's "
                            "'listening on' address), not an %s:// URL (that is the gRPC-Web address tffreeze-cs "
                            "and the page use)" % (target, scheme), "ERROR_REASON_UNSPECIFIED")
    if target.startswith("localhost:") and "," not in target:
        # 127.0.0.1, where servers listen by default: gRPC would also try ::1, and a refusal
        # there would hide the real error of the IPv4 address (a TLS mismatch, say)
        return "ipv4:127.0.0.1:" + target[len("localhost:"):], "localhost"
    if "," not in target:
        return target, None
    addresses, first_host = [], None
    for item in (t.strip() for t in target.split(",") if t.strip()):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise error_for("INVALID_ARGUMENT", "--server %r: write HOST:PORT[,HOST:PORT...]" % target,
                            "ERROR_REASON_UNSPECIFIED")
        host = host.strip("[]")
        first_host = first_host or host
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise error_for("UNAVAILABLE", "--server: cannot resolve %s (%s)" % (host, exc),
                            "ERROR_REASON_UNSPECIFIED") from None
        # gRPC's address lists are all IPv4 or all IPv6: IPv4 where a host has it.
        v4 = [i for i in infos if i[0] == socket.AF_INET]
        for family, _, _, _, sockaddr in v4 or infos:
            addr = "[%s]:%d" % sockaddr[:2] if family == socket.AF_INET6 else "%s:%d" % sockaddr[:2]
            if addr not in addresses:
                addresses.append(addr)
    v6 = [a for a in addresses if a.startswith("[")]
    if v6 and len(v6) < len(addresses):
        raise error_for("INVALID_ARGUMENT", "--server %r mixes IPv4-only and IPv6-only hosts; list one kind"
                        % target, "ERROR_REASON_UNSPECIFIED")
    return ("ipv6:" if v6 else "ipv4:") + ",".join(addresses), first_host


@dataclass
class UploadStats:
    files: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    skipped_bytes: int = 0


@dataclass
class FreezeOutcome:
    """What ``FreezeClient.freeze`` returns: the server's FreezeResult, its
    manifest (the bytes the server rendered; as a dict: ``manifest``), and the graph."""

    result: freeze_pb2.FreezeResult
    manifest_bytes: bytes = b""
    graph_bytes: Optional[bytes] = None  # the frozen GraphDef, unless written to a path
    path: Optional[str] = None
    upload: UploadStats = field(default_factory=UploadStats)
    downloaded: bool = True  # False when output_path already held exactly this graph (or it was assembled)
    assembled: bool = False  # True when built from the local files by the server's recipe (no full download)
    linked: bool = False  # True when taken from the local results cache (received by an earlier freeze)

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)

    def manifest_json(self) -> str:
        """The manifest file's text, as the server rendered it (write it as it is)."""
        return self.manifest_bytes.decode("ascii")


def _same_file(path: str, sha256: str, size: int) -> bool:
    try:
        return os.path.getsize(path) == size and _cache.sha256_file(path) == sha256
    except OSError:
        return False


def _source_files(files) -> list:
    return [freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
            for f in files]


def build_options(**options) -> freeze_pb2.FreezeOptions:
    """FreezeOptions from keyword options; a malformed one is an InvalidArgumentError naming its field."""
    try:
        return freeze_options(**options)
    except OptionError as exc:
        raise error_for(exc.code, "%s: %s" % (exc.field, exc.message), exc.reason,
                        {"field": "options." + exc.field}) from None
    except TypeError as exc:  # an unknown keyword
        raise _unknown_option(exc, options) from None


def _unknown_option(exc: TypeError, options: dict) -> TypeError:
    """An unknown keyword option named as the caller wrote it, with the option meant."""
    import difflib
    import inspect as _inspect

    from tffreeze_api.options import to_text

    known = list(_inspect.signature(to_text).parameters)
    wrong = [k for k in options if k not in known]
    if not wrong:
        return TypeError("unknown freeze option: %s" % exc)
    # the methods' own keywords too: output_file means output_path, not outputs (a shared first
    # word of two-word names counts beside the spelling)
    def score(name):
        same = "_" in name and "_" in wrong[0] and name.split("_")[0] == wrong[0].split("_")[0]
        return difflib.SequenceMatcher(None, wrong[0], name).ratio() + (0.2 if same else 0.0)

    ranked = sorted(known + ["output_path", "graph_file", "timeout", "progress"], key=score, reverse=True)
    close = [n for n in ranked[:1] if score(n) >= 0.6]
    return TypeError("unknown freeze option %r%s (the options: %s)" % (
        wrong[0], "; did you mean %r?" % close[0] if close else "", ", ".join(known)))


def _copy_range(src: int, dst: int, offset: int, length: int) -> bool:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``dst``: inside the kernel where it
    can (copy_file_range), else through a buffer. False when ``src`` ends early."""
    left = length
    use_kernel = hasattr(os, "copy_file_range")
    while left:
        n = 0
        if use_kernel:
            try:
                n = os.copy_file_range(src, dst, left, offset)
            except OSError:  # another filesystem on an old kernel, or not supported: copy by hand
                use_kernel = False
                continue
        else:
            block = os.pread(src, min(left, 4 << 20), offset)
            write_all(dst, block)
            n = len(block)
        if n == 0:
            return False
        offset += n
        left -= n
    return True


class _OrderedHasher:
    """sha256 of bytes and file ranges given in order, computed by a background thread
    (hashlib releases the GIL on large blocks: hashing overlaps the copying)."""

    def __init__(self):
        import queue
        import threading

        import hashlib
        self._h = hashlib.sha256()
        self._q: "queue.Queue" = queue.Queue()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="tffreeze-assemble-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                if isinstance(item, bytes):
                    self._h.update(item)
                    continue
                path, offset, length = item
                with open(path, "rb", buffering=0) as fh:
                    fh.seek(offset)
                    while length:
                        block = fh.read(min(length, 4 << 20))
                        if not block:
                            raise OSError("%s ended while hashing" % path)
                        self._h.update(block)
                        length -= len(block)
            except BaseException as exc:  # noqa: BLE001 - reported by hexdigest()
                self._error = self._error or exc

    def add_bytes(self, data: bytes) -> None:
        self._q.put(data)

    def add_range(self, path: str, offset: int, length: int) -> None:
        self._q.put((path, offset, length))

    def hexdigest(self) -> Optional[str]:
        self.close()
        return None if self._error else self._h.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


def part_file(path: str) -> Tuple[int, str]:
    """A new temporary file beside ``path``, of tffreeze's naming: ``.NAME.PID-XXXXXXXX.part``
    (an open descriptor and its path). The writer's pid in the name lets a later freeze of
    the same output tell a file still being written from one a killed process left."""
    import tempfile

    return tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                            prefix=".%s.%d-" % (os.path.basename(path), os.getpid()), suffix=".part")


STALE_PART_SECONDS = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, run by another user
        return True
    return True


def _locked(path: str) -> bool:
    """Whether a writer holds ``path`` locked (flock; the C++ client locks its temporary files)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return True  # cannot tell: keep it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_stale_parts(path: str) -> List[str]:
    """Remove the temporary files killed writers left beside ``path`` (the paths removed).
    Only tffreeze's own naming for this output (``.NAME.PID-XXXXXXXX.part``, and the older
    ``.NAME.XXXXXXXX.part``), only this user's regular files, and only when the writer is
    gone: its pid no longer runs, or (a name without a pid) the file has not changed for a
    minute. A file unchanged for a day is stale whatever its pid (the pid was reused). A
    concurrent freeze of the same output keeps its file: its pid runs."""
    import re
    import stat

    directory = os.path.dirname(os.path.abspath(path))
    # this client's and C#'s (.NAME.PID-xxxxxxxx.part), and C++'s (.NAME.XXXXXX.part, no pid,
    # flock-ed by its writer while it writes)
    pattern = re.compile(r"\.%s\.(?:(\d+)-)?[A-Za-z0-9_]{6,8}\.part\Z" % re.escape(os.path.basename(path)))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed, now = [], time.time()
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            continue
        age = now - st.st_mtime
        pid = int(m.group(1)) if m.group(1) else None
        if pid == os.getpid() and age < 86400:
            continue
        if age < 86400 and (_alive(pid) if pid is not None else age < STALE_PART_SECONDS or _locked(full)):
            continue
        try:
            os.unlink(full)
            removed.append(full)
        except OSError:
            pass
    return removed


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory:
    an existing file is replaced only by a complete one."""
    fd, tmp = part_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write_all(fh, data)
        as_user_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def changed_while_uploaded(path: str) -> str:
    """The words every client says for a file that changed between its hashing and its upload."""
    return ("%s changed while it was being uploaded (is training still writing it?): run the command again once it "
            "is written" % path)


def _changed_since_hashed(f) -> bool:
    import hashlib

    try:
        if os.path.getsize(f.local) != f.size:
            return True
        h = hashlib.sha256()
        with open(f.local, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() != f.sha256
    except OSError:
        return True


def keep_old(path: str) -> Optional[str]:
    """A hard link to the file at ``path`` under a hidden temporary name beside it (so a failure
    after ``path`` is replaced can put the old one back), or None when there is no file there or
    the filesystem takes no links. Named as ``part_file``'s: a killed run's is removed later."""
    if not os.path.isfile(path):
        return None
    fd, tmp = part_file(path)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(path, tmp)
    except OSError:
        return None
    return tmp


def through_link(path: str) -> str:
    """The file a write of ``path`` lands in: ``path`` itself, or, where it is a symbolic link
    (a chain of them), the link's final target (a relative target read from the link's folder),
    so that the output is written through the link and the link stays a link."""
    for _ in range(40):  # as the kernel's limit of links followed
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = target if os.path.isabs(target) else os.path.join(os.path.dirname(path), target)
    return path


def _example_name(flag: str, what: str) -> str:
    """A file name to suggest inside a folder given where a file was wanted: run's
    ``--output NAME=`` writes NAME.npy, --manifest model.json, a graph model.pb."""
    if what == "the output" and flag.startswith("--output ") and flag.endswith("="):
        return flag[len("--output "):-1].replace("/", "_").replace(":", "_") + ".npy"
    return "model.json" if what == "the manifest" else "model.pb"


def write_error(exc: OSError, path: str, flag: str = "", what: str = "the graph", field: str = "") -> TffreezeError:
    """An OS error met writing the output ``path`` as an error naming the path (after
    ``flag``, the option that named it, when given), the cause in words, and the fix.
    ``field``: the library argument that named the path ("output_path"), in the metadata,
    for a command line to put its flag before the path."""
    import errno

    where = (flag + path if flag.endswith("=") else "%s %s" % (flag, path)) if flag else path
    folder = os.path.dirname(os.path.abspath(path))
    other = "give %s another path" % flag.split()[0] if flag else "write %s elsewhere" % what
    code, e = "FAILED_PRECONDITION", exc.errno
    if e == errno.EISDIR or os.path.isdir(path):
        example = os.path.join(path.rstrip(os.sep) or os.sep, _example_name(flag, what))
        code, text = "INVALID_ARGUMENT", "%s is a folder: give a file name (e.g. %s)" % (where, example)
        if not os.path.isdir(path):  # a name ending in "/" (a folder's), and there is no such folder
            text = "%s ends in /, as a folder's name does, and there is no folder %s: create it and give a file in " \
                   "it (e.g. %s), or give a file name" % (where, path.rstrip(os.sep), example)
    elif e in (errno.ENOSPC, errno.EDQUOT):
        code, text = "RESOURCE_EXHAUSTED", "%s: no space left for %s in %s (%s): free some space there, or %s" % (
            where, what, folder, "disk quota exceeded" if e == errno.EDQUOT else "the disk is full", other)
    elif e == errno.ENOENT:
        code, text = "NOT_FOUND", "%s: the folder %s does not exist: create it, or %s" % (where, folder, other)
    elif e in (errno.EACCES, errno.EPERM):
        code, text = "PERMISSION_DENIED", "%s: you may not write in %s: %s in a folder you can write" % (
            where, folder, other)
    elif e == errno.EROFS:
        code, text = "PERMISSION_DENIED", "%s: %s is on a read-only filesystem: %s" % (where, folder, other)
    elif e == errno.ENOTDIR:
        code, text = "NOT_FOUND", "%s: a part of %s is a file, not a folder: %s" % (where, folder, other)
    else:
        text = "%s: cannot write %s (%s): %s" % (where, what, exc.strerror or exc, other)
    return error_for(code, text, metadata={"path": path, "field": field or None,
                                           "errno": errno.errorcode.get(e, str(e)) if e else None})


def _who(uid: int) -> str:
    return _cache.owner_name(uid)


def _removable(path: str, folder: str) -> bool:
    """This user may remove ``path`` from ``folder``: the folder is writable and searchable, and,
    where it is sticky (like /tmp), the folder or the entry is this user's."""
    import stat

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    st = os.stat(folder)
    return not st.st_mode & stat.S_ISVTX or os.geteuid() in (st.st_uid, os.lstat(path).st_uid)


def check_a_file(path: str, flag: str = "", what: str = "the graph", field: str = "") -> None:
    """``path`` is ``-``, or names something other than a file or a folder (/dev/stdout, a pipe):
    refused, because the output is written whole or not at all, through a temporary file that
    takes the name when it is complete, and nothing but a file can take it that way."""
    if path != "-" and (not os.path.exists(path) or os.path.isfile(path) or os.path.isdir(path)):
        return
    where = (flag + path if flag.endswith("=") else "%s %s" % (flag, path)) if flag else path
    name = _example_name(flag, what)
    example = (flag + name if flag.endswith("=") else "%s %s" % (flag, name)) if flag else name
    raise error_for("INVALID_ARGUMENT", "%s is %s: tffreeze writes %s to files only, whole or not at all (a "
                    "finished temporary file takes its name), so it cannot stream it: give a file (%s) and read it "
                    "from there (cat %s)" % (where, "standard output" if path == "-" else "not a regular file",
                                             what, example, name),
                    metadata={"path": path, "field": field or None})


def check_output(path: str, flag: str = "", what: str = "the graph", field: str = "") -> None:
    """Before anything is hashed, sent or written: ``path`` names a file (not a folder) in
    a folder that exists and takes new files (tried: a temporary file of tffreeze's naming
    is made and removed, which also finds read-only filesystems). Raises ``write_error``'s
    error naming ``flag``."""
    import errno

    if path.endswith(os.sep) or os.path.isdir(path):
        raise write_error(OSError(errno.EISDIR, "Is a directory"), path, flag, what, field)
    check_a_file(path, flag, what, field)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise write_error(OSError(errno.ENOTDIR if os.path.exists(folder) else errno.ENOENT, "no folder"),
                          path, flag, what, field)
    if os.path.isfile(path) and (os.stat(path).st_mode & 0o222 == 0 or not os.access(path, os.W_OK)):
        where = (flag + path if flag.endswith("=") else "%s %s" % (flag, path)) if flag else path
        other = "give %s another path" % flag.split()[0] if flag else "write %s elsewhere" % what
        owner = os.stat(path).st_uid
        if owner == os.geteuid() or os.geteuid() == 0:
            text = "%s is read-only: make it writable (chmod u+w %s), or %s" % (where, path, other)
        else:  # chmod is the owner's alone; removing it is the folder's business (a sticky one: its owner's)
            text = "%s belongs to another user, %s, and you may not write it: %s" % (where, _who(owner), other)
            if _removable(path, folder):
                text += ", or remove it (rm %s)" % path
        raise error_for("PERMISSION_DENIED", text, metadata={"path": path, "field": field or None})
    if (os.geteuid() != 0 and os.path.lexists(path) and os.access(folder, os.W_OK | os.X_OK)
            and not _removable(path, folder)):
        # A sticky folder (like /tmp) where the entry is another user's: it is written by renaming
        # a complete temporary file over it, which only its owner (or the folder's) may do.
        where = (flag + path if flag.endswith("=") else "%s %s" % (flag, path)) if flag else path
        other = "give %s another path" % flag.split()[0] if flag else "write %s elsewhere" % what
        text = "%s belongs to another user, %s, in the sticky folder %s, where you may not replace it: %s" % (
            where, _who(os.lstat(path).st_uid), folder, other)
        raise error_for("PERMISSION_DENIED", text, metadata={"path": path, "field": field or None})
    tmp = None
    try:
        fd, tmp = part_file(path)
        os.close(fd)
    except OSError as exc:
        raise write_error(exc, path, flag, what, field) from None
    finally:
        if tmp is not None:
            os.unlink(tmp)


def check_output_folder(path: str, flag: str = "") -> None:
    """``check_output`` (kept for callers of earlier versions)."""
    check_output(path, flag)


def _read_pem(path: Optional[str], what: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise error_for("INVALID_ARGUMENT", "cannot read the %s file %s: %s" % (what, path, exc.strerror)) from None
    wanted = b"PRIVATE KEY-----" if what == "client key" else b"-----BEGIN CERTIFICATE-----"
    if wanted not in data:  # (a certificate and a key given the other way round, a DER file, another file)
        holds = ("a private key" if b"PRIVATE KEY-----" in data else "a certificate"
                 if b"-----BEGIN CERTIFICATE-----" in data else "no PEM block")
        raise error_for("INVALID_ARGUMENT", "the %s file %s is not a PEM %s: it holds %s%s" % (
            what, path, "private key" if what == "client key" else "certificate", holds,
            " (are --client-cert and --client-key given the other way round?)" if what.startswith("client") and
            holds in ("a private key", "a certificate") else ""))
    return data


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer TOKEN`` to every call (with or without TLS)."""

    def __init__(self, token: str):
        self._pair = ("authorization", "Bearer " + token)

    def _details(self, details):
        metadata = list(details.metadata or []) + [self._pair]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class FreezeClient:
    """A connection to a tffreeze server.

    >>> with FreezeClient() as client:
    ...     outcome = client.freeze("ckpt_dir", output_path="model.pb")
    ...     outcome.manifest["outputs"]

    ``target``: the server (HOST:PORT, several as H1:P1,H2:P2, or a gRPC target URI);
    default $TFFREEZE_SERVER, else this user's local server, started on demand and kept
    warm between calls (``tffreeze local-server``). A named server never starts anything.
    ``timeout`` (seconds) applies to each call unless a method is given its own.
    ``tls``: speak TLS, checking the server against the system's CAs or ``ca`` (a PEM
    file; giving one implies TLS); ``client_cert``/``client_key`` (PEM files) for a
    server requiring client certificates; ``token``: the bearer token sent with every
    call. Each defaults from the environment: $TFFREEZE_TLS=1, $TFFREEZE_CA,
    $TFFREEZE_TOKEN.
    """

    def __init__(self, target: Optional[str] = None, timeout: float = 600.0, tls: Optional[bool] = None,
                 ca: Optional[str] = None, token: Optional[str] = None, client_cert: Optional[str] = None,
                 client_key: Optional[str] = None):
        if bool(client_cert) != bool(client_key):  # (gRPC aborts the process on a certificate without its key)
            raise error_for("INVALID_ARGUMENT", "--client-cert and --client-key go together: give both (the client "
                            "certificate and its private key) or neither", "ERROR_REASON_UNSPECIFIED")
        self.target = target or default_target()
        self.timeout = timeout
        self.local: Optional[_local.Endpoint] = None
        ca = ca or os.environ.get("TFFREEZE_CA") or None
        token = token or os.environ.get("TFFREEZE_TOKEN") or None
        if tls is None:
            tls = bool(ca or client_cert or os.environ.get("TFFREEZE_TLS", "") not in ("", "0"))
        if not self.target:  # this user's local server: a private socket and its own token
            self.local = _local.ensure()
            self.target, token, tls = self.local.target, self.local.token, False
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE),
                   ("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        target, tls_name = channel_target(self.target)
        self._replicated = "," in self.target or "://" in self.target
        if tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read_pem(ca, "CA"), private_key=_read_pem(client_key, "client key"),
                certificate_chain=_read_pem(client_cert, "client certificate"))
            if tls_name:
                options.append(("grpc.ssl_target_name_override", tls_name))
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        if token:
            self._channel = grpc.intercept_channel(self._channel, _BearerToken(token))
        self._stub = service_pb2_grpc.FreezeServiceStub(self._channel)
        self._capabilities: Optional[service_pb2.GetCapabilitiesResponse] = None

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
                             timeout=timeout).missing if files else []
        wanted = {(d.sha256, d.size_bytes) for d in missing}
        todo, seen = [], set()
        for f in files:
            key = (f.sha256, f.size)
            if key in seen:
                continue
            seen.add(key)
            if key in wanted:
                todo.append(f)
            else:
                stats.skipped_bytes += f.size
        total = sum(f.size for f in todo)
        done = 0

        unreadable: List[OSError] = []  # (a file removed or made unreadable under the upload: said as such)

        def chunks(f):
            try:
                yield from file_chunks(f)
            except OSError as exc:  # the stream ends short: the server refuses it, and this is said instead
                unreadable.append(exc)

        def file_chunks(f):
            nonlocal done
            with open(f.local, "rb") as fh:
                offset = 0
                while True:
                    data = fh.read(CHUNK)
                    msg = blob_pb2.UploadBlobRequest(offset=offset, data=data)
                    if offset == 0:
                        msg.digest.CopyFrom(blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
                    if data or offset == 0:
                        yield msg
                    offset += len(data)
                    done += len(data)
                    if progress and data:
                        progress("upload", done, total, f.path)
                    if not data:
                        return

        for f in todo:
            try:
                self._call(self._stub.UploadBlob, chunks(f), timeout=timeout)
            except TffreezeError as exc:
                if unreadable:
                    gone = isinstance(unreadable[0], FileNotFoundError)
                    raise error_for("FAILED_PRECONDITION", "%s was %s while it was being uploaded (%s): run the command "
                                    "again once the checkpoint is complete" % (
                                        f.local, "removed" if gone else "no longer readable",
                                        unreadable[0].strerror or unreadable[0]), "", {"path": f.local}) from exc
                if not isinstance(exc, InvalidArgumentError):
                    raise
                if _changed_since_hashed(f):  # (the server saw other bytes than were hashed: a file still written)
                    raise error_for("FAILED_PRECONDITION", changed_while_uploaded(f.local), exc.reason,
                                    {"path": f.local}) from exc
                raise
            stats.uploaded_files += 1
            stats.uploaded_bytes += f.size
        return stats

    def download(self, sha256: str, size: int, path: Optional[str] = None,
                 timeout: Optional[float] = None) -> Optional[bytes]:
        """Fetch a blob, verifying length and sha256. With ``path`` it is streamed
        to that file atomically (and None is returned); else its bytes are returned."""
        req = blob_pb2.DownloadBlobRequest(digest=blob_pb2.Digest(sha256=sha256, size_bytes=size))
        fd, tmp = part_file(path) if path else (None, None)
        sink = os.fdopen(fd, "wb") if path else io.BytesIO()
        import hashlib
        h = hashlib.sha256()
        received = 0
        try:
            try:
                for chunk in self._stub.DownloadBlob(req, timeout=timeout or self.timeout):
                    write_all(sink, chunk.data)
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
            as_user_file(tmp)
            os.replace(tmp, path)
            return None
        finally:
            try:
                sink.close()
            except OSError:  # (flushing what is left fails again on a full disk: the file goes all the same)
                pass
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    # -- planning --------------------------------------------------------------
    def capabilities(self, timeout: Optional[float] = None) -> service_pb2.GetCapabilitiesResponse:
        """What the server supports (asked once per client)."""
        if self._capabilities is None:
            self._capabilities = self._call(self._stub.GetCapabilities, service_pb2.GetCapabilitiesRequest(),
                                            timeout=timeout or self.timeout)
        return self._capabilities

    def _has(self, feature: str) -> bool:
        return feature in self.capabilities().features

    def plan(self, source: str, graph_file: Optional[str] = None, timeout: Optional[float] = None, **options):
        """(the files to upload, the server's plan) for SOURCE: the server chooses the
        checkpoint from SOURCE's listing and parses the options (PlanFreeze); only the
        planned files are hashed (unchanged ones come from the digest cache)."""
        try:
            text = to_text(**options)
        except OptionError as exc:
            raise error_for(exc.code, "%s: %s" % (exc.field, exc.message), exc.reason,
                            {"field": "options." + exc.field}) from None
        except TypeError as exc:  # an unknown keyword
            raise _unknown_option(exc, options) from None
        root, request = _source.plan_request(source, graph_file)
        request.options.CopyFrom(text)
        plan = self._call(self._stub.PlanFreeze, request, timeout=timeout or self.timeout)
        try:
            return _source.planned_files(root, plan, graph_file), plan
        finally:
            _cache.digests.save()

    # -- freezing --------------------------------------------------------------
    def freeze(self, source: str, output_path: Optional[str] = None, outputs: Iterable[str] = (),
               inputs: Iterable[str] = (), step: Optional[int] = None, progress: Optional[ProgressFn] = None,
               timeout: Optional[float] = None, graph_file: Optional[str] = None, **options) -> FreezeOutcome:
        """Freeze a Saver directory, a checkpoint prefix or a SavedModel directory.

        The server chooses the checkpoint's files (see ``plan``); only those it lacks are
        uploaded; it freezes and the result comes back with the graph bytes (or written
        to ``output_path`` atomically). ``graph_file``: a GraphDef/MetaGraphDef file
        for a checkpoint without .meta. Further keyword options, as the command line's
        (the server parses them): signature, tags, bind ({name: value} or
        ["name=value"]), ema, var_map ({graph_var: key} or ["graph_var=key"]),
        include_variables, exclude_variables, optimize, verify, target
        ("tensorflowsharp": loads in libtensorflow 1.15), format ("onnx", "tflite": the
        model converted and checked in its runtime), input_shapes (["x=1,28,28,1"] or
        {"x": [1, 28, 28, 1]})."""
        if output_path:
            output_path = through_link(output_path)  # written through a link: the link stays a link
            check_output(output_path, field="output_path")
            remove_stale_parts(output_path)
        files, plan = self.plan(source, graph_file, timeout, outputs=outputs, inputs=inputs, step=step, **options)
        return self.freeze_files(files, output_path, progress=progress, timeout=timeout, plan=plan)

    def freeze_files(self, files: Sequence[_source.LocalFile], output_path: Optional[str] = None,
                     outputs: Iterable[str] = (), inputs: Iterable[str] = (), step: Optional[int] = None,
                     checkpoint_prefix: Optional[str] = None, progress: Optional[ProgressFn] = None,
                     timeout: Optional[float] = None, plan: Optional[freeze_pb2.PlanFreezeResponse] = None,
                     **options) -> FreezeOutcome:
        """Freeze exactly these files (the server chooses the checkpoint among them), with
        the options of ``plan`` (from ``plan()``) or else the keyword options."""
        timeout = timeout or self.timeout
        request_options = plan.options if plan is not None else build_options(
            outputs=outputs, inputs=inputs, step=step, checkpoint_prefix=checkpoint_prefix or "", **options)
        recipes = bool(output_path) and self._has("assembly_recipe")
        deadline = time.monotonic() + timeout
        evicted, backoff, attempts = False, 0.2, 0
        # Files this client hashed before were most likely uploaded before: freeze first and
        # upload only if the server says it lacks something (one call instead of two).
        optimistic = all(f.sha256 and f.from_cache for f in files)
        while True:
            try:
                if optimistic:
                    stats = UploadStats(files=len(files), skipped_bytes=sum(f.size for f in files))
                else:
                    stats = self.upload(files, progress, max(1.0, deadline - time.monotonic()))
                request = freeze_pb2.FreezeRequest(
                    files=_source_files(files), options=request_options, plan=plan, accept_recipe=recipes,
                    accept_early_recipe=recipes and self._has("early_recipe"), quiet=progress is None,
                    inline_graph_bytes=INLINE_GRAPH if self._has("inline_graph") else 0)
                result, manifest, recipe, graph, built = self._freeze_call(
                    request, progress, max(1.0, deadline - time.monotonic()),
                    (files, output_path) if output_path else None)
                break
            except UnavailableError:
                # A replica went away mid-call: a freeze is a pure function of the uploaded
                # bytes and options, so doing it again on another is safe. (One address:
                # gRPC's own retries were all there is to do.)
                attempts += 1
                if not self._replicated or attempts >= 3 or time.monotonic() + backoff >= deadline:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except TffreezeError as exc:
                # Not uploaded yet (an optimistic freeze), or a blob evicted between upload
                # and freeze: upload, then freeze again (after an eviction, once).
                if exc.reason != BLOBS_MISSING:
                    raise
                if optimistic:
                    optimistic = False
                    continue
                if evicted:
                    raise
                evicted = True
        try:
            import hashlib
            if graph and (len(graph) != result.size_bytes or hashlib.sha256(graph).hexdigest() != result.sha256):
                graph = b""  # damaged on the way: download instead
            if built is not None and self._place(built, result, output_path):  # assembled while it was written
                _cache.digests.remember(output_path, result.sha256)
                _cache.keep_result(output_path, result.sha256)
                return FreezeOutcome(result=result, manifest_bytes=manifest, path=output_path, upload=stats, downloaded=False,
                                     assembled=True)
            if output_path and _same_file(output_path, result.sha256, result.size_bytes):
                os.utime(output_path)  # already there (an incremental build): skip the download
                _cache.digests.remember(output_path, result.sha256)
                return FreezeOutcome(result=result, manifest_bytes=manifest, path=output_path, upload=stats, downloaded=False)
            if output_path and _cache.place_result(result.sha256, result.size_bytes, output_path):
                _cache.digests.remember(output_path, result.sha256)  # received before: linked, not downloaded
                return FreezeOutcome(result=result, manifest_bytes=manifest, path=output_path, upload=stats,
                                     downloaded=False, linked=True)
            if (output_path and recipe is not None and not graph
                    and self._assemble(recipe, files, result, output_path, timeout)):
                _cache.digests.remember(output_path, result.sha256)
                _cache.keep_result(output_path, result.sha256)
                return FreezeOutcome(result=result, manifest_bytes=manifest, path=output_path, upload=stats, downloaded=False,
                                     assembled=True)
            if graph and output_path:
                write_atomically(output_path, graph)
                data = None
            else:
                data = graph or self.download(result.sha256, result.size_bytes, output_path, timeout)
            if output_path:
                _cache.digests.remember(output_path, result.sha256)
                _cache.keep_result(output_path, result.sha256)
            return FreezeOutcome(result=result, manifest_bytes=manifest, graph_bytes=None if output_path else data, path=output_path,
                                 upload=stats)
        except OSError as exc:
            if not output_path:
                raise
            raise write_error(exc, output_path, field="output_path") from exc
        finally:
            if built is not None and os.path.exists(built[0]):  # not placed: a signal came between
                os.unlink(built[0])
            _cache.digests.save()

    def _build(self, recipe, files, output_path: str, graph_digest, timeout):
        """Write what ``recipe`` describes to a temporary file beside ``output_path``,
        hashing it as it goes: (temporary path, sha256, size), or None when a piece
        cannot be had (nothing is left behind). File ranges are copied inside the kernel
        (copy_file_range) while a second thread hashes the output's bytes in order, so
        the check costs no extra pass. ``graph_digest``: (sha256, size) of the stored
        graph, for pieces that are ranges of it (None in an early recipe)."""
        local = {f.path: f.local for f in files}
        fd, tmp = part_file(output_path)
        hasher, written, sources, done = _OrderedHasher(), 0, {}, False
        try:
            for piece in recipe.pieces:
                kind = piece.WhichOneof("source")
                if kind == "file":
                    path = local.get(piece.file.path)
                    if path is None:
                        return None
                    src = sources.get(path)
                    if src is None:
                        src = sources[path] = os.open(path, os.O_RDONLY)
                    hasher.add_range(path, piece.file.offset, piece.length)
                    if not _copy_range(src, fd, piece.file.offset, piece.length):
                        return None
                else:
                    if kind == "data":
                        data = piece.data
                    elif kind == "graph_offset" and graph_digest is not None:
                        req = blob_pb2.DownloadBlobRequest(
                            digest=blob_pb2.Digest(sha256=graph_digest[0], size_bytes=graph_digest[1]),
                            offset=piece.graph_offset, limit=piece.length)
                        data = b"".join(chunk.data for chunk in self._stub.DownloadBlob(req, timeout=timeout))
                    else:
                        return None
                    if len(data) != piece.length:
                        return None
                    hasher.add_bytes(data)
                    write_all(fd, data)
                written += piece.length
            digest = hasher.hexdigest()
            os.close(fd)
            fd = None
            if digest is None:
                return None
            done = True
            return tmp, digest, written
        except (OSError, grpc.RpcError):
            return None
        finally:
            hasher.close()
            for src in sources.values():
                os.close(src)
            if fd is not None:
                os.close(fd)
            if not done and os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _place(built, result, output_path: str) -> bool:
        """Move a built output into place when its size and sha256 are the result's; else drop it."""
        if built is None:
            return False
        tmp, digest, size = built
        try:
            if digest == result.sha256 and size == result.size_bytes:
                as_user_file(tmp)
                os.replace(tmp, output_path)
                return True
            return False
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _assemble(self, recipe, files, result, output_path: str, timeout) -> bool:
        """Build the frozen graph from the local copies of the uploaded files plus the
        few graph ranges the recipe names (downloaded); True when the result's size and
        sha256 check out, else False (and nothing is left behind: the caller downloads)."""
        built = self._build(recipe, files, output_path, (result.sha256, result.size_bytes), timeout)
        return self._place(built, result, output_path)

    def _freeze_call(self, request, progress, timeout, early=None):
        """(FreezeResult, manifest bytes, AssemblyRecipe or None, the graph's bytes or b"", early build).
        ``early``: (files, output_path) — an early recipe (no graph ranges) is followed
        on a second thread while the server writes the graph; its build (see ``_build``),
        or None, is returned once the result is in. Nothing is left behind on failure."""
        import threading

        result = recipe = None
        graph = manifest = b""
        builder, built = None, []
        try:
            for event in self._stub.Freeze(request, timeout=timeout):
                if event.HasField("progress") and progress:
                    stage = freeze_pb2.Stage.Name(event.progress.stage)[len("STAGE_"):].lower()
                    progress("freeze", event.progress.fraction, 1.0, "%s: %s" % (stage, event.progress.message))
                elif event.HasField("result"):
                    result = event.result
                elif event.HasField("recipe"):
                    recipe = event.recipe
                    if (early and builder is None
                            and all(p.WhichOneof("source") in ("file", "data") for p in recipe.pieces)):
                        builder = threading.Thread(
                            target=lambda r=recipe: built.append(self._build(r, early[0], early[1], None, timeout)),
                            name="tffreeze-assemble", daemon=True)
                        builder.start()
                elif event.HasField("graph"):
                    graph = event.graph
                elif event.HasField("manifest"):
                    manifest = event.manifest
            if result is None:
                raise TffreezeError("the server ended the freeze without a result")
            if builder is not None:  # inside the try: a signal while it is joined still removes its file
                builder.join()
                return result, manifest, None, graph, built[0] if built else None
        except BaseException as exc:
            if builder is not None:
                builder.join()
                if built and built[0] is not None and os.path.exists(built[0][0]):
                    os.unlink(built[0][0])
            if isinstance(exc, grpc.RpcError):
                raise from_rpc_error(exc, self.target) from exc
            raise
        return result, manifest, recipe, graph, None

    def inspect(self, source: str, outputs: Iterable[str] = (), inputs: Iterable[str] = (),
                step: Optional[int] = None, timeout: Optional[float] = None, graph_file: Optional[str] = None,
                **options) -> freeze_pb2.InspectResponse:
        """Describe a checkpoint: variables, candidate inputs/outputs with reasons,
        switches a freeze would bind, EMA shadows, signatures (and ``rendered``: the
        report and JSON as the command line prints them)."""
        files, plan = self.plan(source, graph_file, timeout, outputs=outputs, inputs=inputs, step=step, **options)
        return self.inspect_files(files, timeout=timeout, plan=plan)

    def inspect_files(self, files, outputs=(), inputs=(), step=None, checkpoint_prefix=None,
                      timeout=None, plan: Optional[freeze_pb2.PlanFreezeResponse] = None,
                      **options) -> freeze_pb2.InspectResponse:
        timeout = timeout or self.timeout
        request_options = plan.options if plan is not None else build_options(
            outputs=outputs, inputs=inputs, step=step, checkpoint_prefix=checkpoint_prefix or "", **options)
        self.upload(files, None, timeout)
        request = freeze_pb2.InspectRequest(files=_source_files(files), options=request_options, plan=plan)
        return self._call(self._stub.Inspect, request, timeout=timeout)

    def health(self, timeout: float = 5.0) -> str:
        """The server's health status name ("SERVING"...), via grpc.health.v1."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # optional dependency

        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = self._call(stub.Check, health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


__all__ = ["FreezeClient", "FreezeOutcome", "UploadStats", "default_target", "build_options", "write_atomically"]
