"""Tasks run inside a task's own sandboxed process (see ``workers``). Imports TensorFlow.

A task's payload carries the request's FreezeOptions (serialized, base64) and the
server's limits; ``workdir`` (the staged upload) and ``out_dir`` (the task's own
output folder) are added by the worker. Results are JSON: the serialized
FreezeResult / InspectResponse (base64) and the assembly recipe's pieces; the
server checks each against ``wire`` and the contract before using it."""

from __future__ import annotations

import os

from tffreeze_api import native_logs

from . import wire

# The stage of a progress message that carries the early recipe's pieces (sent as a
# "plan" frame; the servicer turns it into a recipe).
PLAN = "plan"
OUTPUT_NAME = "frozen.pb"  # the frozen graph's name in the task's output folder


def _spec(payload: dict):
    from tffreeze_api.v1 import freeze_pb2

    from .core.spec import FreezeSpec, ServerLimits

    options = freeze_pb2.FreezeOptions.FromString(wire.unb64(payload["options"], "options"))
    return FreezeSpec.from_options(options, ServerLimits(**payload["limits"]))


def _pieces(pieces) -> list:
    """Recipe pieces as JSON: ["file", path, offset, length] or ["graph", offset, length]."""
    return [list(p) for p in pieces]


def _plan(pieces) -> list:
    """Early-recipe pieces as JSON: ["file", path, offset, length] or ["data", base64]."""
    return [list(p) if p[0] == "file" else ["data", wire.b64(p[1])] for p in pieces]


def _write_warm_model(directory: str) -> None:
    """A 2-variable Saver checkpoint of our own (for the warm-up; never a user's)."""
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=np.ones((2, 2), np.float32))
        tf.add(tf.matmul(x, w), tf1.get_variable("b", initializer=np.zeros(2, np.float32)), name="y")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(directory, "model.ckpt"))


def _warm_engine() -> None:
    """Run the engine once on a tiny model of our own, so that every task's process
    (forked from this one) starts with TensorFlow's lazy first-use work done. The model is
    written by a forked child: saving runs a session, which starts threads, and this
    process must stay free of them to fork safely. No task's data is ever involved."""
    import shutil
    import tempfile

    from .core import engine
    from .core.spec import FreezeSpec

    directory = tempfile.mkdtemp(prefix="tffreeze-warm-")
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _write_warm_model(directory)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status == 0:
            engine.freeze(directory, FreezeSpec(outputs=("y",)), os.path.join(directory, OUTPUT_NAME))
            engine.inspect(directory, FreezeSpec())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def handle(kind: str, payload: dict, progress):
    if kind == "warm":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_logs.native_lines_off():  # (TensorFlow's start-up lines, unless $TFFREEZE_VERBOSE)
            import tensorflow as tf  # noqa: F401  (the expensive import, done once per worker)

            tf.get_logger().setLevel("ERROR")
            from .core import engine  # noqa: F401

            _warm_engine()
        return tf.__version__
    from .core import engine

    spec = _spec(payload)
    from .core import oppolicy

    oppolicy.limit_import_constants(spec.limits.max_import_constant_bytes)
    oppolicy.lock_eager()  # no eager function call of this task (converters' included) swaps implementations
    if kind == "freeze":
        recipe: list = []
        on_plan = (lambda pieces: progress(PLAN, _plan(pieces), 0.0)) if payload.get("early_recipe") else None
        result = engine.freeze(payload["workdir"], spec, os.path.join(payload["out_dir"], OUTPUT_NAME),
                               progress=progress, recipe=recipe, on_plan=on_plan)
        return {"result": wire.b64(result.SerializeToString()), "recipe": _pieces(recipe)}
    if kind == "inspect":
        return {"result": wire.b64(engine.inspect(payload["workdir"], spec, progress=progress).SerializeToString())}
    raise ValueError("unknown task %r" % kind)
