"""Every stage that runs code of the upload has its own time limit (issue 32, finding 5).

Uploads made by TensorFlow here that loop forever in one such stage, on a real server
started with small limits: a TF2 SavedModel whose resource initialiser never ends
(TensorFlow runs it while loading: --load-seconds), a Saver checkpoint whose graph freezes
fine but never ends when run (--format onnx / tflite run it: --export-seconds). Each
call is DEADLINE_EXCEEDED naming the flag, about the limit after the stage began and long
before the call's own deadline; the same worker then serves the next freeze."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import models
from conftest import start_server, stop_server
from tffreeze import DeadlineExceededError, FreezeClient

tf = models.tf
tf1 = tf.compat.v1

LOAD_SECONDS = 3.0
EXPORT_SECONDS = 3.0
CALL_SECONDS = 300.0  # the calls' own deadline: a limited stage must end long before it
SLACK = 8.0  # from the stage's start to the error: polling, killing the task, the status on its way (a busy machine)


# -- uploads ---------------------------------------------------------------------------------
class _Spinner(tf.saved_model.experimental.TrackableResource):
    """A resource whose initialiser (a while loop of allowed ops, its condition always true)
    never ends. tf.saved_model.save only traces it; tf.saved_model.load runs it."""

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.int64, shape=[], shared_name="")

    def _initialize(self):
        turns = tf.while_loop(lambda i: tf.constant(True), lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=turns)


class _SpinningModule(tf.Module):
    def __init__(self):
        super().__init__()
        self.spinner = _Spinner()
        self.w = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        turns = tf.raw_ops.ReadVariableOp(resource=self.spinner.resource_handle, dtype=tf.int64)
        return {"y": x * self.w + 0.0 * tf.cast(turns, tf.float32)}


def saved_model_spinning_on_load(directory: str) -> str:
    module = _SpinningModule()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    return directory


def checkpoint_spinning_when_run(directory: str) -> str:
    """A Saver checkpoint whose output waits on a while loop that never ends: freezing reads
    the graph as data (fine); running it (the format option's check) never returns."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = tf1.get_variable("w", initializer=np.float32(2.0), use_resource=True)
        _, total = tf.while_loop(lambda i, a: tf.constant(True), lambda i, a: (i + 1, a + 1.0),
                                 [tf.constant(0, tf.int64), tf.reduce_sum(x)])
        tf.multiply(w, total, name="out")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(directory, "model.ckpt"))
    return directory


# -- the server -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """One worker (so the next call proves it healthy), no result cache (every freeze runs)."""
    srv = start_server(str(tmp_path_factory.mktemp("limits-data")),
                       ["--load-seconds", str(LOAD_SECONDS), "--export-seconds", str(EXPORT_SECONDS),
                        "--no-result-cache"])
    yield srv
    assert stop_server(srv) == 0


class _Clock:
    """When the call started, and when the server said the stage whose message contains
    ``marker`` began."""

    def __init__(self, marker: str):
        self.marker = marker
        self.started = time.monotonic()
        self.stage_began = None

    def __call__(self, what, done, total, message=""):
        if what == "freeze" and self.marker in message and self.stage_began is None:
            self.stage_began = time.monotonic()


def _cut(call, flag: str, limit: float, clock: _Clock) -> DeadlineExceededError:
    with pytest.raises(DeadlineExceededError) as err:
        call()
    ended = time.monotonic()
    exc = err.value
    assert exc.reason == "ERROR_REASON_DEADLINE", exc
    assert flag in exc.message and "%g s" % limit in exc.message, exc.message
    assert exc.metadata.get("server_flag") == flag, exc.metadata
    assert float(exc.metadata["limit"]) == limit, exc.metadata
    assert ended - clock.started < CALL_SECONDS / 5, "not cut by its stage's limit: %.1f s" % (ended - clock.started)
    if clock.stage_began is not None:  # (a freeze; inspect reports no progress)
        # (the server's clock starts when it reads the stage, a moment before this client does)
        assert limit - 0.5 <= ended - clock.stage_began < limit + SLACK, ended - clock.stage_began
    print("%s: cut %.1f s after the call started%s" % (
        flag, ended - clock.started,
        ", %.1f s after its stage began" % (ended - clock.stage_began) if clock.stage_began else ""))
    return exc


def _serves_on(client, tmp_path, name: str) -> None:
    """The same (only) worker freezes an ordinary checkpoint next."""
    model = models.dense(str(tmp_path / name), True)
    start = time.monotonic()
    seen = []
    outcome = client.freeze(model.directory, outputs=["y"], progress=lambda what, d, t, msg="": seen.append(msg))
    assert any(m.startswith("converting:") for m in seen), seen  # frozen by the worker, not answered from a cache
    got = models.run_frozen(outcome.graph_bytes, model.feeds, ["y:0"])[0]
    np.testing.assert_allclose(got, model.expected["y:0"], rtol=1e-6)
    print("next freeze served in %.1f s" % (time.monotonic() - start))


# -- the tests --------------------------------------------------------------------------------
def test_a_saved_model_whose_initialiser_never_ends_is_cut_at_load_seconds(limited, tmp_path):
    directory = saved_model_spinning_on_load(str(tmp_path / "spin"))
    with FreezeClient(limited.target, timeout=CALL_SECONDS) as client:
        clock = _Clock("loading the TF2 SavedModel")
        exc = _cut(lambda: client.freeze(directory, progress=clock), "--load-seconds", LOAD_SECONDS, clock)
        assert clock.stage_began is not None, "the load was reported as its own stage"
        assert exc.metadata.get("stage") == "STAGE_LOADING_GRAPH", exc.metadata
        assert "TF2 SavedModel" in exc.message
        _serves_on(client, tmp_path, "after-freeze")

        clock = _Clock("loading the TF2 SavedModel")
        _cut(lambda: client.inspect(directory), "--load-seconds", LOAD_SECONDS, clock)  # inspect loads it too
        _serves_on(client, tmp_path, "after-inspect")


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_graph_that_never_ends_when_run_is_cut_at_export_seconds(limited, tmp_path, fmt):
    directory = checkpoint_spinning_when_run(str(tmp_path / "spin"))
    with FreezeClient(limited.target, timeout=CALL_SECONDS) as client:
        frozen = client.freeze(directory, outputs=["out"])  # freezing it never runs it
        assert [o["name"] for o in frozen.manifest["outputs"]] == ["out:0"]
        clock = _Clock("converting to %s" % fmt)
        exc = _cut(lambda: client.freeze(directory, outputs=["out"], format=fmt, progress=clock),
                   "--export-seconds", EXPORT_SECONDS, clock)
        assert clock.stage_began is not None
        assert exc.metadata.get("stage") == "STAGE_EXPORTING", exc.metadata
        _serves_on(client, tmp_path, "after-" + fmt)
