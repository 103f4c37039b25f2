"""Stages a task reports beyond the contract's ``Stage`` enum. Each is its own stage to
the worker pool, so that a step which runs code of the upload can have a time limit of
its own (``WorkerPool.run``'s ``stage_limits``, set by the servicer), and clients see it
as the contract stage ``CONTRACT`` maps it to: a Stage value that older clients do not
know would break their progress display (``Stage.Name`` raises on it). No TensorFlow here."""

from __future__ import annotations

from tffreeze_api.v1 import freeze_pb2

# Loading a TF2 SavedModel: TensorFlow runs the upload's restore functions and resource
# initialisers, then the chosen signature's variables become constants. Reported right
# before TensorFlow's loader starts; bounded by tffreeze serve --load-seconds. Clients see
# STAGE_LOADING_GRAPH ("reading the graph, or loading a TF2 SavedModel").
LOADING_SAVED_MODEL = "loading_saved_model"

CONTRACT = {LOADING_SAVED_MODEL: freeze_pb2.STAGE_LOADING_GRAPH}


def contract(stage):
    """The contract's Stage value for a stage a task reported."""
    return CONTRACT.get(stage, stage)


__all__ = ["LOADING_SAVED_MODEL", "CONTRACT", "contract"]
