"""The shared store: blobs, resumable uploads and results in S3-compatible object
storage (``tffreeze serve --store s3://BUCKET/PREFIX [--s3-endpoint URL]``), so that
several stateless replicas serve any call.

Layout under ``PREFIX/``::

    blobs/<sha256>                          complete blobs, content-addressed
    partial/<sha256>-<size>-<owner>/<offset> chunks of a resumable upload (WriteBlobChunk),
                                            one object per chunk: any replica resumes it
    results/<key>, results/<key>.recipe     the result cache (results.py)

A blob is verified (length and sha256) on the replica that received it, then written to
its content-addressed key in one PUT (or a multipart upload, completed only when every
part is in): S3 makes an object visible only whole, so no replica ever reads a partial
blob. The replica's data directory is a bounded LRU cache of blobs (``--max-store-bytes``)
that workers read; a blob not there is fetched and verified again on the way in.
Credentials and region come from boto3's usual chain (environment, ~/.aws, instance role).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

from tffreeze_api.fileio import write_all

from .blobstore import BlobStore, check_digest
from .core.errors import FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger("tffreeze.s3store")
UNAVAILABLE = "ERROR_REASON_STORE_UNAVAILABLE"


class S3Remote:
    """The few object operations the store needs, over boto3; every failure to reach the
    store is Unavailable (the call may be retried, here or on another replica)."""

    def __init__(self, url: str, endpoint_url: Optional[str] = None):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError("--store must look like s3://BUCKET or s3://BUCKET/PREFIX, not %r" % url)
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ValueError("--store needs boto3: pip install 'tffreeze-server[s3]' (or boto3)") from None

        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=120))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix,) + parts if p)

    def _call(self, what: str, fn, *args, **kwargs):
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(what) from None
            raise Unavailable("the shared store %s refused %s (%s); check the bucket and its credentials"
                              % (self.url, what, code or exc), UNAVAILABLE) from None
        except (BotoCoreError, Boto3Error) as exc:  # Boto3Error: upload_file's S3UploadFailedError
            raise Unavailable("the shared store %s is unreachable (%s: %s)" % (self.url, what, exc), UNAVAILABLE) from None

    def size(self, key: str) -> Optional[int]:
        try:
            return self._call("HEAD " + key, self.client.head_object, Bucket=self.bucket, Key=key)["ContentLength"]
        except KeyError:
            return None

    def put_file(self, key: str, path: str) -> None:
        self._call("PUT " + key, self.client.upload_file, path, self.bucket, key)

    def get_file(self, key: str, path: str) -> None:
        self._call("GET " + key, self.client.download_file, self.bucket, key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("PUT " + key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> Optional[bytes]:
        try:
            return self._call("GET " + key, self.client.get_object, Bucket=self.bucket, Key=key)["Body"].read()
        except KeyError:
            return None

    def list(self, prefix: str) -> List[Tuple[str, int, float]]:
        """(key, size, last-modified epoch) of every object under prefix."""
        out, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("LIST " + prefix, self.client.list_objects_v2, **kwargs)
            out += [(o["Key"], o["Size"], o["LastModified"].timestamp()) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            self._call("DELETE", self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def ping(self) -> bool:
        try:
            self._call("HEAD bucket", self.client.head_bucket, Bucket=self.bucket)
            return True
        except (Unavailable, KeyError):
            return False


class SharedBlobStore(BlobStore):
    """BlobStore over a shared S3 store: the data directory is this replica's bounded
    cache; the bucket holds the truth (blobs, resumable uploads, results)."""

    def __init__(self, root: str, remote: S3Remote, **kwargs):
        self.remote = remote
        self._fetch_lock = threading.Lock()
        super().__init__(root, **kwargs)

    def _expire_at_start(self) -> None:
        try:
            self.expire_partials()
        except Unavailable as exc:  # the bucket down at start: serve anyway (health says NOT_SERVING)
            log.warning("%s", exc.message)

    # -- queries -----------------------------------------------------------
    def has(self, sha256: str, size: int) -> bool:
        return self._local_has(sha256, size) or self.remote.size(self.remote.key("blobs", sha256)) == size

    # -- writing -----------------------------------------------------------
    def adopt(self, tmp_path: str, sha256: str, size: int, what: str = "") -> None:
        """A verified file: into the bucket first (visible to every replica), then this cache."""
        if self.remote.size(self.remote.key("blobs", sha256)) != size:
            self.remote.put_file(self.remote.key("blobs", sha256), tmp_path)
        super().adopt(tmp_path, sha256, size, what)

    def _partial_prefix(self, sha256: str, size: int, upload_id: str) -> str:
        owner = hashlib.sha256(upload_id.encode("utf-8")).hexdigest()[:16]
        return self.remote.key("partial", "%s-%d-%s" % (sha256, size, owner)) + "/"

    def _chunks(self, prefix: str) -> List[Tuple[str, int, float]]:
        """The upload's chunks in order; only those contiguous from offset 0 count."""
        out, expected = [], 0
        for key, n, mtime in sorted(self.remote.list(prefix), key=lambda o: int(o[0].rsplit("/", 1)[1])):
            if int(key.rsplit("/", 1)[1]) != expected:
                break
            out.append((key, n, mtime))
            expected += n
        return out

    def expire_partials(self, now: Optional[float] = None) -> int:
        """Delete shared resumable uploads idle for longer than ``partial_ttl``."""
        if getattr(self, "remote", None) is None:  # the base class's constructor, before ours ran
            return 0
        now = time.time() if now is None else now
        uploads: Dict[str, List[Tuple[str, float]]] = {}
        for key, _, mtime in self.remote.list(self.remote.key("partial") + "/"):
            uploads.setdefault(key.rsplit("/", 1)[0], []).append((key, mtime))
        stale = [k for chunks in uploads.values() if now - max(m for _, m in chunks) > self.partial_ttl
                 for k, _ in chunks]
        self.remote.delete(stale)
        return len({k.rsplit("/", 1)[0] for k in stale})

    def write_chunk(self, sha256: str, size: int, offset: int, data: bytes, finish: bool,
                    upload_id: str = "") -> Tuple[int, bool]:
        """One chunk of a resumable upload, kept in the bucket: any replica takes the next one."""
        if self._chunk_done(sha256, size, data, upload_id):
            return size, True
        prefix = self._partial_prefix(sha256, size, upload_id)
        chunks = self._chunks(prefix)
        current = sum(n for _, n, _ in chunks)
        if not chunks and offset == 0:
            self.expire_partials()
        if offset != current:
            raise FailedPrecondition("chunk at offset %d but %d bytes of %s are committed; resume at %d"
                                     % (offset, current, sha256[:12], current), "ERROR_REASON_WRONG_OFFSET",
                                     committed_size=current)
        if current + len(data) > size:
            self.remote.delete(k for k, _, _ in chunks)
            raise InvalidArgument("upload of %s exceeds its declared size %d" % (sha256[:12], size),
                                  "ERROR_REASON_INVALID_CHUNK")
        if data:
            self.remote.put_bytes(prefix + str(offset), data)
            chunks.append((prefix + str(offset), len(data), time.time()))
            current += len(data)
        if not finish:
            return current, False
        fh, tmp = self.new_tmp(".upload")
        try:
            with fh:
                for key, _, _ in chunks:
                    write_all(fh, self.remote.get_bytes(key) or b"")
            self.commit_file(tmp, sha256, size)  # verified, then into the bucket and this cache
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.remote.delete(k for k, _, _ in chunks)
        return size, True

    # -- reading -----------------------------------------------------------
    def _ensure_local(self, sha256: str) -> None:
        """Bring a blob into this replica's cache from the bucket, verified again."""
        if os.path.exists(self.path(sha256)):
            return
        with self._fetch_lock:
            if os.path.exists(self.path(sha256)):
                return
            size = self.remote.size(self.remote.key("blobs", sha256))
            if size is None:
                return  # the callers say what is missing
            fh, tmp = self.new_tmp(".fetch")
            fh.close()
            try:
                self.remote.get_file(self.remote.key("blobs", sha256), tmp)
                self.commit_file(tmp, sha256, size)
            except KeyError:
                return  # gone from the bucket since the HEAD: the callers say what is missing
            except InvalidArgument:
                raise Unavailable("blob %s in the shared store does not match its name; it was damaged there"
                                  % sha256[:12], UNAVAILABLE, sha256=sha256) from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def open(self, sha256: str, size: Optional[int] = None):
        check_digest(sha256, size if size is not None else 0)
        self._ensure_local(sha256)
        return super().open(sha256, size)

    def link_into(self, sha256: str, dest: str) -> None:
        self._ensure_local(sha256)
        super().link_into(sha256, dest)

    def stored_bytes(self) -> int:
        return sum(n for _, n, _ in self.remote.list(self.remote.key("blobs") + "/"))


class SharedResults:
    """The result cache's entries in the bucket (results/<key>), with this replica's
    files as a cache in front."""

    def __init__(self, remote: S3Remote):
        self.remote = remote

    def get(self, name: str) -> Optional[bytes]:
        return self.remote.get_bytes(self.remote.key("results", name))

    def put(self, name: str, data: bytes) -> None:
        self.remote.put_bytes(self.remote.key("results", name), data)

    def delete(self, name: str) -> None:
        self.remote.delete([self.remote.key("results", name)])


def create(url: str, root: str, endpoint_url: Optional[str] = None, **kwargs) -> SharedBlobStore:
    remote = S3Remote(url, endpoint_url)
    if not remote.ping():
        log.warning("the shared store %s is not reachable now; health says NOT_SERVING until it is", url)
    return SharedBlobStore(root, remote, **kwargs)


__all__ = ["S3Remote", "SharedBlobStore", "SharedResults", "create"]
