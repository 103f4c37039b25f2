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


def _fill(store, n, size=100):
    blobs = [os.urandom(size) for _ in range(n)]
    for b in blobs:
        store.write_stream(*digest(b), iter([(0, b)]))
    return blobs


def test_a_reservation_never_evicts_blobs_in_use(tmp_path):
    """Finding 4: a resumable upload declaring nearly the whole cap (one byte sent) used
    to make the next small upload evict every other client's blobs. Now the reservation
    is refused at its first chunk, and nothing is evicted."""
    store = BlobStore(str(tmp_path), max_bytes=1000)
    blobs = _fill(store, 5)  # 500 bytes other clients just uploaded
    with pytest.raises(ResourceExhausted) as err:
        store.write_chunk("ab" * 32, 990, 0, b"x", finish=False, upload_id="attacker")
    assert err.value.reason == "ERROR_REASON_STORE_FULL" and "does not fit" in err.value.message
    small = os.urandom(10)
    store.write_stream(*digest(small), iter([(0, small)]))
    assert store.missing([digest(b) for b in blobs]) == []  # every victim's blob is still there
    # what fits beside them is reserved
    assert store.write_chunk("cd" * 32, 400, 0, b"x", finish=False, upload_id="ok") == (1, False)


def test_eviction_stops_when_nothing_can_fit(tmp_path):
    """A reservation holds most of the cap: a blob that could not fit even with every
    other blob gone is refused without evicting any."""
    store = BlobStore(str(tmp_path), max_bytes=1000)
    assert store.write_chunk("ab" * 32, 700, 0, b"x", finish=False, upload_id="a") == (1, False)
    blobs = _fill(store, 2)  # 200 bytes: 900 of 1000 used
    big = os.urandom(400)
    with pytest.raises(ResourceExhausted, match="reserve 700"):
        store.write_stream(*digest(big), iter([(0, big)]))
    assert store.missing([digest(b) for b in blobs]) == []


def test_a_reservation_may_evict_only_long_unused_blobs(tmp_path):
    store = BlobStore(str(tmp_path), max_bytes=1000, partial_ttl=60)
    old = _fill(store, 5)
    for b in old[:3]:
        os.utime(store.path(digest(b)[0]), (1000, 1000))  # unused for decades
    assert store.write_chunk("ab" * 32, 800, 0, b"x", finish=False, upload_id="a") == (1, False)
    assert store.missing([digest(b) for b in old[:3]]) == [digest(b) for b in old[:3]]
    assert store.missing([digest(b) for b in old[3:]]) == []


def test_open_reservations_are_capped_per_upload_id_and_in_total(tmp_path, monkeypatch):
    from tffreeze_server import blobstore

    monkeypatch.setattr(blobstore, "MAX_OPEN_UPLOADS_PER_ID", 2)
    monkeypatch.setattr(blobstore, "MAX_OPEN_UPLOADS", 3)
    store = BlobStore(str(tmp_path), max_bytes=10000)
    shas = [("%02x" % i) * 32 for i in range(5)]
    store.write_chunk(shas[0], 10, 0, b"x", False, upload_id="one")
    store.write_chunk(shas[1], 10, 0, b"x", False, upload_id="one")
    with pytest.raises(ResourceExhausted, match="for this upload_id"):
        store.write_chunk(shas[2], 10, 0, b"x", False, upload_id="one")
    store.write_chunk(shas[2], 10, 0, b"x", False, upload_id="two")
    with pytest.raises(ResourceExhausted, match="at most 3"):
        store.write_chunk(shas[3], 10, 0, b"x", False, upload_id="three")


def test_a_frozen_graph_the_local_store_cannot_hold_is_named_as_such(tmp_path):
    """Trial 8 R7: "a file of 281.6 MiB does not fit ... freezes running now hold 281.6 MiB", when
    the file was the frozen graph and the only holder this freeze's own staged checkpoint."""
    store = BlobStore(str(tmp_path / "store"), max_bytes=1000, local=True)
    ckpt = os.urandom(600)
    store.write_stream(*digest(ckpt), iter([(0, ckpt)]))
    task = tmp_path / "task"
    task.mkdir()
    os.link(store.path(digest(ckpt)[0]), str(task / "model.ckpt.data-00000-of-00001"))  # staged: held by the task
    graph = os.urandom(600)
    out = tmp_path / "out.pb"
    out.write_bytes(graph)
    with pytest.raises(ResourceExhausted) as err:
        store.take_output(str(out), *digest(graph))
    message = err.value.message
    assert message.startswith("the frozen graph (600 bytes) does not fit in the local server's store"), message
    assert "the checkpoint files of the freezes running now (this one's too) hold 600 bytes" in message, message


def test_a_store_over_a_lowered_cap_is_brought_within_it_least_recently_used_first(tmp_path):
    """Trial 8 R8: restarting the local server with a smaller --max-store-bytes left the store
    above it ("1.7 GiB used of 200.0 MiB") and nothing was evicted."""
    big = BlobStore(str(tmp_path / "s"), max_bytes=10000, local=True)
    blobs = _fill(big, 6)
    old = digest(blobs[0])[0]
    os.utime(big.path(old), (1, 1))  # the least recently used
    small = BlobStore(str(tmp_path / "s"), max_bytes=450, local=True)
    assert small.fit_cap() >= 150
    assert small.stored_bytes() <= 450 and not os.path.exists(small.path(old))
    assert small.fit_cap() == 0
