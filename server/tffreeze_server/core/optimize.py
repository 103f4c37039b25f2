"""--optimize: inference rewrites of a frozen graph, all producing standard ops
(no grappler-internal fused ops), so the result stays portable.

  1. debug ops (Print, Assert, CheckNumerics) are removed;
  2. identities are removed where that is safe (no control flow in the graph);
  3. constants are folded (grappler's constant folding only);
  4. batch norm is folded into the preceding Conv2D/DepthwiseConv2dNative/MatMul:
     an inference-mode FusedBatchNorm* with constant parameters becomes the
     conv with scaled weights plus a BiasAdd (vectorised: a ResNet-50 folds in
     milliseconds, where TensorFlow's optimize_for_inference loops per element),
     and, for batch norm built from primitive ops, a per-channel constant Mul
     after a conv/matmul is folded into its weights.

Folding reorders float32 arithmetic: outputs move by rounding only (the tests
check 1e-4 absolute + 1e-4 relative on real architectures).
"""

from __future__ import annotations

from typing import List

from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
from tensorflow.python.framework import tensor_util
from tensorflow.python.grappler import tf_optimizer
import numpy as np

from . import oppolicy
from .graph import consumers, node_of, nodes_by_name, reach
from .oproles import (CALL_OPS, CONTROL_FLOW_V1_OPS, DEBUG_FORWARDING_OPS, DEBUG_OPS as _DEBUG_OPS,
                      FUNCTIONAL_CONTROL_FLOW_OPS)
from .oproles import FUSED_BATCH_NORM_OPS as _FUSED_BN

_CONTROL_FLOW = CONTROL_FLOW_V1_OPS | FUNCTIONAL_CONTROL_FLOW_OPS | CALL_OPS


def _retain(graph_def, keep) -> None:
    """Delete the nodes ``keep`` rejects, in place: the weights are not copied."""
    for i in reversed([i for i, n in enumerate(graph_def.node) if not keep(n)]):
        del graph_def.node[i]


def _prune(graph_def, output_nodes: List[str]) -> None:
    """Keep what the outputs need (data and control inputs), in place."""
    by_name = nodes_by_name(graph_def)
    needed = reach([o for o in output_nodes if o in by_name],
                   lambda name: (node_of(i) for i in by_name[name].input if node_of(i) in by_name))
    _retain(graph_def, lambda n: n.name in needed)


def _strip_debug(graph_def) -> None:
    forward = {}
    for node in graph_def.node:
        if node.op in DEBUG_FORWARDING_OPS and node.input:
            forward[node.name] = node.input[0]
    drop = {n.name for n in graph_def.node if n.op in _DEBUG_OPS}
    for node in graph_def.node:
        if node.name in drop:
            continue
        new = []
        for inp in node.input:
            src = node_of(inp)
            if inp.startswith("^") and src in drop:
                continue
            while src in forward and not inp.startswith("^"):
                inp = forward[src]
                src = node_of(inp)
            new.append(inp)
        del node.input[:]
        node.input.extend(new)
    _retain(graph_def, lambda n: n.name not in drop)


def _fold_constants(graph_def, output_nodes: List[str]):
    """Grappler's constant folding over the graph with its large constants (the
    weights) stood in by placeholders, so they are not copied through grappler;
    folding works on the small constants around them. The weights go back by name."""
    from .rewrite import large_constant, skeleton

    big = {n.name: n for n in graph_def.node if large_constant(n)}  # exactly what the skeleton stands in
    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(skeleton(graph_def))
    fetch = meta.collection_def["train_op"].node_list.value
    fetch.extend(output_nodes)
    config = config_pb2.ConfigProto()
    rw = config.graph_options.rewrite_options
    rw.optimizers.extend(["constfold"])
    rw.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    rw.min_graph_nodes = -1
    oppolicy.lock_rewriters(rw)  # no pass brings a function in (the implementation selector, ...)
    folded = tf_optimizer.OptimizeGraph(config, meta)
    for node in folded.node:
        if node.op == "Placeholder" and node.name in big:
            control = [i for i in node.input if i.startswith("^")]
            node.CopyFrom(big[node.name])
            del node.input[:]
            node.input.extend(control)
    return folded


def _remove_identities(graph_def, protected) -> None:
    """Bypass Identity nodes (outside control flow): consumers read the Identity's input.
    Control inputs of an Identity only order side-effect-free work in a frozen graph, so they go too."""
    forward = {}
    for node in graph_def.node:
        data = [i for i in node.input if not i.startswith("^")]
        if node.op in ("Identity", "Snapshot") and node.name not in protected and len(data) == 1:
            forward[node.name] = data[0]

    def resolve(ref):
        seen = set()
        while node_of(ref) in forward and node_of(ref) not in seen and ref.partition(":")[2] in ("", "0"):
            seen.add(node_of(ref))
            ref = forward[node_of(ref)]
        return ref

    for node in graph_def.node:
        if node.name in forward:
            continue
        new = []
        for inp in node.input:
            if inp.startswith("^"):
                new.append("^" + node_of(resolve(inp[1:])))
            else:
                new.append(resolve(inp))
        del node.input[:]
        node.input.extend(dict.fromkeys(new))  # no duplicate control inputs
    _retain(graph_def, lambda n: n.name not in forward)


def _const(node):
    return tensor_util.MakeNdarray(node.attr["value"].tensor) if node is not None and node.op == "Const" else None


def _scale_weights(prod, s, by_name, users, ops) -> bool:
    """Multiply the constant weights of ``prod`` (an op in ``ops``: Conv2D,
    DepthwiseConv2dNative or MatMul) by ``s`` (one factor, or one per output channel), in place, when
    ``prod`` and its weights have no other reader. False when it cannot."""
    if prod is None or prod.op not in ops or len(users.get(prod.name, ())) != 1:
        return False
    if prod.op == "MatMul" and prod.attr["transpose_b"].b:
        return False
    w_node = by_name.get(node_of(prod.input[1]))
    weights = _const(w_node)
    if weights is None or len(users.get(w_node.name, ())) != 1:
        return False
    if s.size == 1:  # one factor for every channel
        s = s.reshape(())
    elif prod.op == "DepthwiseConv2dNative":  # [h, w, in, multiplier]: output channel = in * multiplier
        if weights.shape[2] * weights.shape[3] != s.size:
            return False
        s = s.reshape(weights.shape[2], weights.shape[3])
    elif weights.shape[-1] != s.size:
        return False
    new_w = (weights * s).astype(weights.dtype)
    w_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new_w, weights.dtype))
    return True


def _rewrite(node, op: str, data_inputs: List[str]) -> None:
    """Turn ``node`` into ``op`` over ``data_inputs``, keeping its control inputs and T."""
    control = [i for i in node.input if i.startswith("^")]
    del node.input[:]
    node.input.extend(data_inputs + control)
    t = node.attr["T"].type
    node.attr.clear()
    node.op = op
    node.attr["T"].type = t


def _fold_scale_into_weights(graph_def) -> int:
    """Mul(Conv2D|MatMul(x, W), c) with constant per-output-channel c -> Conv2D|MatMul(x, W*c)."""
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    folded = 0
    for node in list(graph_def.node):
        if node.op != "Mul" or len(node.input) != 2:
            continue
        for a, b in ((0, 1), (1, 0)):
            prod = by_name.get(node_of(node.input[a]))
            scale = _const(by_name.get(node_of(node.input[b])))
            if prod is None or scale is None or ":" in node.input[a] or any(d != 1 for d in scale.shape[:-1]):
                continue
            if not _scale_weights(prod, scale.reshape(-1), by_name, users, ("Conv2D", "MatMul")):
                continue
            _rewrite(node, "Identity", [prod.name])
            folded += 1
            break
    return folded


_FOLDABLE = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def _fold_batch_norms(graph_def) -> int:
    """FusedBatchNorm(conv(x, W), scale, offset, mean, var) in inference mode ->
    BiasAdd(conv(x, W * s), offset - mean * s) with s = scale / sqrt(var + eps)."""
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    folded = 0
    for bn in list(graph_def.node):
        if bn.op not in _FUSED_BN or bn.attr["is_training"].b or len(bn.input) < 5 or ":" in bn.input[0]:
            continue
        if any(u for u in users.get(bn.name, ()) if any(i.startswith(bn.name + ":") and not i.endswith(":0")
                                                          for i in by_name[u].input)):
            continue  # the batch statistics outputs are read
        params = [_const(by_name.get(node_of(i))) for i in bn.input[1:5]]
        if any(p is None or p.dtype != np.float32 or p.size == 0 for p in params):
            continue
        scale, offset, mean, var = params
        s = scale / np.sqrt(var + np.float32(bn.attr["epsilon"].f))
        conv = by_name.get(node_of(bn.input[0]))
        w = _const(by_name.get(node_of(conv.input[1]))) if conv is not None and len(conv.input) > 1 else None
        if w is None or w.dtype != np.float32 or not _scale_weights(conv, s, by_name, users, _FOLDABLE):
            continue
        bias = graph_def.node.add(name=bn.name + "/folded_bias", op="Const")
        bias.attr["dtype"].type = bn.attr["T"].type
        bias.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto((offset - mean * s).astype(np.float32)))
        data_format = bn.attr["data_format"].s or b"NHWC"
        _rewrite(bn, "BiasAdd", [conv.name, bias.name])
        bn.attr["data_format"].s = data_format if conv.op != "MatMul" else b"NHWC"
        folded += 1
    return folded


def _keep_library(graph_def, library, versions):
    """Some rewrites rebuild the GraphDef from its nodes only; put the functions back."""
    if not graph_def.library.function and library.function:
        graph_def.library.CopyFrom(library)
    if not graph_def.HasField("versions"):
        graph_def.versions.CopyFrom(versions)
    return graph_def


def optimize(graph_def, input_nodes: List[str], output_nodes: List[str], in_place: bool = False):
    """Returns the optimised graph and a list of what was done. ``in_place``: the
    input may be consumed (no copy of the weights is made for it)."""
    done = []
    out = graph_def
    if not in_place:
        out = type(graph_def)()
        out.CopyFrom(graph_def)
    before = len(out.node)
    _strip_debug(out)
    has_control_flow = any(n.op in _CONTROL_FLOW for n in out.node) or bool(out.library.function)
    if not has_control_flow:
        _remove_identities(out, set(input_nodes) | set(output_nodes))
    library, versions = out.library, out.versions
    out = _keep_library(_fold_constants(out, output_nodes), library, versions)
    bn_folded = _fold_batch_norms(out)
    scaled = _fold_scale_into_weights(out)
    if not has_control_flow:  # folding leaves Identity nodes of its own
        _remove_identities(out, set(input_nodes) | set(output_nodes))
    _prune(out, output_nodes)
    done.append("%d -> %d nodes" % (before, len(out.node)))
    if bn_folded:
        done.append("%d batch norm(s) folded into the preceding conv/matmul" % bn_folded)
    if scaled:
        done.append("%d batch-norm scale(s) folded into weights" % scaled)
    return out, done


__all__ = ["optimize"]
