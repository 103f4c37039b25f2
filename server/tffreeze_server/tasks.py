"""Tasks run inside a task's own sandboxed process (see ``workers``). Imports TensorFlow.

A task's payload carries the request's FreezeOptions (serialized, base64) and the
server's limits; ``workdir`` (the staged upload) and ``out_dir`` (the task's own
output folder) are added by the worker. Results are JSON: the serialized
FreezeResult / InspectResponse (base64) and the assembly recipe's pieces; the
server checks each against ``wire`` and the contract before using it."""

from __future__ import annotations

import os

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


def handle(kind: str, payload: dict, progress):
    if kind == "warm":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf  # noqa: F401  (the expensive import, done once per worker)

        tf.get_logger().setLevel("ERROR")
        from .core import engine  # noqa: F401
        return tf.__version__
    from .core import engine

    spec = _spec(payload)
    from .core import oppolicy

    oppolicy.limit_import_constants(spec.limits.max_import_constant_bytes)
    if kind == "freeze":
        recipe: list = []
        on_plan = (lambda pieces: progress(PLAN, _plan(pieces), 0.0)) if payload.get("early_recipe") else None
        result = engine.freeze(payload["workdir"], spec, os.path.join(payload["out_dir"], OUTPUT_NAME),
                               progress=progress, recipe=recipe, on_plan=on_plan)
        return {"result": wire.b64(result.SerializeToString()), "recipe": _pieces(recipe)}
    if kind == "inspect":
        return {"result": wire.b64(engine.inspect(payload["workdir"], spec, progress=progress).SerializeToString())}
    raise ValueError("unknown task %r" % kind)
