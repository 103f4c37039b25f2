"""Rewrite a GraphDef as data: variables become constants with values from the
checkpoint reader, everything the outputs do not need is pruned, devices and
colocation are cleared, and the result is made deterministic."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import convert_to_constants as c2c
from tensorflow.python.framework import graph_util, op_def_registry, tensor_util

from .errors import FailedPrecondition, ResourceExhausted
from .graph import LARGE_BYTES, attr_functions, functions_called, reach
from .oproles import FORWARDING_OPS as _PASSTHROUGH, PLACEHOLDER_OPS, SCRATCH_RELEASE_OPS as _RELEASES
from .splice import content_dtype

PROTOBUF_LIMIT = (1 << 31) - 1

# After freezing, ops that read a ref variable must read a plain tensor instead.
_REF_TO_PLAIN = {
    "RefSwitch": "Switch", "RefEnter": "Enter", "RefExit": "Exit", "RefMerge": "Merge",
    "RefIdentity": "Identity", "RefNextIteration": "NextIteration", "RefSelect": "Select",
}
# Ops that must never survive into an inference graph: variables themselves and the saver
# (by kind), and every op that writes a variable (by what it does: ``writes_variable``).
_VARIABLE_OR_SAVER = re.compile(
    r"^(.*Variable.*Op|VariableV2|Variable|VarHandleOp|_VarHandlesOp|Save.*|Restore.*|MergeV2Checkpoints|"
    r"WriteFile|DestroyResourceOp)$")
_ALLOWED_DESPITE_PATTERN = {"ReadVariableOp", "_ReadVariablesOp", "VarIsInitializedOp"}
_DT_RESOURCE_ENUM = 20


def writes_variable(op: str) -> bool:
    """The op changes a variable it is given, read off its OpDef: it takes a variable by
    reference and hands the reference on (Assign, ScatterUpdate, ApplyAdam: a ref output)
    or returns nothing (nothing to compute but the write), or takes a resource and returns
    nothing but is stateful (AssignVariableOp, ResourceScatterAdd, ResourceApplyAdam).
    A scatter into a tensor (ScatterNd, TensorScatterUpdate) takes none and is inference;
    reads (ReadVariableOp, ResourceGather, IsVariableInitialized) return a value."""
    op_def = op_def_registry.get(op)
    if op_def is None or op in _REF_TO_PLAIN or op in _RELEASES:
        return False
    by_ref = any(a.is_ref for a in op_def.input_arg)
    by_handle = any(a.type == _DT_RESOURCE_ENUM for a in op_def.input_arg)
    returns_ref = any(a.is_ref for a in op_def.output_arg)
    if by_ref:
        return returns_ref or not op_def.output_arg or op in ("CountUpTo",)
    return by_handle and op_def.is_stateful and (not op_def.output_arg or op == "ResourceCountUpTo")


class _ReaderConverterData(c2c._ConverterData):  # pylint: disable=protected-access
    """TensorFlow's constant-conversion machinery, fed from a checkpoint reader
    instead of a Session: values are supplied, nothing is executed."""

    def __init__(self, graph_def, values: Dict[str, Tuple[np.ndarray, int]]):
        super().__init__(graph_def)
        for name, (array, dtype_enum) in values.items():
            self._tensor_data[name] = c2c._TensorData(numpy=array, dtype=dtype_enum, index=None)


def prune(graph_def, output_nodes: List[str]):
    """The subgraph the outputs need (data and control inputs), devices cleared."""
    sub = graph_util.extract_sub_graph(graph_def, output_nodes)
    for node in sub.node:
        node.device = ""
    return sub


def unknown_ops(graph_def) -> List[Tuple[str, str]]:
    """(node, op) pairs whose op this TensorFlow does not register."""
    functions = {f.signature.name for f in graph_def.library.function}
    bad = []
    for node in graph_def.node:
        if node.op not in functions and op_def_registry.get(node.op) is None:
            bad.append((node.name, node.op))
    for func in graph_def.library.function:
        for node in func.node_def:
            if node.op not in functions and op_def_registry.get(node.op) is None:
                bad.append(("%s/%s" % (func.signature.name, node.name), node.op))
    return bad


def check_size(values: Dict[str, Tuple[np.ndarray, int]], graph_def, limit: int = PROTOBUF_LIMIT):
    total = graph_def.ByteSize() + sum(a.nbytes for a, _ in values.values())
    if total > limit:
        biggest = sorted(values.items(), key=lambda kv: -kv[1][0].nbytes)[:3]
        raise ResourceExhausted(
            "the frozen graph would be about %.2f GB, over protobuf's 2 GB limit (largest variables: %s). "
            "Freeze a smaller subgraph (name fewer outputs), or serve the model as a SavedModel instead."
            % (total / 1e9, ", ".join("%s %.1f MB" % (k, a.nbytes / 1e6) for k, (a, _) in biggest)),
            "ERROR_REASON_GRAPH_TOO_LARGE")


def _spliceable(array: np.ndarray, dtype_enum: int) -> bool:
    return array.nbytes >= LARGE_BYTES and content_dtype(dtype_enum)


def _predicates_as_constants(graph_def, values):
    """A v1 cond's predicate read from a variable (tflearn's ``is_training`` variable) becomes a
    Const of the variable's value first: TensorFlow's converter follows a variable only into a
    Switch's data input and fails on its predicate ("index 1 is out of range")."""
    by_name = {n.name: n for n in graph_def.node}

    def variable_of(tensor: str) -> Optional[str]:
        name = tensor.split(":")[0].lstrip("^")
        for _ in range(8):  # through reads and identities
            node = by_name.get(name)
            if node is None:
                return None
            if name in values:
                return name
            if node.op not in ("Identity", "ReadVariableOp") or not node.input:
                return None
            name = node.input[0].split(":")[0]
        return None

    swaps = {}
    for node in graph_def.node:
        if node.op in ("Switch", "RefSwitch") and len(node.input) > 1:
            var = variable_of(node.input[1])
            if var is not None and isinstance(values[var][0], np.ndarray) and values[var][0].size == 1:
                swaps[node.name] = var
    if not swaps:
        return graph_def
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    made = set()
    for node in out.node:
        var = swaps.get(node.name)
        if var is None:
            continue
        const = "%s/predicate_value" % var
        if const not in made and const not in by_name:
            array, enum = values[var]
            c = out.node.add(name=const, op="Const")
            c.attr["dtype"].type = enum
            c.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array.reshape(()), dtype=enum))
            made.add(const)
        node.input[1] = const
    return out


def to_constants(graph_def, values: Dict[str, Tuple[np.ndarray, int]], splices: Optional[dict] = None):
    """Variables become Consts. Large values are not handed to TensorFlow's converter
    (which copies them through make_tensor_proto): it gets a scalar stand-in, and
    the value's bytes are set on the Const afterwards, once — the same TensorProto
    make_tensor_proto would build (little-endian tensor_content). A value still in
    the checkpoint's data file (``values.Stored``) gets dtype and shape only; its
    bytes are spliced in when the graph is written: it is added to ``splices``."""
    graph_def = _predicates_as_constants(graph_def, values)
    big = {name: (array, enum) for name, (array, enum) in values.items()
           if hasattr(array, "splice") or _spliceable(array, enum)}
    feed = {name: ((np.zeros((), array.dtype), enum) if name in big else (array, enum))
            for name, (array, enum) in values.items()}
    data = _ReaderConverterData(graph_def, feed)
    frozen, _ = c2c._replace_variables_by_constants(converter_data=data)  # pylint: disable=protected-access
    if big:
        from tensorflow.python.framework import dtypes

        by_name = {n.name: n for n in frozen.node}
        for name, (array, enum) in big.items():
            node = by_name[name]
            tensor = node.attr["value"].tensor
            tensor.Clear()
            tensor.dtype = enum
            for d in array.shape:
                tensor.tensor_shape.dim.add(size=int(d))
            if hasattr(array, "splice"):
                splices[name] = array.splice
                continue
            want = np.dtype(dtypes.as_dtype(enum).as_numpy_dtype).newbyteorder("<")
            tensor.tensor_content = np.ascontiguousarray(array, dtype=want).tobytes()
    _retype_resource_passthroughs(frozen)
    _read_orderings_kept(graph_def, frozen)
    _plain_reads_in_functions(frozen)
    _function_returns_by_output_name(frozen)
    return frozen


def _read_orderings_kept(graph_def, frozen) -> None:
    """A check ordered before a variable's read (``tf.control_dependencies([tf.debugging.assert_*])``,
    ``tf.print``: TensorFlow puts the edge on the resource variable's ReadVariableOp) stays
    ordered before what the read became: TensorFlow's converter turns the read into an Identity
    of the constant and drops its control inputs, which left the check disconnected (a negative
    input passed an assert_non_negative). Edges to nodes the frozen graph still holds are restored."""
    kept = {n.name: n for n in frozen.node}
    for node in graph_def.node:
        if node.op not in ("ReadVariableOp", "ResourceGather", "ResourceGatherNd"):
            continue
        edges = [i for i in node.input if i.startswith("^")]
        now = kept.get(node.name)
        if not edges or now is None or now.op == node.op:
            continue
        have = set(now.input)
        now.input.extend(e for e in edges if e not in have and e[1:] in kept and not writes_variable(kept[e[1:]].op))


def _arg_dtype(func, name: str, depth: int = 0):
    """The dtype flowing into a function-body input ``name``: an argument's type,
    or what an Identity chain inside the body passes on."""
    for arg in func.signature.input_arg:
        if arg.name == name:
            return arg.type
    node_name = name.split(":")[0]
    for node in func.node_def:
        if node.name == node_name and node.op in _PASSTHROUGH and node.input and depth < 16:
            return _arg_dtype(func, node.input[0], depth + 1)
    return None


def _plain_reads_in_functions(graph_def) -> None:
    """Inside loop bodies, cond branches and called functions, TensorFlow's
    converter retypes the captured variable arguments to their values but leaves
    the ops reading them (it skips ResourceGather in functions): a
    ``ResourceGather`` of a now-constant argument becomes ``GatherV2``, a
    ``ResourceGatherNd`` ``GatherNd``, a ``ReadVariableOp`` ``Identity``."""
    for func in graph_def.library.function:
        for node in list(func.node_def):
            if node.op not in ("ResourceGather", "ResourceGatherNd", "ReadVariableOp") or not node.input:
                continue
            dtype = _arg_dtype(func, node.input[0])
            if dtype is None or dtype == _DT_RESOURCE:
                continue
            value_type = node.attr["dtype"].type
            if node.op == "ReadVariableOp":
                node.op = "Identity"
                node.attr.clear()
                node.attr["T"].type = value_type
                continue
            tindices = node.attr["Tindices"].type
            batch_dims = node.attr["batch_dims"].i if "batch_dims" in node.attr else 0
            keep = {k: node.attr[k] for k in ("_class",) if k in node.attr}
            node.attr.clear()
            node.attr["Tparams"].type = value_type
            node.attr["Tindices"].type = tindices
            for k, v in keep.items():
                node.attr[k].CopyFrom(v)
            if node.op == "ResourceGatherNd":
                node.op = "GatherNd"
                continue
            axis = func.node_def.add(name=node.name + "/axis", op="Const")
            axis.attr["dtype"].type = tindices
            axis.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.array(batch_dims), tindices))
            data = [i for i in node.input if not i.startswith("^")]
            control = [i for i in node.input if i.startswith("^")]
            del node.input[:]
            node.input.extend(data[:2] + [axis.name + ":output:0"] + control)
            node.op = "GatherV2"
            node.attr["Taxis"].type = tindices
            node.attr["batch_dims"].i = batch_dims


def _function_returns_by_output_name(graph_def) -> None:
    """A function's results name a node's output by its op's output argument
    (``read:value:0``); a read turned into an ``Identity`` (by TensorFlow's converter or
    ``_plain_reads_in_functions``) names it ``output``. TensorFlow's converter renames the
    body's inputs but not the results (``ret``): a function a trained graph calls in its
    forward pass (``__forward_*``, which returns the value it read for the gradient) would
    not load. Such results are renamed to the output the node's op has."""
    from tensorflow.python.framework import op_def_registry

    for func in graph_def.library.function:
        ops = {n.name: n.op for n in func.node_def}
        for key, ref in list(func.ret.items()):
            parts = ref.split(":")
            if len(parts) != 3 or parts[0] not in ops:
                continue
            op_def = op_def_registry.get(ops[parts[0]])
            if op_def is None or len(op_def.output_arg) != 1:
                continue
            name = op_def.output_arg[0].name
            if parts[1] != name:
                func.ret[key] = "%s:%s:%s" % (parts[0], name, parts[2])


_DT_RESOURCE = 20


def _output_dtype(node, index: int):
    """The dtype of ``node:index`` where it can be read off the NodeDef, else None."""
    if node.op == "Const":
        return node.attr["dtype"].type
    if node.op in ("While", "StatelessWhile") and node.attr["T"].list.type:
        types = node.attr["T"].list.type
        return types[index] if index < len(types) else None
    if node.op in _PASSTHROUGH | {"Merge"} and "T" in node.attr and node.attr["T"].type:
        return node.attr["T"].type
    return None


def _retype_resource_passthroughs(graph_def) -> None:
    """TensorFlow's converter retypes a While's inputs but not the consumers of
    its outputs: a pass-through op still typed `resource` after the variable
    became a constant takes the dtype of what now feeds it."""
    by_name = {n.name: n for n in graph_def.node}
    changed = True
    while changed:
        changed = False
        for node in graph_def.node:
            if node.op not in _PASSTHROUGH or node.attr["T"].type != _DT_RESOURCE or not node.input:
                continue
            src_name, _, idx = node.input[0].partition(":")
            src = by_name.get(src_name)
            dtype = _output_dtype(src, int(idx or 0)) if src is not None else None
            if dtype and dtype != _DT_RESOURCE:
                node.attr["T"].type = dtype
                changed = True


def _referenced_functions(graph_def) -> set:
    names = set()
    by_name = {f.signature.name: f for f in graph_def.library.function}
    stack = []
    for node in graph_def.node:
        stack.append(node)
    seen_funcs = set()
    while stack:
        node = stack.pop()
        if node.op in by_name:
            names.add(node.op)
        names.update(attr_functions(node.attr))
        for fname in list(names - seen_funcs):
            seen_funcs.add(fname)
            if fname in by_name:
                stack.extend(by_name[fname].node_def)
    return names


def tidy(graph_def) -> "graph_pb2.GraphDef":
    """Make the frozen graph portable and byte-for-byte deterministic, in place
    (no copy: constants may be large)."""
    for node in _all_nodes(graph_def):
        node.device = ""
        if node.op in _REF_TO_PLAIN:
            node.op = _REF_TO_PLAIN[node.op]
        # Internal attributes (_output_shapes, _class colocation, _has_manual_control_dependencies...)
        # describe the training process, can disagree with the frozen graph, and vary between runs.
        for attr in [a for a in node.attr if a.startswith("_") and a not in _KEPT_INTERNAL_ATTRS]:
            del node.attr[attr]
    # Node order carries no meaning in a GraphDef, but TensorFlow's function
    # inlining emits it in an order that varies between runs: sort by name.
    graph_def.node.sort(key=lambda n: n.name)
    # Keep only functions still referenced, in a stable order and with stable names.
    used = _referenced_functions(graph_def)
    library = graph_def.library
    functions = sorted((f for f in library.function if f.signature.name in used), key=lambda f: f.signature.name)
    gradients = [g for g in library.gradient if g.function_name in used]
    kept_functions = [type(f)() for f in functions]
    for dst, src in zip(kept_functions, functions):
        dst.CopyFrom(src)
    kept_gradients = [type(g)() for g in gradients]
    for dst, src in zip(kept_gradients, gradients):
        dst.CopyFrom(src)
    graph_def.ClearField("library")
    graph_def.library.function.extend(kept_functions)
    graph_def.library.gradient.extend(kept_gradients)
    # TensorFlow numbers generated functions with process-wide counters; name
    # them by their order of first use instead, so the bytes never depend on
    # what the worker did before.
    renames = {}
    for i, name in enumerate(_functions_in_use_order(graph_def)):
        renames[name] = "%s_%d" % (re.sub(r"(_\d+)+(?=_|$)", "", name).strip("_") or "f", i)
    if renames:
        _rename_functions(graph_def, renames)
        graph_def.library.function.sort(key=lambda f: f.signature.name)
    return graph_def


def _functions_in_use_order(graph_def) -> List[str]:
    """Functions in depth-first order of first use (iterative: libraries can nest deeply)."""
    by_name = {f.signature.name: f for f in graph_def.library.function}
    order: List[str] = []
    seen: Set[str] = set()

    # Frames of (nodes still to read, references of the current node still to follow).
    stack = [[iter(graph_def.node), iter(())]]
    while stack:
        frame = stack[-1]
        ref = next(frame[1], None)
        if ref is not None:
            if ref in by_name and ref not in seen:
                seen.add(ref)
                order.append(ref)
                stack.append([iter(by_name[ref].node_def), iter(())])
            continue
        node = next(frame[0], None)
        if node is None:
            stack.pop()
        else:
            frame[1] = iter(functions_called(node, by_name))
    return order


_KEPT_INTERNAL_ATTRS = {"_lower_using_switch_merge"}


def _all_nodes(graph_def):
    yield from graph_def.node
    for func in graph_def.library.function:
        yield from func.node_def


_VALUE_FIELDS = ("half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val", "int64_val",
                 "bool_val", "dcomplex_val", "resource_handle_val", "variant_val", "uint32_val", "uint64_val",
                 "float8_val")


def large_constant(node, min_bytes: int = LARGE_BYTES) -> bool:
    """A Const whose tensor_content holds at least ``min_bytes``, judged from its dtype
    and shape and the absence of repeated values (a splat constant, one float_val
    broadcast to a large shape, is small): reading the bytes (or ByteSize()) of a
    large tensor_content would copy it in this protobuf runtime."""
    from tensorflow.python.framework import dtypes

    if node.op != "Const":
        return False
    tensor = node.attr["value"].tensor
    try:
        item = dtypes.as_dtype(tensor.dtype).size
    except (TypeError, ValueError):
        return False
    count = 1
    for d in tensor.tensor_shape.dim:
        count *= max(int(d.size), 0)
    if count * item < min_bytes:
        return False
    return not any(len(getattr(tensor, f)) for f in _VALUE_FIELDS if hasattr(tensor, f))


def skeleton(graph_def, min_bytes: int = LARGE_BYTES):
    """A copy whose large constants are Placeholders of the same dtype and shape:
    importing it checks ops, attributes and edges and infers the same shapes,
    without copying the weights again."""
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if large_constant(node, min_bytes):
            stub = out.node.add()
            stub.name, stub.op = node.name, "Placeholder"
            stub.input.extend(node.input)  # control inputs, if any
            stub.attr["dtype"].type = node.attr["dtype"].type
            stub.attr["shape"].shape.CopyFrom(node.attr["value"].tensor.tensor_shape)
        else:
            out.node.add().CopyFrom(node)
    return out


def _rename_functions(graph_def, renames: Dict[str, str]):
    def fix(attr_map):
        for value in attr_map.values():
            if value.HasField("func") and value.func.name in renames:
                value.func.name = renames[value.func.name]
            if value.HasField("list"):
                for f in value.list.func:
                    if f.name in renames:
                        f.name = renames[f.name]

    for node in graph_def.node:
        if node.op in renames:
            node.op = renames[node.op]
        fix(node.attr)
    for f in graph_def.library.function:
        if f.signature.name in renames:
            f.signature.name = renames[f.signature.name]
        for node in f.node_def:
            if node.op in renames:
                node.op = renames[node.op]
            fix(node.attr)
    for g in graph_def.library.gradient:
        if g.function_name in renames:
            g.function_name = renames[g.function_name]


_SET_OPS = frozenset({"Assign", "AssignVariableOp"})  # a variable set to a value the graph computed
_READ_OPS = frozenset({"Identity", "ReadVariableOp"})


def drop_carried_state(graph_def, within: Set[str]) -> List[str]:
    """A variable set, in the forward pass, to a value computed from its own value (power
    iteration's vector in spectral normalisation: a warm start carried to the next run) is
    state, not an input of this run: the outputs are ordered after the assignment by a control
    edge only, and compute with the value set, read before it. (An update the outputs do not
    compute with, batch norm's moving average beside the batch statistics, is training.) Those control edges are dropped
    (in place), so the frozen graph computes from the checkpoint's value what the first run
    after restoring computes. Not when anything after the edge reads the variable again (that
    read would see the new value). Only edges into ``within`` (what the outputs need) are
    dropped. Returns the assignments whose edges were dropped."""
    by_name = {n.name: n for n in graph_def.node}
    users: Dict[str, List[str]] = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                users.setdefault(i.split(":")[0], []).append(n.name)

    def upstream(start: str) -> set:
        return reach([start], lambda name: (i.lstrip("^").split(":")[0] for i in by_name[name].input)
                     if name in by_name else ())

    def variable_of(assign) -> Optional[str]:
        return assign.input[0].split(":")[0] if assign.input else None

    def reads(name: str, var: str) -> bool:
        node = by_name.get(name)
        return node is not None and node.op in _READ_OPS and bool(node.input) and node.input[0].split(":")[0] == var

    carried, values = {}, {}
    for node in graph_def.node:
        var = variable_of(node) if node.op in _SET_OPS else None
        if var is None or len(node.input) < 2:
            continue
        value_from = upstream(node.input[1].split(":")[0])
        if any(reads(n, var) for n in value_from):  # computed from the variable's own value
            carried[node.name] = var
            values[node.name] = node.input[1].split(":")[0]
    if not carried:
        return []
    dropped = []
    for node in graph_def.node:
        if node.name not in within:
            continue
        edges = [i for i in node.input if i.startswith("^") and i[1:] in carried]
        for edge in edges:
            var = carried[edge[1:]]
            data_up = set()
            for i in node.input:
                if not i.startswith("^"):
                    data_up |= upstream(i.split(":")[0])
            if data_up and values[edge[1:]] not in data_up:
                continue  # the outputs do not compute with the value set (batch norm's moving average: an update)
            # (a constant made inside the block, data_up empty, is ordered after it for nothing)
            after = reach([node.name], lambda name: users.get(name, ()))  # ordered after it, through data
            if any(reads(n, var) for n in after):
                continue
            node.input.remove(edge)
            dropped.append(edge[1:])
    return sorted(set(dropped))


_WHILE_OPS = frozenset({"While", "StatelessWhile"})


def drop_loop_accumulators(graph_def) -> int:
    """A TF2 while loop whose gradient was taken carries, beside its own loop variables, one
    accumulator per intermediate the backward loop needs (a TensorList each step pushes to,
    started from an EmptyTensorList in ``gradients/``). The frozen inference graph reads none of
    them: each loop variable that is such an accumulator, whose result nothing reads and that the
    loop condition ignores, is taken out of the loop (its input, its argument and result in the
    body, the condition's argument, its push), in place; then what only fed them goes. Returns
    how many were taken out. Loops whose functions another loop shares are left as they are."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    nodes = {n.name: n for n in graph_def.node}
    loops = [n for n in graph_def.node if n.op in _WHILE_OPS]
    used_by = {}
    for n in loops:
        for key in ("body", "cond"):
            used_by[n.attr[key].func.name] = used_by.get(n.attr[key].func.name, 0) + 1
    read: Dict[str, Set[int]] = {}
    for node in graph_def.node:
        for i in node.input:
            name, _, index = i.lstrip("^").partition(":")
            read.setdefault(name, set()).add(int(index) if index.isdigit() and not i.startswith("^") else 0)
    dropped, starts = 0, []
    for loop in loops:
        body, cond = functions.get(loop.attr["body"].func.name), functions.get(loop.attr["cond"].func.name)
        if body is None or cond is None or used_by[body.signature.name] > 1 or used_by[cond.signature.name] > 1:
            continue
        if (any(i.startswith("^") for i in loop.input) or len(body.signature.input_arg) != len(loop.input)
                or len(body.signature.output_arg) != len(loop.input) or len(cond.signature.input_arg) != len(loop.input)):
            continue  # (a loop not as while_v2 writes them: left as it is)
        body_reads = _function_reads(body)
        cond_reads = _function_reads(cond)
        drop = []
        for k, arg in enumerate(body.signature.input_arg):
            if k in read.get(loop.name, set()) or cond.signature.input_arg[k].name in cond_reads:
                continue  # its result is read, or the condition reads it
            ret = body.ret.get(body.signature.output_arg[k].name, "")
            push = ret.split(":")[0]
            push_node = next((n for n in body.node_def if n.name == push), None)
            if (push_node is None or push_node.op != "TensorListPushBack" or not push_node.input
                    or push_node.input[0] != arg.name or body_reads.get(arg.name) != {push}
                    or push in {r.split(":")[0] for o, r in body.ret.items() if o != body.signature.output_arg[k].name}):
                continue
            source = nodes.get(loop.input[k].lstrip("^").split(":")[0])
            if source is None or source.op != "EmptyTensorList":
                continue
            drop.append(k)
        if not drop:
            continue
        starts += [loop.input[k] for k in drop]
        _take_out_of_loop(graph_def, loop, body, cond, drop)
        dropped += len(drop)
    if starts:  # (once, at the end: it rebuilds the node list, which the loops above point into)
        _prune_unread(graph_def, starts)
    return dropped


def _function_reads(func) -> Dict[str, Set[str]]:
    """{an argument's or node's name: the names of the body nodes that read it}."""
    out: Dict[str, Set[str]] = {}
    for node in func.node_def:
        for i in node.input:
            out.setdefault(i.lstrip("^").split(":")[0], set()).add(node.name)
    for r in list(func.ret.values()) + list(func.control_ret.values()):
        out.setdefault(r.split(":")[0], set()).add("<return>")
    return out


def _keep_only(field, keep) -> None:
    """Keep, in a repeated message field, the items at the indices ``keep`` (a list of indices)
    or for which ``keep`` (a function) is true, in order."""
    items = list(field)
    chosen = [items[k] for k in keep] if isinstance(keep, list) else [x for x in items if keep(x)]
    copies = [type(x)() for x in chosen]
    for dst, src in zip(copies, chosen):
        dst.CopyFrom(src)
    del field[:]
    field.extend(copies)


def _take_out_of_loop(graph_def, loop, body, cond, drop: List[int]) -> None:
    keep = [k for k in range(len(loop.input)) if k not in drop]
    renumber = {old: new for new, old in enumerate(keep)}
    inputs = [loop.input[k] for k in keep]
    del loop.input[:]
    loop.input.extend(inputs)
    types = list(loop.attr["T"].list.type)
    del loop.attr["T"].list.type[:]
    loop.attr["T"].list.type.extend(types[k] for k in keep)
    if "output_shapes" in loop.attr and len(loop.attr["output_shapes"].list.shape) == len(types):
        _keep_only(loop.attr["output_shapes"].list.shape, keep)
    if "_num_original_outputs" in loop.attr:
        loop.attr["_num_original_outputs"].i = len(keep)
    for node in graph_def.node:  # readers of the loop's later results: their new numbers
        for j, i in enumerate(node.input):
            name, _, index = i.partition(":")
            if name == loop.name and index.isdigit() and renumber.get(int(index), int(index)) != int(index):
                node.input[j] = "%s:%d" % (name, renumber[int(index)])
    for func in (body, cond):
        n_args = len(func.signature.input_arg)
        _keep_only(func.signature.input_arg, keep)
        attrs = {k: type(v)() for k, v in func.arg_attr.items()}
        for k, v in func.arg_attr.items():
            attrs[k].CopyFrom(v)
        func.arg_attr.clear()
        for k, v in attrs.items():
            if k in renumber:
                func.arg_attr[renumber[k]].CopyFrom(v)
        if "_input_shapes" in func.attr and len(func.attr["_input_shapes"].list.shape) == n_args:
            _keep_only(func.attr["_input_shapes"].list.shape, keep)
        ids = dict(func.resource_arg_unique_id)
        func.resource_arg_unique_id.clear()
        for k, v in ids.items():
            if k in renumber:
                func.resource_arg_unique_id[renumber[k]] = v
    for k in drop:
        del body.ret[body.signature.output_arg[k].name]
    _keep_only(body.signature.output_arg, keep)
    _prune_function(body)


def _prune_function(func) -> None:
    """Drop body nodes nothing returned depends on (stateful nodes stay: they run for their effect)."""
    by_name = {n.name: n for n in func.node_def}
    stack = [r.split(":")[0] for r in list(func.ret.values()) + list(func.control_ret.values())]
    stack += [n.name for n in func.node_def if (op_def_registry.get(n.op) is None or op_def_registry.get(n.op).is_stateful)]
    seen = reach(stack, lambda name: (i.lstrip("^").split(":")[0] for i in by_name[name].input)
                 if name in by_name else ())
    if len(seen & set(by_name)) != len(func.node_def):
        _keep_only(func.node_def, lambda n: n.name in seen)


def _prune_unread(graph_def, starts: List[str]) -> None:
    """Drop the nodes that fed only what was taken out of a loop (its accumulators' EmptyTensorList
    and the shapes and constants only they read): from ``starts`` up, while nothing reads them."""
    by_name = {n.name: n for n in graph_def.node}
    readers: Dict[str, int] = {}
    for n in graph_def.node:
        for i in n.input:
            name = i.lstrip("^").split(":")[0]
            readers[name] = readers.get(name, 0) + 1
    stack, gone = [t.lstrip("^").split(":")[0] for t in starts], set()
    while stack:
        name = stack.pop()
        node = by_name.get(name)
        if node is None or name in gone or readers.get(name, 0):
            continue
        gone.add(name)
        for i in node.input:
            up = i.lstrip("^").split(":")[0]
            readers[up] = readers.get(up, 0) - 1
            stack.append(up)
    if gone:
        _keep_only(graph_def.node, lambda n: n.name not in gone)


def forbidden_nodes(graph_def) -> List[Tuple[str, str]]:
    """Stateful training/saver nodes left in a frozen graph or its functions: (node, op)."""
    found = [(n.name, n.op) for n in graph_def.node]
    for func in graph_def.library.function:
        found += [("%s/%s" % (func.signature.name, n.name), n.op) for n in func.node_def]
    return [(name, op) for name, op in found if op not in _ALLOWED_DESPITE_PATTERN
            and (_VARIABLE_OR_SAVER.match(op) or writes_variable(op))]


def reject_forbidden(graph_def, switches: Sequence[str] = ()):
    """Refuse training or saver ops the outputs still need; ``switches``: the bindings (``NAME=VALUE``)
    of unbound boolean switches left in the graph, whose training branch may be what holds them
    (advised first)."""
    bad = forbidden_nodes(graph_def)
    if bad:
        bind = ("If a switch selects the training branch, bind it to its inference value (options.bind %s). "
                % ", ".join(switches[:3])) if switches else ""
        raise FailedPrecondition(
            "the outputs still depend on training or saver ops after freezing: %s. %sChoose outputs that "
            "do not run training steps (name them with options.outputs), or check that every variable they read is in "
            "the checkpoint." % (", ".join("%s (%s)" % nb for nb in bad[:10]), bind), "ERROR_REASON_TRAINING_OP_NEEDED",
            nodes=",".join(n for n, _ in bad[:20]))


def placeholders(graph_def) -> List[object]:
    return [n for n in graph_def.node if n.op in PLACEHOLDER_OPS]


def replace_with_placeholder(graph_def, node_name: str, dtype_enum: int, shape_proto):
    """Cut the graph at an explicit non-placeholder input: the node becomes a Placeholder."""
    for node in graph_def.node:
        if node.name == node_name:
            node.ClearField("input")
            node.op = "Placeholder"
            node.attr.clear()
            node.attr["dtype"].type = dtype_enum
            node.attr["shape"].shape.CopyFrom(shape_proto)
            return
    raise KeyError(node_name)


def iterator_placeholder_names(node) -> List[str]:
    """The placeholders an iterator's outputs become: output 0 its own name (``NAME:0`` is fed as
    the graph's author knew it, and as a user who names it in --inputs wrote it), the others
    NAME_1, NAME_2, ... (a placeholder has one output)."""
    n = len(node.attr["output_types"].list.type)
    return [node.name] + ["%s_%d" % (node.name, i) for i in range(1, n)]


def cut_iterator(graph_def, node_name: str) -> Dict[str, str]:
    """Replace an IteratorGetNext (tf.data's hand-over to the model) with one placeholder
    per output, of the dtypes and shapes its attributes record; consumers are rewired.
    Returns {old tensor name: new tensor name}."""
    node = next(n for n in graph_def.node if n.name == node_name)
    types = list(node.attr["output_types"].list.type)
    shapes = list(node.attr["output_shapes"].list.shape) or [None] * len(types)
    names = iterator_placeholder_names(node)
    renames = {"%s:%d" % (node_name, i): "%s:0" % name for i, name in enumerate(names)}
    renames["%s:0" % node_name] = "%s:0" % names[0]
    for other in graph_def.node:
        for j, inp in enumerate(other.input):
            if inp == "^" + node_name:
                other.input[j] = "^" + names[0]
                continue
            if inp.startswith("^"):
                continue
            src, _, idx = inp.partition(":")
            if src == node_name:
                other.input[j] = names[int(idx or 0)]
    keep = [n for n in graph_def.node if n.name != node_name]
    del graph_def.node[:]
    graph_def.node.extend(keep)
    for name, dtype, shape in zip(names, types, shapes):
        holder = graph_def.node.add(name=name, op="Placeholder")
        holder.attr["dtype"].type = dtype
        if shape is not None:
            holder.attr["shape"].shape.CopyFrom(shape)
    return renames


__all__ = ["prune", "to_constants", "tidy", "skeleton", "reject_forbidden", "unknown_ops", "check_size",
           "placeholders", "replace_with_placeholder", "cut_iterator", "iterator_placeholder_names",
           "PROTOBUF_LIMIT"]
