"""tffreeze_api.fileio.write_all: every byte arrives, in pieces no larger than WRITE_PIECE,
to file descriptors and file objects alike."""

import os

import pytest

from tffreeze_api import fileio


class _Recorder:
    def __init__(self):
        self.sizes, self.data = [], bytearray()

    def write(self, b):
        self.sizes.append(len(b))
        self.data += b
        return len(b)


@pytest.mark.parametrize("size", [0, 1, fileio.WRITE_PIECE, fileio.WRITE_PIECE + 1, 5 * fileio.WRITE_PIECE + 17])
def test_file_objects_get_every_byte_in_bounded_pieces(size):
    data = os.urandom(size)
    out = _Recorder()
    assert fileio.write_all(out, data) == size
    assert bytes(out.data) == data
    assert all(0 < s <= fileio.WRITE_PIECE for s in out.sizes)


def test_descriptors_get_every_byte_and_short_writes_are_continued(tmp_path, monkeypatch):
    data = os.urandom(3 * fileio.WRITE_PIECE + 5)
    calls = []
    real_write = os.write

    def short_write(fd, b):  # a write that takes at most 1000 bytes at a time, as a pipe might
        calls.append(len(b))
        return real_write(fd, bytes(b)[:1000])

    monkeypatch.setattr(fileio.os, "write", short_write)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    try:
        assert fileio.write_all(fd, memoryview(data)) == len(data)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert max(calls) <= fileio.WRITE_PIECE and len(calls) >= len(data) // 1000
