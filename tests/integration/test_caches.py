"""Re-freezes cost almost nothing: the server answers a repeated freeze from its
result cache (no worker), the client does not re-hash unchanged files nor
download a graph it already holds."""

from __future__ import annotations

import os
import time

import models
from tffreeze import FreezeClient, cache


def _unique(directory):
    """A small model no other test uploads (random weights): nothing of it is cached yet."""
    import numpy as np

    from models import tf, tf1

    os.makedirs(directory, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(np.random.standard_normal((3, 2)).astype(np.float32)))
        tf.matmul(x, w, name="y")
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(s, os.path.join(directory, "model.ckpt"))
    return models.Model(directory, {"x:0": np.ones((2, 3), np.float32)}, {"y:0": np.zeros((2, 2), np.float32)})


def _stages(client, directory, **kw):
    seen = []
    outcome = client.freeze(directory, progress=lambda what, done, total, msg: seen.append(msg), **kw)
    return outcome, seen


def test_a_repeated_freeze_is_answered_from_the_result_cache(client, tmp_path):
    model = _unique(str(tmp_path / "m"))
    first, stages = _stages(client, model.directory)
    assert not any("cached result" in s for s in stages) and any("loading" in s for s in stages)
    again, stages = _stages(client, model.directory)
    assert any("cached result" in s for s in stages) and not any("loading" in s for s in stages)
    assert again.graph_bytes == first.graph_bytes and again.manifest == first.manifest
    other, stages = _stages(client, model.directory, optimize=True)  # other options: the engine runs
    assert not any("cached result" in s for s in stages)
    assert [o["name"] for o in other.manifest["outputs"]] == ["y:0"]


def test_the_result_cache_survives_a_restart(tmp_path):
    from conftest import start_server, stop_server

    model = models.dense(str(tmp_path / "m"), True)
    for attempt in (1, 2):
        srv = start_server(str(tmp_path / "data"))
        try:
            with FreezeClient(srv.target) as c:
                outcome, stages = _stages(c, model.directory)
        finally:
            assert stop_server(srv) == 0
        assert any("cached result" in s for s in stages) == (attempt == 2)


def test_unchanged_files_are_not_hashed_again_and_held_graphs_not_downloaded(client, tmp_path, monkeypatch):
    model = _unique(str(tmp_path / "m"))
    old = time.time() - 60
    for name in os.listdir(model.directory):  # files older than the racy window, as a checkpoint usually is
        os.utime(os.path.join(model.directory, name), (old, old))
    first = client.freeze(model.directory, output_path=str(tmp_path / "a.pb"))
    assert first.downloaded
    hashed = []
    real_hash = cache._hash
    monkeypatch.setattr(cache, "_hash", lambda path: hashed.append(path) or real_hash(path))
    second = client.freeze(model.directory, output_path=str(tmp_path / "b.pb"))
    assert hashed == [] and not second.downloaded  # digests from the cache; the graph linked from the cache
    assert (tmp_path / "b.pb").read_bytes() == (tmp_path / "a.pb").read_bytes()
    third = client.freeze(model.directory, output_path=str(tmp_path / "b.pb"))
    assert hashed == [] and not third.downloaded  # same output path, already right
    meta = next(os.path.join(model.directory, n) for n in os.listdir(model.directory) if n.endswith(".meta"))
    with open(meta, "ab") as fh:
        fh.write(b"")
    os.utime(meta, (old + 1, old + 1))  # touched: hashed again, nothing else
    client.freeze(model.directory, output_path=str(tmp_path / "b.pb"))
    assert hashed == [os.path.realpath(meta)]
    fourth = client.freeze(model.directory, output_path=str(tmp_path / "d.pb"))  # after b.pb was touched
    assert hashed == [os.path.realpath(meta)] and not fourth.downloaded


def test_a_changed_cached_graph_is_downloaded_again(client, tmp_path):
    model = _unique(str(tmp_path / "m"))
    first = client.freeze(model.directory, output_path=str(tmp_path / "a.pb"))
    with open(tmp_path / "a.pb", "r+b") as fh:  # the output edited in place: the cache keeps its own copy
        fh.write(b"\x00")
    copied = client.freeze(model.directory, output_path=str(tmp_path / "b.pb"))
    assert copied.linked and not copied.downloaded
    assert models.run_frozen((tmp_path / "b.pb").read_bytes(), model.feeds, ["y:0"])[0].shape == \
        model.expected["y:0"].shape
    entry = os.path.join(cache.cache_dir(), "results", first.result.sha256)
    with open(entry, "r+b") as fh:  # the cache's copy damaged: ignored, the graph downloaded
        fh.write(b"\x00")
    again = client.freeze(model.directory, output_path=str(tmp_path / "c.pb"))
    assert again.downloaded
    assert models.run_frozen((tmp_path / "c.pb").read_bytes(), model.feeds, ["y:0"])[0].shape == \
        model.expected["y:0"].shape


def _big(directory, seed):
    import numpy as np

    from models import tf, tf1

    os.makedirs(directory, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 512], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(
            np.random.RandomState(seed).standard_normal((512, 512)).astype(np.float32)), use_resource=True)
        tf.matmul(x, w, name="y")
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(s, os.path.join(directory, "model.ckpt"))
    return directory


def test_a_large_graph_is_assembled_from_the_local_files(client, tmp_path):
    """Most of a large frozen graph is the checkpoint's own bytes: the client copies
    them from its files and downloads only the rest, checked against the sha256."""
    d = _big(str(tmp_path / "big"), 1)
    outcome = client.freeze(d, output_path=str(tmp_path / "a.pb"))
    assert outcome.assembled and not outcome.downloaded
    whole = client.freeze(d)  # bytes, downloaded: the same graph
    assert (tmp_path / "a.pb").read_bytes() == whole.graph_bytes
    assert len(whole.graph_bytes) > 1 << 20


def test_assembly_falls_back_to_downloading_when_a_local_file_changed(client, tmp_path, monkeypatch):
    d = _big(str(tmp_path / "big"), 2)
    data = os.path.join(d, next(n for n in os.listdir(d) if ".data-" in n))
    real_upload = client.upload

    def upload_then_damage(*args, **kwargs):  # the file changes after it was hashed and uploaded
        stats = real_upload(*args, **kwargs)
        with open(data, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\x00\x01\x02\x03")
        return stats

    monkeypatch.setattr(client, "upload", upload_then_damage)
    monkeypatch.setenv("TFFREEZE_CACHE_DIR", "off")
    outcome = client.freeze(d, output_path=str(tmp_path / "b.pb"))
    assert outcome.downloaded and not outcome.assembled
    import hashlib

    assert hashlib.sha256((tmp_path / "b.pb").read_bytes()).hexdigest() == outcome.manifest["sha256"]


def test_the_result_cache_can_be_turned_off(tmp_path):
    from conftest import start_server, stop_server

    model = models.dense(str(tmp_path / "m"), True)
    srv = start_server(str(tmp_path / "data"), ["--no-result-cache"])
    try:
        with FreezeClient(srv.target) as c:
            for _ in range(2):
                _, stages = _stages(c, model.directory)
                assert not any("cached result" in s for s in stages) and any("loading" in s for s in stages)
    finally:
        assert stop_server(srv) == 0
