"""Splicing: large values stay in the data file and are streamed into the frozen
graph; the bytes equal those of the fully materialised graph (deterministic
serialization), across shards, partitions, dtypes and real architectures; a
damaged shard is DATA_LOSS naming the variable."""

from __future__ import annotations

import os

import numpy as np
import pytest

import models
from models import tf, tf1
from tffreeze_server.core import engine, splice
from tffreeze_server.core.errors import DataLoss
from tffreeze_server.core.spec import FreezeSpec


def _both(directory, tmp_path, monkeypatch, spec=FreezeSpec(), expect_splices=True):
    """(spliced result, materialised result) of one freeze; asserts something was spliced
    (or, with expect_splices=False, that nothing was: all values under 64 KiB)."""
    written = []
    real_write = splice.write_graph
    monkeypatch.setattr(splice, "write_graph",
                        lambda g, s, fh, *rest: written.append(len(s)) or real_write(g, s, fh, *rest))
    plans = []
    spliced = engine.freeze(directory, spec, str(tmp_path / "spliced.pb"), on_plan=plans.append)
    monkeypatch.setattr(splice, "read_index", lambda prefix: None)  # values read as before
    plain = engine.freeze(directory, spec, str(tmp_path / "plain.pb"))
    monkeypatch.undo()
    assert bool(written and written[0]) == expect_splices, written
    if plans:  # the early recipe, sent before writing, describes exactly the bytes written
        assert _follow(plans[0], directory) == (tmp_path / "spliced.pb").read_bytes()
    return spliced, plain, plans


def _follow(plan, directory) -> bytes:
    out = []
    for piece in plan:
        if piece[0] == "data":
            out.append(piece[1])
        else:
            with open(os.path.join(directory, piece[1]), "rb") as fh:
                fh.seek(piece[2])
                out.append(fh.read(piece[3]))
    return b"".join(out)


def _big_model(directory, dtypes=("float32",), sharded=False, partitioned=False):
    os.makedirs(directory, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 256], name="x")
        outs = []
        for i, dt in enumerate(dtypes):
            init = np.random.RandomState(i).standard_normal((256, 300)).astype(dt)
            with tf.device("/cpu:0" if i % 2 == 0 else "/device:CPU:1"):
                kw = {"partitioner": tf1.fixed_size_partitioner(3)} if partitioned and i == 0 else {}
                v = tf1.get_variable("w%d" % i, initializer=tf.constant(init), use_resource=True, **kw)
            outs.append(tf.reduce_sum(tf.matmul(x, tf.cast(v, tf.float32)), axis=1))
        tf.add_n(outs, name="y")
        saver = tf1.train.Saver(sharded=sharded)
        config = tf1.ConfigProto(device_count={"CPU": 2}, allow_soft_placement=True)
        with tf1.Session(graph=g, config=config) as s:
            s.run(tf1.global_variables_initializer())
            saver.save(s, os.path.join(directory, "model.ckpt"))
    return directory


@pytest.mark.parametrize("kind", ["plain", "dtypes", "sharded", "partitioned"])
def test_spliced_output_is_byte_identical(tmp_path, monkeypatch, kind):
    d = _big_model(str(tmp_path / kind), dtypes=("float32", "float64", "int32", "float16") if kind == "dtypes"
                   else ("float32", "float32"), sharded=kind == "sharded", partitioned=kind == "partitioned")
    spliced, plain, plans = _both(d, tmp_path, monkeypatch)
    assert spliced.sha256 == plain.sha256 and spliced.size_bytes == plain.size_bytes
    assert len(plans) == 1 and {p[0] for p in plans[0]} == {"data", "file"}
    assert (tmp_path / "spliced.pb").read_bytes() == (tmp_path / "plain.pb").read_bytes()
    x = np.random.RandomState(9).standard_normal((2, 256)).astype(np.float32)
    assert models.run_frozen((tmp_path / "spliced.pb").read_bytes(), {"x:0": x}, ["y:0"])[0].shape == (2,)


def test_real_architectures_splice_to_the_same_bytes(real_models, tmp_path, monkeypatch):
    for name, big in (("slim_inception_v1", True), ("keras_mobilenet_v2", True), ("slim_inception_v3", True),
                      ("seq2seq_greedy", False)):
        info = real_models[name]
        spliced, plain, _ = _both(info["dir"], tmp_path, monkeypatch, FreezeSpec(outputs=tuple(info["outputs"])), big)
        assert spliced.sha256 == plain.sha256, name


def test_damaged_large_value_is_data_loss(tmp_path):
    d = _big_model(str(tmp_path / "m"))
    data = os.path.join(d, next(n for n in os.listdir(d) if ".data-" in n))
    with open(data, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(DataLoss) as err:
        engine.freeze(d, FreezeSpec(), str(tmp_path / "out.pb"))
    assert err.value.metadata["variable"] == "w0" and "checksum" in err.value.message
    assert not (tmp_path / "out.pb").exists()


def test_index_this_reader_does_not_know_falls_back(tmp_path):
    d = _big_model(str(tmp_path / "m"))
    index = os.path.join(d, "model.ckpt.index")
    assert splice.read_index(os.path.join(d, "model.ckpt")) is not None
    assert splice.read_index(os.path.join(d, "nothing")) is None
    with open(index, "rb") as fh:
        data = fh.read()
    with open(str(tmp_path / "bad.index"), "wb") as fh:
        fh.write(data[:-8] + b"\0" * 8)  # another magic
    assert splice.read_index(str(tmp_path / "bad")) is None
