"""One task cannot touch another, through the public API on a real sandboxed server:
every loader path is checked before it runs, outputs are copied in and re-hashed,
reservations never evict, no op holds a worker, memory is bounded, messages are
capped, metrics sit behind the server's own door, SIGTERM drains. (The sandbox and
the worker format themselves are tested in tests/unit/test_workers.py.)"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

import attacks
import models
import proctree
from conftest import start_server, stop_server
from tffreeze import (DeadlineExceededError, FailedPreconditionError, FreezeClient, InvalidArgumentError,
                      ResourceExhaustedError, UnavailableError)
from test_hostile import _store_intact


@pytest.fixture()
def target(tmp_path):
    """A file the upload tries to write (it must never exist)."""
    return str(tmp_path / "pwned.txt")


# -- finding 1: every loader path -------------------------------------------------------
def test_a_saved_model_tensorflow_would_load_another_way_is_refused_before_loading(client, server, target, tmp_path):
    """The attack as found: a TF2-looking SavedModel given a second MetaGraph, so that
    tf.saved_model.load takes its TF1 path and runs a planted main op, which writes a
    file and copies every staged upload it can glob into it. Refused as ambiguous,
    before TensorFlow sees it; with its tags named too."""
    glob = os.path.join(server.data_dir, "tasks", "*", "in", "*")
    directory = attacks.mixed_saved_model(str(tmp_path / "mixed"), target, glob)
    for tags in (None, ["serve"]):
        with pytest.raises(FailedPreconditionError) as err:
            client.freeze(directory, tags=tags)
        assert err.value.reason == "ERROR_REASON_SAVED_MODEL_AMBIGUOUS", err.value.message
        assert "TF1 SavedModel" in err.value.message and len(err.value.message) <= 1100
    assert not os.path.exists(target)
    assert _store_intact(server.data_dir) > 0


def test_several_meta_graphs_and_no_tags_named_is_ambiguous(client, tmp_path):
    model = models.saved_model_v1(str(tmp_path / "two"))

    def edit(sm):
        extra = sm.meta_graphs.add()
        extra.CopyFrom(sm.meta_graphs[0])
        del extra.meta_info_def.tags[:]
        extra.meta_info_def.tags.append("train")
    models.edit_saved_model(model.directory, edit)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory)
    assert err.value.reason == "ERROR_REASON_SAVED_MODEL_AMBIGUOUS" and "serve; train" in err.value.message
    assert client.freeze(model.directory, tags=["serve"]).manifest["outputs"]


@pytest.mark.parametrize("build, refused", [
    ("restore_writer", False),  # saver: the restore op is read as data, never run
    ("tf1_saved_model_with_main_op", False),  # TF1 SavedModel: its main op is never run
    ("graph_file_writer", True),  # graph + checkpoint: the graph file's WriteFile is refused
    ("tf2_saved_model_with_main_op", True),  # TF2 SavedModel: its top level is checked too
    ("saved_model_writer", True),  # TF2 SavedModel: a resource initializer (a function)
])
def test_every_loader_path_checks_before_it_runs(client, server, target, tmp_path, build, refused):
    """One upload per loader path with a planted WriteFile: either the path never runs
    the planted op (and the model freezes), or the op is refused before TensorFlow
    loads or imports anything. The file is never written."""
    directory = getattr(attacks, build)(str(tmp_path / build), target)
    kw = {"graph_file": os.path.join(directory, "graph.pb"), "outputs": ["out"]} if build == "graph_file_writer" else {}
    if build == "restore_writer":
        kw = {"outputs": ["out"]}
    if refused:
        with pytest.raises(InvalidArgumentError) as err:
            client.freeze(directory, **kw)
        assert err.value.reason == "ERROR_REASON_UNSAFE_OP" and "WriteFile" in err.value.message
        assert len(err.value.message) <= 1100
    else:
        from tensorflow.core.framework import graph_pb2

        outcome = client.freeze(directory, **kw)
        assert outcome.manifest["outputs"]
        graph = graph_pb2.GraphDef.FromString(outcome.graph_bytes)
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        assert not ops & {"WriteFile", "ReadFile", "MatchingFiles"}  # the planted ops are not in the result
    assert not os.path.exists(target)
    assert _store_intact(server.data_dir) > 0


# -- finding 3: outputs are copies, re-hashed -----------------------------------------------
def test_stored_graphs_are_copies_and_task_folders_are_gone(client, server, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    outcome = client.freeze(model.directory, outputs=["y"], optimize=True)
    sha = outcome.manifest["sha256"]
    path = os.path.join(server.data_dir, "blobs", sha[:2], sha)
    with open(path, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha
    assert os.stat(path).st_nlink == 1  # not a link to anything a task wrote
    deadline = time.monotonic() + 20  # (a finished task's folder is removed as its worker moves on)
    while len(os.listdir(os.path.join(server.data_dir, "tasks"))) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    left = os.listdir(os.path.join(server.data_dir, "tasks"))  # only the next task's, prepared and empty
    assert len(left) <= 1 and all(os.listdir(os.path.join(server.data_dir, "tasks", t, sub)) == []
                                  for t in left for sub in ("in", "out"))
    assert not os.path.exists(os.path.join(server.data_dir, "out"))  # no shared output folder any more


# -- finding 4: reservations ---------------------------------------------------------------
def test_one_client_cannot_empty_the_store(tmp_path):
    """A resumable upload declaring nearly the store's cap (one byte sent) is refused at
    its first chunk; every other client's blob survives and their freeze is served."""
    from tffreeze_api.v1 import blob_pb2, service_pb2_grpc

    cap = 4 << 20
    srv = start_server(str(tmp_path / "data"), ["--max-store-bytes", str(cap)])
    try:
        model = models.dense(str(tmp_path / "victim"), True)
        with FreezeClient(srv.target) as client:
            first = client.freeze(model.directory)
        blobs = _store_intact(srv.data_dir)
        with grpc.insecure_channel(srv.target) as channel:
            stub = service_pb2_grpc.FreezeServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.WriteBlobChunk(blob_pb2.WriteBlobChunkRequest(
                    digest=blob_pb2.Digest(sha256="ab" * 32, size_bytes=cap - 100), offset=0, data=b"x",
                    upload_id="attacker"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "does not fit" in err.value.details()
        other = models.dense(str(tmp_path / "other"), False)  # the next small uploads evict nothing
        with FreezeClient(srv.target) as client:
            client.freeze(other.directory)
            assert _store_intact(srv.data_dir) > blobs
            again = client.freeze(model.directory)
        assert again.manifest["sha256"] == first.manifest["sha256"]
    finally:
        stop_server(srv)


# -- finding 5: no op can hold a worker ---------------------------------------------------
def test_a_dequeue_from_an_empty_queue_is_refused_not_waited_on(client, tmp_path):
    directory = attacks.dequeue_forever(str(tmp_path / "q"))
    start = time.monotonic()
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(directory, outputs=["out"], verify=True)
    assert err.value.reason == "ERROR_REASON_UNSAFE_OP" and "QueueDequeueV2" in err.value.message
    assert time.monotonic() - start < 30


def test_verify_has_its_own_time_limit_and_a_victim_is_served_meanwhile(tmp_path):
    """A verify that would loop for hours is stopped at --verify-seconds (its task killed,
    DEADLINE_EXCEEDED naming the limit); another client's freeze is served while it runs,
    and the pool serves on after."""
    srv = start_server(str(tmp_path / "data"), ["--verify-seconds", "4", "--workers", "2"])
    try:
        slow = attacks.slow_loop(str(tmp_path / "slow"))
        victim = models.dense(str(tmp_path / "victim"), True)
        outcome = {}

        def attack():
            with FreezeClient(srv.target, timeout=120) as c:
                start = time.monotonic()
                try:
                    c.freeze(slow, outputs=["out"], verify=True)
                    outcome["error"] = None
                except DeadlineExceededError as exc:
                    outcome["error"] = exc
                outcome["seconds"] = time.monotonic() - start

        t = threading.Thread(target=attack)
        t.start()
        time.sleep(1.0)
        with FreezeClient(srv.target, timeout=120) as c:
            served = c.freeze(victim.directory, verify=True)
            assert served.manifest["verification"]
        t.join(120)
        err = outcome["error"]
        assert err is not None and err.reason == "ERROR_REASON_DEADLINE"
        assert "verify" in err.message and "4 s" in err.message and outcome["seconds"] < 60
        with FreezeClient(srv.target, timeout=120) as c:
            assert c.freeze(victim.directory, outputs=["y"], verify=True).manifest["verification"]
        assert _store_intact(srv.data_dir) > 0
    finally:
        stop_server(srv)


# -- finding 6: memory -------------------------------------------------------------------
def test_a_memory_bomb_at_import_is_refused_before_it_allocates(tmp_path):
    budget = 1 << 30
    srv = start_server(str(tmp_path / "data"), ["--task-memory-bytes", str(budget)])
    try:
        directory = attacks.fill_bomb(str(tmp_path / "bomb"))
        peak = {"mib": 0.0}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                for pid in proctree.descendants(srv.proc.pid):
                    try:
                        with open("/proc/%d/status" % pid) as fh:
                            rss = next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:"))
                        peak["mib"] = max(peak["mib"], rss / 1024.0)
                    except (OSError, StopIteration, ValueError):
                        pass
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with FreezeClient(srv.target, timeout=120) as client:
                for verify in (False, True):
                    with pytest.raises(ResourceExhaustedError) as err:
                        client.freeze(directory, outputs=["out"], verify=verify)
                    assert err.value.reason == "ERROR_REASON_MEMORY_LIMIT", err.value.message
                    assert "256 MiB" in err.value.message and "Fill" in err.value.message
                victim = models.dense(str(tmp_path / "victim"), True)
                assert client.freeze(victim.directory, outputs=["y"]).manifest["outputs"]
        finally:
            stop.set()
            watcher.join()
        assert 0 < peak["mib"] < (budget >> 20), peak  # no process of the server grew near the budget
        assert _store_intact(srv.data_dir) > 0
    finally:
        stop_server(srv)


# -- finding 7: metrics and messages --------------------------------------------------------
def test_error_messages_are_capped_and_lists_end_with_how_many_more(client, tmp_path):
    """A checkpoint naming shard 1 of 99999: the list of missing shards is cut."""
    model = models.dense(str(tmp_path / "m"), True)
    for name in os.listdir(model.directory):
        if ".data-00000-of-00001" in name:
            os.rename(os.path.join(model.directory, name),
                      os.path.join(model.directory, name.replace("-of-00001", "-of-99999")))
    with pytest.raises(Exception) as err:
        client.freeze(model.directory)
    message = err.value.message
    assert len(message) <= 1100, len(message)
    assert "more" in message


def test_metrics_listen_on_loopback_and_need_the_token(tmp_path):
    import socket

    token = "c3" * 16
    (tmp_path / "tokens").write_text(token + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = start_server(str(tmp_path / "data"), ["--metrics-port", str(port), "--auth-token-file",
                                                  str(tmp_path / "tokens")])
    try:
        url = "http://127.0.0.1:%d/metrics" % port
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
        assert b"tffreeze_calls_total" in urllib.request.urlopen(request, timeout=10).read()
    finally:
        stop_server(srv)
    with pytest.raises(Exception):  # exposing metrics without TLS and a token is refused at start
        start_server(str(tmp_path / "data2"), ["--metrics-port", "0", "--metrics-host", "0.0.0.0"])


# -- finding 8: drain ---------------------------------------------------------------------------
def test_sigterm_lets_a_freeze_in_flight_finish(tmp_path):
    """SIGTERM during a freeze that takes seconds: the call gets its result (drain:
    --drain-seconds), then the server exits cleanly."""
    srv = start_server(str(tmp_path / "data"), ["--drain-seconds", "60"])
    directory = attacks.slow_loop(str(tmp_path / "slow"), iterations=600_000)  # ~5 s per run here; verify runs two
    outcome = {}

    def call():
        try:
            with FreezeClient(srv.target, timeout=120) as c:
                outcome["manifest"] = c.freeze(directory, outputs=["out"], verify=True).manifest
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    time.sleep(3.0)  # the freeze is running (verify loops for a few seconds)
    code = stop_server(srv)
    t.join(120)
    assert "manifest" in outcome, outcome.get("error")
    assert code == 0


def test_a_stopping_server_finishes_the_commands_under_way_and_refuses_new_ones(tmp_path):
    """SIGTERM between a command's plan and its freeze (the client hashing or uploading):
    the command's next calls are still served and its freeze ends with the graph (it used
    to meet a closed port and be told to start a server). A new command is refused with
    SERVER_STOPPING, in words that say the server is stopping; then the server exits."""
    srv = start_server(str(tmp_path / "data"), ["--drain-seconds", "60"])
    under_way = models.dense(str(tmp_path / "m"), True)
    new = models.dense(str(tmp_path / "n"), False)
    with FreezeClient(srv.target, timeout=60) as c:
        files, plan = c.plan(under_way.directory)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(2.5)  # longer than a stopping server waits for a call when no command is under way
        assert srv.proc.poll() is None, "".join(srv.log[-20:])
        with pytest.raises(UnavailableError) as refused:
            c.plan(new.directory)
        assert refused.value.reason == "ERROR_REASON_SERVER_STOPPING"
        assert "server is stopping" in str(refused.value) and "Start one" not in str(refused.value)
        outcome = c.freeze_files(files, str(tmp_path / "out.pb"), plan=plan)
    assert outcome.manifest["outputs"] and os.path.getsize(str(tmp_path / "out.pb")) > 0
    assert srv.proc.wait(30) == 0  # nothing owed any more: it stops without waiting out --drain-seconds
    assert any("new commands are refused" in line for line in srv.log), "".join(srv.log[-20:])


def test_a_freeze_assembled_from_the_local_files_owes_the_stopping_server_nothing(tmp_path):
    """Trial 10, finding 11: a freeze answered with a recipe (the client builds the graph from its
    own files and downloads nothing) still counted as owing a download, so the stopping server
    waited for it: the whole drain for a command that finished, then logged it as unfinished."""
    import numpy as np

    srv = start_server(str(tmp_path / "data"), ["--drain-seconds", "60"])
    directory = str(tmp_path / "big")
    g = models.tf.Graph()
    with g.as_default():  # a 2 MiB weight: over the inline limit, so the answer is a recipe
        x = models.tf1.placeholder(models.tf.float32, [None, 1 << 17], name="x")
        w = models.tf1.get_variable("w", initializer=models.tf.constant(
            np.random.RandomState(5).standard_normal((1 << 17, 4)).astype(np.float32)))
        models.tf.matmul(x, w, name="y")
        with models.tf1.Session(graph=g) as sess:
            sess.run(models.tf1.global_variables_initializer())
            models.tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    with FreezeClient(srv.target, timeout=60) as c:
        files, plan = c.plan(directory)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        outcome = c.freeze_files(files, str(tmp_path / "out.pb"), plan=plan)
        done = time.monotonic()
    assert outcome.assembled, "the freeze was not assembled from the local files: the test proves nothing"
    assert srv.proc.wait(30) == 0
    assert time.monotonic() - done < 6, "the server waited %.1f s after the last command" % (time.monotonic() - done)
    assert not any("stopped before every command" in line for line in srv.log), "".join(srv.log[-20:])


def test_a_second_signal_stops_a_draining_server_at_once(tmp_path):
    srv = start_server(str(tmp_path / "data"), ["--drain-seconds", "120"])
    with FreezeClient(srv.target, timeout=60) as c:
        c.plan(models.dense(str(tmp_path / "m"), True).directory)  # a command under way: the drain waits for it
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert srv.proc.poll() is None
    began = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    assert time.monotonic() - began < 15
    assert any("stopped before every command under way had finished (a second signal)" in line
               for line in srv.log), "".join(srv.log[-20:])


def test_server_messages_are_capped_too(client, tmp_path):
    """The server's own selection of a checkpoint naming shard 1 of 99999 (sent as a raw
    Freeze, so no client-side check runs first): about 1 KiB, the list cut."""
    from tffreeze.source import local_file
    from tffreeze_api.v1 import blob_pb2, freeze_pb2, service_pb2_grpc

    model = models.dense(str(tmp_path / "m"), True)
    names = sorted(os.listdir(model.directory))
    files = [local_file(n, os.path.join(model.directory, n)) for n in names]
    client.upload(files)
    request = freeze_pb2.FreezeRequest()
    for f in files:
        path = f.path.replace("-of-00001", "-of-99999")
        request.files.add(path=path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
    with grpc.insecure_channel(client.target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            list(service_pb2_grpc.FreezeServiceStub(channel).Freeze(request))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.value.details()) <= 1100 and "... and 99993 more" in err.value.details(), err.value.details()
