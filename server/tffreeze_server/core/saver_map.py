"""Which checkpoint key restores which graph variable, read from the saver's
restore ops as data (the restore op is never run).

``Saver({"renamed": var})`` writes ``RestoreV2`` with ``tensor_names`` =
["renamed"], whose output i feeds ``Assign(var, ...)`` (ref variables) or
``AssignVariableOp(var, Identity(...))`` (resource variables). Sharded savers
have one ``RestoreV2`` per device; partitioned variables carry a slice spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from tensorflow.python.framework import tensor_util

from .graph import consumers, node_of, nodes_by_name
from .oproles import ASSIGN_OPS as _ASSIGN_OPS, RESTORE_OPS as _RESTORE_OPS, VARIABLE_OPS

_PASS_THROUGH = {"Identity", "IdentityN"}


@dataclass(frozen=True)
class KeyRef:
    key: str
    slice_spec: str = ""  # "" for a whole tensor, else "full_shape slice"


def _const_strings(node) -> Optional[List[str]]:
    if node is None or node.op != "Const":
        return None
    arr = tensor_util.MakeNdarray(node.attr["value"].tensor)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]


def _variable_behind(name: str, by_name) -> Optional[str]:
    """Follow Identity nodes from an Assign target to the variable node."""
    seen = set()
    while name in by_name and name not in seen:
        seen.add(name)
        node = by_name[name]
        if node.op in VARIABLE_OPS:
            return name
        if node.op in _PASS_THROUGH and node.input:
            name = node_of(node.input[0])
            continue
        return None
    return None


def variable_keys(graph_def, saver_def=None) -> Dict[str, KeyRef]:
    """graph variable node name -> the checkpoint key (and slice) restoring it. With several Savers
    in the graph, the one ``saver_def`` names (a MetaGraphDef's: the Saver that exported it, whose
    save() wrote the checkpoint beside it) decides; the others only add variables it leaves out."""
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    mapping: Dict[str, KeyRef] = {}
    scope = ""
    if saver_def is not None and saver_def.restore_op_name:
        scope = saver_def.restore_op_name.rpartition("/")[0] + "/"
    restores = [n for n in graph_def.node if n.op in _RESTORE_OPS and len(n.input) >= 2]
    if scope:  # (the later assignments win: the named Saver's come last)
        restores = ([n for n in restores if not n.name.startswith(scope)]
                    + [n for n in restores if n.name.startswith(scope)])
    for node in restores:
        keys = _const_strings(by_name.get(node_of(node.input[1])))
        if keys is None:
            continue
        slices = (_const_strings(by_name.get(node_of(node.input[2]))) if len(node.input) > 2 else None) or [""] * len(keys)
        # Walk each output of the restore op forward through identities to its assignment.
        frontier = [(node.name, None)]
        visited = set()
        while frontier:
            name, index = frontier.pop()
            for user in sorted(users.get(name, ())):
                unode = by_name[user]
                for pos, inp in enumerate(unode.input):
                    if inp.startswith("^") or node_of(inp) != name:
                        continue
                    out_index = index
                    if out_index is None:  # leaving the restore op itself: which output?
                        parts = inp.split(":")
                        out_index = int(parts[1]) if len(parts) > 1 else 0
                    if unode.op in _PASS_THROUGH:
                        if (user, out_index) not in visited:
                            visited.add((user, out_index))
                            frontier.append((user, out_index))
                    elif unode.op in _ASSIGN_OPS and pos == 1 and out_index < len(keys):
                        var = _variable_behind(node_of(unode.input[0]), by_name)
                        if var is not None:
                            mapping[var] = KeyRef(keys[out_index], slices[out_index] if out_index < len(slices) else "")
    return mapping
