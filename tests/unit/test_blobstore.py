import hashlib
import os

import pytest

from tffreeze_server.blobstore import CHUNK, BlobStore
from tffreeze_server.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted


def digest(data: bytes):
    return hashlib.sha256(data).hexdigest(), len(data)


def leftovers(store):
    return os.listdir(store.tmp_dir) + os.listdir(os.path.join(store.root, "partial"))


def test_stream_upload_verified_and_deduplicated(tmp_path):
    store = BlobStore(str(tmp_path))
    data = os.urandom(CHUNK + 123)
    sha, size = digest(data)
    assert store.missing([(sha, size), (sha, size)]) == [(sha, size)]
    store.write_stream(sha, size, iter([(0, data[:CHUNK]), (CHUNK, data[CHUNK:])]))
    assert store.missing([(sha, size)]) == []
    with store.open(sha) as fh:
        assert fh.read() == data
    assert leftovers(store) == []


def test_corrupt_upload_leaves_nothing(tmp_path):
    store = BlobStore(str(tmp_path))
    sha, size = digest(b"hello world")
    with pytest.raises(InvalidArgument, match="sha256"):
        store.write_stream(sha, size, iter([(0, b"hello WORLD")]))
    with pytest.raises(InvalidArgument, match="offset"):
        store.write_stream(sha, size, iter([(5, b"hello world")]))
    with pytest.raises(InvalidArgument, match="lower-case hex sha256"):
        store.write_stream("../../etc/passwd", 3, iter([(0, b"abc")]))
    assert store.missing([(sha, size)]) == [(sha, size)]
    assert leftovers(store) == []


def test_unary_chunks_resume_and_verify(tmp_path):
    store = BlobStore(str(tmp_path))
    data = b"abcdefghij" * 10
    sha, size = digest(data)
    assert store.write_chunk(sha, size, 0, data[:40], False) == (40, False)
    with pytest.raises(FailedPrecondition, match="resume at 40"):
        store.write_chunk(sha, size, 10, data[10:20], False)
    assert store.write_chunk(sha, size, 40, data[40:], True) == (size, True)
    assert store.write_chunk(sha, size, 0, b"", True) == (size, True)  # already present
    bad_sha, _ = digest(b"x" * 4)
    store.write_chunk(bad_sha, 4, 0, b"yyyy", False)
    with pytest.raises(InvalidArgument):
        store.write_chunk(bad_sha, 4, 4, b"", True)
    assert leftovers(store) == []


def test_cap_evicts_least_recently_used_and_refuses_oversized(tmp_path):
    store = BlobStore(str(tmp_path), max_bytes=250)
    blobs = [os.urandom(100) for _ in range(3)]
    for i, b in enumerate(blobs):
        sha, size = digest(b)
        store.write_stream(sha, size, iter([(0, b)]))
        os.utime(store.path(sha), (1000 + i, 1000 + i))
    # The oldest was evicted to make room for the third.
    assert store.missing([digest(blobs[0])]) == [digest(blobs[0])]
    assert store.missing([digest(b) for b in blobs[1:]]) == []
    big = os.urandom(300)
    with pytest.raises(ResourceExhausted, match="--max-store-bytes"):
        store.write_stream(*digest(big), iter([(0, big)]))
    assert leftovers(store) == []


def test_unknown_blob_is_not_found(tmp_path):
    store = BlobStore(str(tmp_path))
    with pytest.raises(NotFound):
        store.open("0" * 64)


def test_a_blob_larger_than_the_store_is_refused_before_any_byte_is_written(tmp_path):
    """An upload declaring 1 GiB to a 2 MiB store: refused from the declared size."""
    store = BlobStore(str(tmp_path), max_bytes=2 << 20)
    sha, size = "ab" * 32, 1 << 30
    consumed = []

    def chunks():
        for i in range(8):
            consumed.append(i)
            yield i * CHUNK, b"x" * CHUNK

    with pytest.raises(ResourceExhausted) as err:
        store.write_stream(sha, size, chunks())
    assert err.value.reason == "ERROR_REASON_STORE_FULL" and consumed == []
    with pytest.raises(ResourceExhausted):
        store.write_chunk(sha, size, 0, b"x" * CHUNK, finish=False)
    assert leftovers(store) == []
