"""Re-freezes cost almost nothing: the server answers a repeated freeze from its
result cache (no worker), the client does not re-hash unchanged files nor
download a graph it already holds."""

from __future__ import annotations

import os
import time

import models
from tffreeze import FreezeClient, cache


def _stages(client, directory, **kw):
    seen = []
    outcome = client.freeze(directory, progress=lambda what, done, total, msg: seen.append(msg), **kw)
    return outcome, seen


def test_a_repeated_freeze_is_answered_from_the_result_cache(client, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
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
    model = models.dense(str(tmp_path / "m"), True)
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
    model = models.dense(str(tmp_path / "m"), True)
    client.freeze(model.directory, output_path=str(tmp_path / "a.pb"))
    with open(tmp_path / "a.pb", "r+b") as fh:  # edited in place: the cache entry shares its inode
        fh.write(b"\x00")
    again = client.freeze(model.directory, output_path=str(tmp_path / "c.pb"))
    assert again.downloaded
    assert models.run_frozen((tmp_path / "c.pb").read_bytes(), model.feeds, ["y:0"])[0].shape == \
        model.expected["y:0"].shape
