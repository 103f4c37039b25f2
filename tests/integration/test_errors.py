"""Bad input gets a clear message and the right status; the server stays healthy."""

from __future__ import annotations

import os
import shutil

import pytest

import models
from tffreeze import (FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError)
from tffreeze.source import local_file


@pytest.fixture()
def good(tmp_path):
    return models.dense(str(tmp_path / "good"), True)


def _assert_healthy(client, good):
    assert client.health() == "SERVING"
    outcome = client.freeze(good.directory)
    assert [o["name"] for o in outcome.manifest["outputs"]] == ["y:0"]


def _copy(model, dest) -> str:
    shutil.copytree(model.directory, dest)
    return str(dest)


def _files(directory, names=None):
    names = names or sorted(os.listdir(directory))
    return [local_file(n, os.path.join(directory, n)) for n in names]


def test_truncated_index(client, good, tmp_path):
    d = _copy(good, tmp_path / "truncated")
    index = os.path.join(d, "model.ckpt.index")
    with open(index, "rb") as fh:
        data = fh.read()
    with open(index, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(d)
    assert "cannot read checkpoint 'model.ckpt'" in err.value.message
    assert "corrupt or truncated" in err.value.message
    _assert_healthy(client, good)


def test_garbage_index(client, good, tmp_path):
    d = _copy(good, tmp_path / "garbage")
    with open(os.path.join(d, "model.ckpt.index"), "wb") as fh:
        fh.write(os.urandom(4096))
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(d)
    assert "model.ckpt" in err.value.message and "re-upload" in err.value.message
    _assert_healthy(client, good)


def test_truncated_data_shard(client, good, tmp_path):
    d = _copy(good, tmp_path / "shortdata")
    data = os.path.join(d, "model.ckpt.data-00000-of-00001")
    with open(data, "rb") as fh:
        content = fh.read()
    with open(data, "wb") as fh:
        fh.write(content[:8])
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(d)  # refused from the sizes the index declares, before any value is read
    assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"
    assert "data files hold 8 bytes" in err.value.message and "truncated" in err.value.message
    with open(data, "wb") as fh:
        fh.write(content[:-4])  # as long as the index needs, but the last value cut short
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(d)
    assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"
    _assert_healthy(client, good)


def test_garbage_meta_graph(client, good, tmp_path):
    d = _copy(good, tmp_path / "badmeta")
    with open(os.path.join(d, "model.ckpt.meta"), "wb") as fh:
        fh.write(b"\xff" * 100)
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(d)
    assert "model.ckpt.meta is not a MetaGraphDef" in err.value.message
    _assert_healthy(client, good)


def test_missing_data_shard(client, good):
    # Sent as-is, bypassing the client's own check: the server must notice.
    files = _files(good.directory, ["checkpoint", "model.ckpt.index", "model.ckpt.meta"])
    with pytest.raises(NotFoundError) as err:
        client.freeze_files(files)
    assert "missing data shard(s): model.ckpt.data-00000-of-00001" in err.value.message
    _assert_healthy(client, good)


def test_missing_data_shard_from_directory(client, good, tmp_path):
    d = _copy(good, tmp_path / "noshard")
    os.unlink(os.path.join(d, "model.ckpt.data-00000-of-00001"))
    with pytest.raises(NotFoundError) as err:
        client.freeze(d)
    assert "model.ckpt.data-00000-of-00001" in err.value.message


def test_wrong_output_name(client, good):
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(good.directory, outputs=["yy"])
    assert "outputs: 'yy' is not in the graph; did you mean 'y'?" in err.value.message
    assert err.value.reason == "ERROR_REASON_NAME_NOT_IN_GRAPH"
    assert err.value.metadata["field"] == "options.outputs" and err.value.metadata["suggestions"] == "y"
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(good.directory, outputs=["y:0:1"])
    assert "is not a tensor name" in err.value.message
    _assert_healthy(client, good)


def test_directory_without_checkpoint(client, good, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("no checkpoint here")
    with pytest.raises(NotFoundError) as err:
        client.freeze_files(_files(str(d)))
    assert "no checkpoint found in the upload" in err.value.message
    with pytest.raises(NotFoundError):
        client.freeze(str(d))  # the client notices before uploading
    _assert_healthy(client, good)


def test_no_meta_graph(client, good, tmp_path):
    d = _copy(good, tmp_path / "nometa")
    os.unlink(os.path.join(d, "model.ckpt.meta"))
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(d)
    assert "has no meta graph" in err.value.message and "write_meta_graph=True" in err.value.message
    info = client.inspect(d)  # variables can still be listed
    assert {v.checkpoint_key for v in info.variables} >= {"w", "b"}
    assert any("no graph in the upload" in w for w in info.warnings)


def test_op_unknown_to_the_server(client, good, tmp_path):
    d = _copy(good, tmp_path / "customop")

    def add_custom(meta):
        node = meta.graph_def.node.add()
        node.name, node.op = "post", "TotallyCustomActivation"
        node.input.append("y")

    models.edit_meta(d, add_custom)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(d, outputs=["post"])
    assert "TotallyCustomActivation (node post)" in err.value.message
    _assert_healthy(client, good)


def test_unsafe_path_and_unknown_step(client, good):
    files = _files(good.directory)
    files[0].path = "../escape"
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze_files(files)
    assert "not a safe relative path" in err.value.message
    with pytest.raises(NotFoundError) as err:
        client.freeze(good.directory, step=99)
    assert "no checkpoint at global step 99" in err.value.message


@pytest.mark.parametrize("path,why", [
    ("a" * 256 + ".index", "names of at most 255 bytes"),       # longer than a file system's name limit
    ("a/" * 2100 + "x.index", "at most 1024 characters"),       # deeper than any checkpoint
    ("/".join(["d"] * 40) + "/x.index", "32 folders deep"),
])
def test_paths_a_file_system_cannot_hold_are_invalid_not_internal(client, good, path, why):
    files = _files(good.directory)
    files[0].path = path
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze_files(files)
    assert why in err.value.message and err.value.reason == "ERROR_REASON_INVALID_PATH"
    assert len(err.value.message) < 1000 and "/tmp" not in err.value.message  # bounded, no server path


def test_a_file_that_is_also_a_folder_is_invalid(client, good):
    files = _files(good.directory)
    files[1].path = "a"
    files[0].path = "a/b.index"
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze_files(files)
    assert "'a' is listed as a file and is also a folder of other files" in err.value.message


def test_unreachable_server(good):
    from tffreeze import FreezeClient

    with FreezeClient("127.0.0.1:1", timeout=5) as c:
        with pytest.raises(UnavailableError) as err:
            c.freeze(good.directory)
    assert "cannot reach the tffreeze server at 127.0.0.1:1" in err.value.message


def test_damaged_data_shard_is_data_loss_naming_the_variable(client, tmp_path):
    """A flipped byte inside a tensor's stored bytes (same size): the checksum its
    index records no longer matches -> DATA_LOSS naming the variable."""
    from tffreeze import DataLossError

    model = models.dense(str(tmp_path / "m"), True)
    data = os.path.join(model.directory, next(n for n in os.listdir(model.directory) if ".data-" in n))
    with open(data, "r+b") as fh:
        content = bytearray(fh.read())
        content[len(content) // 2] ^= 0xFF
        fh.seek(0)
        fh.write(bytes(content))
    with pytest.raises(DataLossError) as err:
        client.freeze(model.directory)
    assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT" and err.value.metadata["variable"] in ("w", "b")
    assert "checksum" in err.value.message and "/tmp" not in err.value.message  # no server path
