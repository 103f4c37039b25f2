"""TensorFlow's own error text, in one line: what a runner or the verify option
shows instead of a bare "Graph execution error:". Pure text over the exception's
attributes (``message``, ``op``); imports nothing."""

from __future__ import annotations

import re

_NOISE = re.compile(r"^(Graph execution error:|Detected at node .* defined at \(most recent call last\):|"
                    r"File \".*\", line \d+.*|Node: '.*'|Stack trace for op definition:.*|\[\[.*\]\]|In \{\{node [^}]+\}\})$")
_NODE = re.compile(r"\{\{node ([^}]+)\}\}")


def describe(exc, limit: int = 600) -> str:
    """'node mm (MatMul): Matrix size-incompatible: In[0]: [2,4], In[1]: [3,2]' from a tf.errors.OpError."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [l.strip() for l in message.splitlines()]
    text = " ".join(l for l in lines if l and not _NOISE.match(l)) or message.strip()
    node, op = None, None
    op_obj = getattr(exc, "op", None)
    node_def = getattr(exc, "node_def", None)
    if node_def is not None and getattr(node_def, "name", ""):
        node, op = node_def.name, getattr(node_def, "op", None)
    elif op_obj is not None:
        node, op = getattr(op_obj, "name", None), getattr(op_obj, "type", None)
    if node is None:
        m = _NODE.search(message)
        node = m.group(1) if m else None
    where = ("node %s%s: " % (node, " (%s)" % op if op else "")) if node else ""
    text = where + text
    return text if len(text) <= limit else text[: limit - 4] + " ..."


__all__ = ["describe"]
