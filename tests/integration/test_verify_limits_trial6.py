"""User trial 6, findings M4 and M5: --verify under the task memory limit, and --verify of a
model whose dropout keep-prob is an input left unbound.

M4. A good checkpoint (one float32 variable W1) frozen with --verify on a server whose
--task-memory-bytes is below the checkpoint's size failed with "cannot read variable W1 ...
Bad address. The data shard is truncated or corrupt; re-upload ... (CHECKPOINT_CORRUPT)":
the read failed because the limit was hit (EFAULT: a buffer whose allocation failed
unchecked), not because the data is corrupt. It is MEMORY_LIMIT, naming --task-memory-bytes.
At another limit the task's process hung, single-threaded on a futex, in a stage without a
time limit of its own, until the client's deadline (10 min): the server (the task's parent,
which a hung C call cannot stop) now stops a task under the memory limit that waits
single-threaded using no CPU, with the memory limit's error (``WorkerPool._stalled``).

M5. A dropout whose keep-prob is a float placeholder ``kp`` (and a bool ``mode`` switch):
`--bind mode=false --verify` said "the frozen graph computes something else ... report it
with the upload". Verify fed kp a generated value (0.761), which leaves the dropout drawing
new numbers on every run: the message now names the random op, the input kp and the fix
(`--bind kp=1`); with it the freeze verifies with difference 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import start_server, stop_server

BIN = os.path.dirname(sys.executable)
PY = os.path.join(BIN, "tffreeze")
MB = 1 << 20


def _words(out) -> str:
    return " ".join(out.stderr.split())


def _freeze(srv, source, out, *flags, timeout=120):
    return subprocess.run([PY, "freeze", source, "--server", srv.target, "-o", out, "--timeout", "100", *flags],
                          capture_output=True, text=True, timeout=timeout)


def _one_variable_checkpoint(directory: str, megabytes: int) -> str:
    """One float32 variable W1 of ``megabytes`` (initialised by a random op: the .meta stays
    small), saved at step 1 as the trial's model.ckpt-1; y = x * sum(W1)."""
    code = r"""
import os, sys
import tensorflow as tf
tf1 = tf.compat.v1
d, mb = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
with tf.Graph().as_default() as g:
    x = tf1.placeholder(tf.float32, [None], name="x")
    w = tf1.get_variable("W1", [mb * (1 << 20) // 4], initializer=tf1.random_normal_initializer(seed=1),
                         use_resource=False)
    tf.multiply(x, tf.reduce_sum(w), name="y")
    with tf1.Session(graph=g) as s:
        s.run(tf1.global_variables_initializer())
        tf1.train.Saver().save(s, os.path.join(d, "model.ckpt"), global_step=1)
"""
    subprocess.run([sys.executable, "-c", code, directory, str(megabytes)], check=True, capture_output=True,
                   timeout=300)
    return directory


# -- M4: a read that fails at the memory limit -------------------------------------------------
def test_a_read_failing_at_the_memory_limit_is_the_limit_not_a_corrupt_shard(tmp_path):
    """30 MB checkpoint, a 20M limit (the trial: 302 MB at 200M): the read of W1 fails with
    EFAULT ("Bad address"); the error is MEMORY_LIMIT naming the stage, the flag and a size to
    try, never CHECKPOINT_CORRUPT; no output file is left."""
    ckpt = _one_variable_checkpoint(str(tmp_path / "c30"), 30)
    srv = start_server(str(tmp_path / "data"), ["--task-memory-bytes", "20M", "--no-result-cache"])
    try:
        out = _freeze(srv, ckpt, str(tmp_path / "x.pb"), "--verify")
    finally:
        assert stop_server(srv) == 0
        shutil.rmtree(ckpt, ignore_errors=True)
    words = _words(out)
    print(words)
    assert out.returncode == 1, words
    assert "MEMORY_LIMIT" in words and "RESOURCE_EXHAUSTED" in words, words
    assert "CHECKPOINT_CORRUPT" not in words and "re-upload" not in words, words
    assert "ran out of memory while reading variables" in words, words  # the evidence: the read, not the file
    assert "tffreeze serve --task-memory-bytes" in words and re.search(r"try \d+G\b", words), words
    assert not (tmp_path / "x.pb").exists()


# -- M4: a task that hangs under the memory limit -----------------------------------------------
def task(kind, payload, progress):
    """A task that reports a stage without a time limit of its own, then waits forever,
    single-threaded, on a lock (as a task whose thread could not be created under the limit
    does: futex_do_wait); ``busy``: it computes for a while instead (never stopped)."""
    if kind == "warm":
        return "warm"
    from tffreeze_api.v1 import freeze_pb2

    progress(freeze_pb2.STAGE_CONVERTING, "turning 1 variable(s) into constants", 0.65)
    if kind == "busy":
        end = time.process_time() + payload["seconds"]
        while time.process_time() < end:
            pass
        return "done"
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # never returns
    return "unreachable"


def test_a_task_hanging_under_the_memory_limit_is_stopped_by_its_parent_with_the_limits_error(tmp_path):
    """Stopped about STALL_SECONDS after it stopped using CPU (the trial: 10 min, the client's
    deadline), RESOURCE_EXHAUSTED / MEMORY_LIMIT naming the stage, the wait and the flag,
    never INTERNAL; its task folder is gone; the worker serves the next task; a task that
    computes longer than that is not stopped."""
    from tffreeze_server import workers
    from tffreeze_server.core.errors import FreezeError

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    pool = workers.WorkerPool(size=1, target="test_verify_limits_trial6:task", task_memory=256 * MB,
                              tasks_root=str(tasks)).start()
    try:
        started = time.monotonic()
        with pytest.raises(FreezeError) as err:
            list(pool.run("hang", {}, timeout=120))
        took = time.monotonic() - started
        e = err.value
        print(took, e.code, e.message)
        assert e.reason == "ERROR_REASON_MEMORY_LIMIT" and e.code == "RESOURCE_EXHAUSTED", (e.code, e.message)
        assert took < workers.STALL_SECONDS + 15, took
        assert "most likely" in e.message and "while converting" in e.message, e.message
        assert "single-threaded" in e.message and "tffreeze serve --task-memory-bytes" in e.message, e.message
        assert e.metadata["stage"] == "STAGE_CONVERTING" and float(e.metadata["stalled"]) >= workers.STALL_SECONDS
        assert len(os.listdir(str(tasks))) <= 1, os.listdir(str(tasks))  # (the next task's, prepared)
        events = list(pool.run("busy", {"seconds": workers.STALL_SECONDS + 3}, timeout=120))
        assert events[-1] == ("result", "done"), events[-1]
    finally:
        pool.close()


# -- M5: a dropout whose keep-prob is an unbound input --------------------------------------------
def _dropout_model(directory: str) -> str:
    code = r"""
import os, sys
import tensorflow as tf
tf1 = tf.compat.v1
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
with tf.Graph().as_default() as g:
    x = tf1.placeholder(tf.float32, [None, 6], name="features")
    kp = tf1.placeholder(tf.float32, [], name="kp")
    mode = tf1.placeholder(tf.bool, [], name="mode")
    w = tf1.get_variable("w", [6, 16], use_resource=False)
    h = tf.nn.relu(tf.matmul(x, w))
    h = h * tf.cond(mode, lambda: tf.constant(0.9), lambda: tf.constant(1.0))
    h = tf1.nn.dropout(h, keep_prob=kp)
    w2 = tf1.get_variable("w2", [16, 3], use_resource=False)
    tf.nn.softmax(tf.matmul(h, w2), name="scores")
    with tf1.Session(graph=g) as s:
        s.run(tf1.global_variables_initializer())
        tf1.train.Saver().save(s, os.path.join(d, "model.ckpt"), global_step=1)
"""
    subprocess.run([sys.executable, "-c", code, directory], check=True, capture_output=True, timeout=300)
    return directory


def test_verify_of_an_unbound_dropout_keep_prob_names_the_input_and_the_bind(tmp_path):
    model = _dropout_model(str(tmp_path / "m"))
    srv = start_server(str(tmp_path / "data"), ["--no-result-cache"])
    try:
        out = _freeze(srv, model, str(tmp_path / "x.pb"), "--bind", "mode=false", "--verify")
        words = _words(out)
        print(words)
        assert out.returncode == 1, words
        assert "VERIFY_MISMATCH" in words and "report it" not in words and "computes something else" not in words
        assert "random" in words and "RandomUniform" in words, words
        assert "input kp" in words and "--bind kp=1" in words and "verify fed kp=" in words, words
        assert "features" not in words, words  # the data input gives the draw its shape: it decides nothing
        assert not (tmp_path / "x.pb").exists()
        out = _freeze(srv, model, str(tmp_path / "x.pb"), "--bind", "mode=false", "--bind", "kp=1", "--verify")
        assert out.returncode == 0, out.stderr
        assert re.search(r"verify +scores:0 max \|frozen - original\| = 0\b", out.stdout + out.stderr), out.stdout
    finally:
        assert stop_server(srv) == 0
