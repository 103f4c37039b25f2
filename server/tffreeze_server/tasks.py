"""Tasks run inside worker processes (see ``workers``). Imports TensorFlow.

Payloads carry a ``FreezeSpec``; results cross the pipe as serialized
FreezeResult / InspectResponse messages."""

from __future__ import annotations

import os

# The stage of a progress message that carries the early recipe's pieces (the worker's
# pipe carries progress messages; the servicer turns this one into a recipe).
PLAN = "plan"


def handle(kind: str, payload: dict, progress):
    if kind == "warm":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf  # noqa: F401  (the expensive import, done once per worker)

        tf.get_logger().setLevel("ERROR")
        from .core import engine  # noqa: F401
        return tf.__version__
    from .core import engine

    if kind == "freeze":
        recipe: list = []
        on_plan = (lambda pieces: progress(PLAN, pieces, 0.0)) if payload.get("early_recipe") else None
        result = engine.freeze(payload["workdir"], payload["spec"], payload["out_path"], progress=progress,
                               recipe=recipe, on_plan=on_plan)
        return result.SerializeToString(), recipe
    if kind == "inspect":
        return engine.inspect(payload["workdir"], payload["spec"], progress=progress).SerializeToString()
    raise ValueError("unknown task %r" % kind)
