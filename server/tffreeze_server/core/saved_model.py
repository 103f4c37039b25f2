"""TF2 SavedModels (tf.saved_model.save, Keras model.export).

Their variables live in an object graph restored by functions, not by a
saver's restore ops, so this path *does* execute part of the upload:
``tf.saved_model.load`` runs the SavedModel's restore function (reading the
variables from the upload's own checkpoint). It runs only inside a worker
process, in a private working directory. The signature's concrete function is
then frozen by TensorFlow's ``convert_variables_to_constants_v2`` (as data: the
function body is not run).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants as c2c

from .errors import InvalidArgument, NotFound


def _pick_signature(loaded, wanted: str):
    names = sorted(loaded.signatures.keys())
    if not names:
        raise NotFound("the SavedModel has no signatures to freeze; export it with a serving signature "
                       "(tf.saved_model.save(model, DIR, signatures=...) or Keras model.export(DIR))")
    if wanted:
        if wanted not in loaded.signatures:
            raise NotFound("signature %r is not in the SavedModel; signatures: %s" % (wanted, ", ".join(names)))
        return wanted
    if "serving_default" in loaded.signatures:
        return "serving_default"
    if len(names) == 1:
        return names[0]
    raise InvalidArgument("the SavedModel has several signatures (%s) and none is serving_default; choose "
                          "one with --signature" % ", ".join(names))


def freeze(export_dir: str, tags: List[str], signature: str):
    """(graph_def, inputs [(alias, tensor)], outputs [(alias, tensor)], signature name)."""
    try:
        loaded = tf.saved_model.load(export_dir, tags=tags or None)
    except (tf.errors.OpError, ValueError, KeyError, TypeError) as exc:
        msg = (getattr(exc, "message", None) or str(exc)).strip()
        raise InvalidArgument("cannot load the SavedModel: %s. Upload the directory tf.saved_model.save "
                              "wrote (saved_model.pb, variables/, assets/)" % (msg.splitlines()[0] if msg else exc)) from None
    name = _pick_signature(loaded, signature)
    func = loaded.signatures[name]
    frozen = c2c.convert_variables_to_constants_v2(func)
    graph_def = frozen.graph.as_graph_def()
    # Inputs: the signature's keyword arguments, in the order of the frozen placeholders.
    _, kwargs = func.structured_input_signature
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    by_spec_name: Dict[str, str] = {}
    for alias, spec in kwargs.items():
        by_spec_name[(spec.name or alias)] = alias
    inputs: List[Tuple[str, str]] = []
    for t in placeholders:
        alias = by_spec_name.get(t.op.name) or t.op.name
        inputs.append((alias, t.name))
    outputs: List[Tuple[str, str]] = []
    structured = func.structured_outputs
    # Signature outputs are a dict; the frozen function's outputs follow tf.nest's sorted-key order.
    aliases = sorted(structured) if isinstance(structured, dict) else [
        "output_%d" % i for i in range(len(frozen.outputs))]
    for alias, t in zip(aliases, frozen.outputs):
        outputs.append((alias, t.name))
    return graph_def, inputs, outputs, name
