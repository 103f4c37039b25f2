"""A checkpoint folder whose files are symbolic links (a data shard linked from another disk,
or every file linked from the training run's folder) is listed and uploaded by every client as
the Python client does: each link under its own name, with its target's size and bytes. The
three clients give the same graph, the same manifest and the same inspect report."""

from __future__ import annotations

import os

import pytest

import models
from test_parity import CPP, CS, PY, built, _run, _stderr  # noqa: F401  (built: the clients, made once)


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    base = tmp_path_factory.mktemp("linked")
    run = models.dense(str(base / "run"), True, steps=[100, 200], mutate=True).directory
    names = sorted(os.listdir(run))
    every = base / "every"  # every file an absolute link into the run's folder
    every.mkdir()
    for name in names:
        os.symlink(os.path.join(run, name), str(every / name))
    shard = base / "shard"  # copies, but the data shards relative links to the run's folder
    shard.mkdir()
    for name in names:
        if ".data-" in name:
            os.symlink(os.path.join("..", "run", name), str(shard / name))
        else:
            with open(os.path.join(run, name), "rb") as src, open(str(shard / name), "wb") as dst:
                dst.write(src.read())
    nested = base / "nested" / "models"  # a folder holding a linked folder of linked files
    nested.parent.mkdir()
    os.symlink(str(every), str(nested))
    return {"run": run, "every": str(every), "shard": str(shard), "nested": str(base / "nested"),
            "prefix": str(every / "model.ckpt-100")}


@pytest.mark.parametrize("layout", ["every", "shard", "nested", "prefix"])
def test_every_client_freezes_a_checkpoint_of_linked_files(web_server, linked, tmp_path, layout):
    original = os.path.join(linked["run"], "model.ckpt-100") if layout == "prefix" else linked["run"]
    os.makedirs(str(tmp_path / "ref"))
    reference = _run("py", "freeze", original, [], str(tmp_path / "ref"), web_server)  # the files themselves
    assert reference.returncode == 0, reference.stderr
    runs = {c: _run(c, "freeze", linked[layout], [], str(tmp_path), web_server) for c in ("py", "cs", "cpp")}
    for client, run in runs.items():
        assert run.returncode == 0, (client, run.stderr)
    errors = {c: _stderr(r.stderr) for c, r in runs.items()}
    assert errors["cs"] == errors["py"] and errors["cpp"] == errors["py"], errors
    expected = open(str(tmp_path / "ref" / "py.pb"), "rb").read()
    for client in ("py", "cs", "cpp"):
        assert open(str(tmp_path / (client + ".pb")), "rb").read() == expected, client
        assert open(str(tmp_path / (client + ".json")), "rb").read() == \
            open(str(tmp_path / "py.json"), "rb").read(), client
    if layout != "nested":  # (the nested folder's manifest warns that the checkpoint is one folder down)
        assert open(str(tmp_path / "py.json"), "rb").read() == open(str(tmp_path / "ref" / "py.json"), "rb").read()


def test_every_client_inspects_a_checkpoint_of_linked_files(web_server, linked, tmp_path):
    runs = {c: _run(c, "inspect", linked["every"], ["--json"], str(tmp_path), web_server) for c in ("py", "cs", "cpp")}
    for client, run in runs.items():
        assert run.returncode == 0, (client, run.stderr)
    assert runs["cs"].stdout == runs["py"].stdout and runs["cpp"].stdout == runs["py"].stdout
    assert '"model.ckpt-200"' in runs["py"].stdout
