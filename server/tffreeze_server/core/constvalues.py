"""The exact values of constant sub-graphs, computed in numpy before anything is imported.

Shape arithmetic (``tf.range(n * k)``, the frame count of ``tf.signal.frame``),
lookup-table contents built from ``tf.range``: such values follow from Const
nodes alone through a few ops. Checks that run before TensorFlow sees a graph
(``bounds``) and rewrites that need a table's contents (``tables``) evaluate
them here instead of guessing. Only the ops below are evaluated (a positive
list, each in numpy with TensorFlow's semantics); every value, intermediate or
not, is bounded in elements before it is allocated, and a budget bounds them
all together. A value that cannot be computed this way is None: the caller
refuses, naming it; nothing here raises on an upload's graph.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np

_BINARY = {
    "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "Maximum": np.maximum,
    "Minimum": np.minimum, "FloorDiv": np.floor_divide, "FloorMod": np.mod, "RealDiv": np.true_divide,
    "Pow": np.power, "SquaredDifference": lambda a, b: np.square(a - b), "Equal": np.equal,
    "NotEqual": np.not_equal, "Less": np.less, "LessEqual": np.less_equal, "Greater": np.greater,
    "GreaterEqual": np.greater_equal, "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
    "TruncateDiv": lambda a, b: np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b)),
    "TruncateMod": np.fmod,
}
_UNARY = {
    "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Round": np.round, "Sqrt": np.sqrt,
    "Square": np.square, "Sign": np.sign, "LogicalNot": np.logical_not, "Rsqrt": lambda a: 1 / np.sqrt(a),
    "Reciprocal": lambda a: 1 / a, "Exp": np.exp, "Log": np.log, "Cos": np.cos, "Sin": np.sin,
    "ZerosLike": np.zeros_like, "OnesLike": np.ones_like,
}
_PASS = {"Identity", "Snapshot", "StopGradient", "PreventGradient", "CheckNumerics", "EnsureShape"}
_REDUCE = {"Sum": np.sum, "Prod": np.prod, "Max": np.max, "Min": np.min, "Mean": np.mean, "All": np.all,
           "Any": np.any}
# ops whose output size is set by an input's value: computed (and checked) before allocating
_SIZED = {"Range", "Fill", "Tile", "BroadcastTo"}
OPS = frozenset({"Const", "Cast", "Reshape", "Squeeze", "ExpandDims", "Pack", "ConcatV2", "Concat", "Shape",
                 "Size", "Rank", "StridedSlice", "Slice", "GatherV2", "Gather", "Select", "SelectV2",
                 "Transpose", "IdentityN", "Unpack", "Split", "BroadcastArgs"} | _SIZED | _PASS | set(_BINARY) | set(_UNARY) | set(_REDUCE))


def _inputs(node) -> List[str]:
    return [i for i in node.input if not i.startswith("^")]


def _split(name: str):
    """'node' / 'node:i' (a graph) -> (node, i). In a function body 'node:arg:i' is counted
    by ``Evaluator._port`` (the i-th tensor of output argument arg); here it is (node, -1)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], -1
    return parts[0], int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else 0


def _numpy_dtype(enum: int):
    from tensorflow.python.framework import dtypes

    return dtypes.as_dtype(enum).as_numpy_dtype


class Evaluator:
    """Values of a list of nodes (a graph or a function body), computed from its Consts.

    ``max_elements``: the largest value (elements) computed, intermediates included;
    ``budget``: elements of all values computed together."""

    def __init__(self, nodes, max_elements: int = 1 << 20, budget: Optional[int] = None):
        self.nodes = {n.name: n for n in nodes}
        self.max_elements = int(max_elements)
        self.left = int(budget if budget is not None else 4 * max_elements)
        self._out: Dict[str, Optional[list]] = {}
        self._big: Dict[str, int] = {}  # node -> elements of the value it (or an input) was refused for
        self._refused = 0

    def refused_size(self, tensor: str) -> int:
        """Elements of the value that made ``tensor`` not computable for its size (over
        ``max_elements`` or the budget), on its way or itself; 0 when that was not why."""
        name = _split(tensor.lstrip("^"))[0]
        self.value(tensor)
        return self._big.get(name, 0)

    def value(self, tensor: str) -> Optional[np.ndarray]:
        """The value of ``node`` or ``node:i``, or None when it is not computable here."""
        name, index = self._port(tensor.lstrip("^"))
        outs = self._evaluate(name)
        if outs is None or index >= len(outs):
            return None
        return outs[index]

    def _port(self, tensor: str):
        """(node, flat output index) of a tensor name, function-body form included: in
        'node:arg:i', the outputs of the output arguments before ``arg`` come first."""
        name, index = _split(tensor)
        if index >= 0:
            return name, index
        _, arg, i = tensor.split(":")
        node = self.nodes.get(name)
        from tensorflow.python.framework import op_def_registry

        op_def = op_def_registry.get(node.op) if node is not None else None
        if op_def is None or not i.isdigit():
            return name, 1 << 30  # (no such output: not evaluated)
        offset = 0
        for out in op_def.output_arg:
            if out.name == arg:
                return name, offset + int(i)
            if out.number_attr:
                offset += int(node.attr[out.number_attr].i)
            elif out.type_list_attr:
                offset += len(node.attr[out.type_list_attr].list.type)
            else:
                offset += 1
        return name, 1 << 30

    def _evaluate(self, root: str) -> Optional[list]:
        if root in self._out:
            return self._out[root]
        stack, order, seen = [root], [], set()
        while stack:  # iterative post-order: graphs can be deep
            name = stack.pop()
            if name in seen or name in self._out:
                continue
            seen.add(name)
            order.append(name)
            node = self.nodes.get(name)
            if node is None or node.op not in OPS:
                continue
            stack += [_split(i)[0] for i in _inputs(node) if _split(i)[0] not in self._out]
        for name in reversed(order):
            if name in self._out:
                continue
            node = self.nodes.get(name)
            outs = None
            if node is not None and node.op in OPS:
                args, big = [], []
                for i in _inputs(node):
                    src, k = self._port(i)
                    got = self._out.get(src)
                    args.append(got[k] if got is not None and k < len(got) else None)
                    if args[-1] is None:
                        big.append(self._big.get(src, 0))
                big = max(big) if big and min(big) else 0  # (only when every input missing was too large)
                # Shape/Size/Rank need only their input's shape, which a Const declares
                if node.op in ("Shape", "Size", "Rank") and args and args[0] is None:
                    args[0] = self._declared(_split(_inputs(node)[0])[0])
                self._refused = 0
                if all(a is not None for a in args):
                    try:
                        with np.errstate(all="ignore"):
                            outs = self._op(node, args)
                    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError,
                            MemoryError, AttributeError):
                        outs = None
                if outs is not None:
                    outs = [np.asarray(o) for o in outs]
                    total = sum(o.size for o in outs)
                    if any(o.size > self.max_elements for o in outs) or total > self.left:
                        self._refused, outs = total, None
                    else:
                        self.left -= total
                if outs is None and (big or self._refused):
                    self._big[name] = max(big, self._refused)
            self._out[name] = outs
        return self._out[root]

    def _declared(self, name: str) -> Optional[np.ndarray]:
        """A Const's value stand-in carrying only its declared shape (for Shape, Size, Rank)."""
        node = self.nodes.get(name)
        if node is None or node.op != "Const":
            return None
        dims = [int(d.size) for d in node.attr["value"].tensor.tensor_shape.dim]
        if any(d < 0 for d in dims):
            return None
        return np.lib.stride_tricks.as_strided(np.zeros((), np.int8), shape=dims, strides=[0] * len(dims))

    def _check(self, elements) -> None:
        if int(elements) > self.max_elements:
            self._refused = int(elements)
            raise ValueError("too large")

    def _op(self, node, a) -> Optional[list]:  # noqa: C901 - one small case per op
        op, attr = node.op, node.attr
        if op == "Const":
            tensor = attr["value"].tensor
            dims = [int(d.size) for d in tensor.tensor_shape.dim]
            self._check(np.prod(dims, dtype=object) if dims else 1)
            from tensorflow.python.framework import tensor_util

            return [tensor_util.MakeNdarray(tensor)]
        if op in _PASS:
            return [a[0]]
        if op == "IdentityN":
            return list(a)
        if op == "Cast":
            return [a[0].astype(_numpy_dtype(attr["DstT"].type))]
        if op in _UNARY:
            return [np.asarray(_UNARY[op](a[0])).astype(a[0].dtype)]
        if op in _BINARY:
            shape = np.broadcast_shapes(a[0].shape, a[1].shape)
            self._check(np.prod(shape, dtype=object) if shape else 1)
            if op in ("FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod") and a[1].dtype.kind in "iu" \
                    and not np.all(a[1]):
                return None  # TensorFlow refuses an integer division by zero
            out = np.asarray(_BINARY[op](a[0], a[1]))
            return [out if out.dtype.kind == "b" else out.astype(np.result_type(a[0], a[1]))]
        if op in _REDUCE:
            axes = tuple(int(x) % max(1, a[0].ndim) for x in a[1].reshape(-1))
            keep = bool(attr["keep_dims"].b) if "keep_dims" in attr else False
            return [np.asarray(_REDUCE[op](a[0], axis=axes, keepdims=keep)).astype(a[0].dtype)]
        if op == "Shape":
            return [np.array(a[0].shape, _numpy_dtype(attr["out_type"].type) if "out_type" in attr else np.int32)]
        if op == "Size":
            return [np.array(a[0].size, _numpy_dtype(attr["out_type"].type) if "out_type" in attr else np.int32)]
        if op == "Rank":
            return [np.array(a[0].ndim, np.int32)]
        if op == "Reshape":
            return [a[0].reshape([int(x) for x in a[1].reshape(-1)])]
        if op == "Squeeze":
            dims = [int(d) for d in attr["squeeze_dims"].list.i] if "squeeze_dims" in attr else []
            return [np.squeeze(a[0], axis=tuple(dims) if dims else None)]
        if op == "ExpandDims":
            return [np.expand_dims(a[0], int(a[1].reshape(-1)[0]))]
        if op == "Pack":
            return [np.stack(a, axis=int(attr["axis"].i) if "axis" in attr else 0)]
        if op in ("ConcatV2", "Concat"):
            axis, parts = (a[-1], a[:-1]) if op == "ConcatV2" else (a[0], a[1:])
            return [np.concatenate(parts, axis=int(axis.reshape(-1)[0]))]
        if op == "Unpack":
            axis = int(attr["axis"].i) if "axis" in attr else 0
            return [np.take(a[0], i, axis=axis) for i in range(a[0].shape[axis])]
        if op == "Split":
            return list(np.split(a[1], int(attr["num_split"].i), axis=int(a[0].reshape(-1)[0])))
        if op in ("Select", "SelectV2"):
            cond = a[0]
            if op == "Select" and cond.ndim == 1 and a[1].ndim > 1:
                cond = cond.reshape([-1] + [1] * (a[1].ndim - 1))
            shape = np.broadcast_shapes(cond.shape, a[1].shape, a[2].shape)
            self._check(np.prod(shape, dtype=object) if shape else 1)
            return [np.where(cond, a[1], a[2])]
        if op == "Transpose":
            return [np.transpose(a[0], [int(x) for x in a[1].reshape(-1)])]
        if op in ("GatherV2", "Gather"):
            axis = int(a[2].reshape(-1)[0]) if op == "GatherV2" else 0
            if "batch_dims" in attr and attr["batch_dims"].i:
                return None
            params, indices = a[0], a[1].astype(np.int64)
            axis %= max(1, params.ndim)
            if np.any(indices < 0) or np.any(indices >= params.shape[axis]):
                return None
            self._check(indices.size * (params.size // max(1, params.shape[axis])))  # before np.take allocates
            return [np.take(params, indices, axis=axis)]
        if op == "Slice":
            begin, size = [int(x) for x in a[1].reshape(-1)], [int(x) for x in a[2].reshape(-1)]
            index = tuple(slice(b, None if s < 0 else b + s) for b, s in zip(begin, size))
            return [a[0][index]]
        if op == "StridedSlice":
            return [self._strided_slice(node, a)]
        if op == "Range":
            start, limit, delta = (x.reshape(-1)[0] for x in a[:3])
            dtype = _numpy_dtype(attr["Tidx"].type) if "Tidx" in attr else np.int32
            count = range_size(start, limit, delta)
            if count is None:
                return None
            self._check(count)
            if np.dtype(dtype).kind == "f":  # start + i * delta, in the range's own type (as TensorFlow)
                return [dtype(start) + np.arange(count).astype(dtype) * dtype(delta)]
            return [(start + np.arange(count, dtype=np.int64) * delta).astype(dtype)]
        if op == "Fill":
            dims = [int(x) for x in a[0].reshape(-1)]
            if any(d < 0 for d in dims):
                return None
            self._check(np.prod(dims, dtype=object) if dims else 1)
            return [np.full(dims, a[1].reshape(-1)[0], a[1].dtype)]
        if op == "BroadcastArgs":  # tf.linspace, tf.random.gamma: the shape BroadcastTo then gets
            s0, s1 = ([int(x) for x in v.reshape(-1)] for v in a[:2])
            if any(d < 0 for d in s0 + s1):
                return None
            return [np.array(np.broadcast_shapes(tuple(s0), tuple(s1)), a[0].dtype)]
        if op == "BroadcastTo":
            dims = [int(x) for x in a[1].reshape(-1)]
            self._check(np.prod(dims, dtype=object) if dims else 1)
            return [np.array(np.broadcast_to(a[0], dims))]
        if op == "Tile":
            reps = [int(x) for x in a[1].reshape(-1)]
            self._check(a[0].size * (np.prod(reps, dtype=object) if reps else 1))
            return [np.tile(a[0], reps)]
        return None

    @staticmethod
    def _strided_slice(node, a) -> np.ndarray:
        attr = node.attr
        masks = {k: int(attr[k].i) if k in attr else 0 for k in
                 ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")}
        if masks["ellipsis_mask"] or masks["new_axis_mask"]:
            raise ValueError("not evaluated here")
        begin, end, strides = ([int(x) for x in v.reshape(-1)] for v in a[1:4])
        index = []
        for i, (b, e, s) in enumerate(zip(begin, end, strides)):
            if masks["shrink_axis_mask"] >> i & 1:
                index.append(b)
                continue
            index.append(slice(None if masks["begin_mask"] >> i & 1 else b,
                               None if masks["end_mask"] >> i & 1 else e, s))
        return np.asarray(a[0][tuple(index)])


def range_size(start, limit, delta) -> Optional[int]:
    """Elements of ``Range(start, limit, delta)`` as TensorFlow computes it; None for a
    delta of zero or the wrong sign (TensorFlow refuses those)."""
    try:
        if not all(math.isfinite(float(x)) for x in (start, limit, delta)):
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    if delta == 0 or (delta > 0 and start > limit) or (delta < 0 and start < limit):
        return None
    if all(np.asarray(x).dtype.kind in "iu" for x in (start, limit, delta)):
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        return (span + step - 1) // step
    kind = np.result_type(np.asarray(start), np.asarray(limit), np.asarray(delta))  # computed in it, as TensorFlow
    size = float(np.ceil(np.abs((np.asarray(limit, kind) - np.asarray(start, kind)) / np.asarray(delta, kind))))
    return int(size) if math.isfinite(size) else None


__all__ = ["Evaluator", "OPS", "range_size"]
