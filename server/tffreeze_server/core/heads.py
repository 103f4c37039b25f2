"""Finding a trained model's head in its training graph, with evidence.

Read as data (nothing runs). The graph is split by what each node depends on:

* **weights**: computed from variables and no placeholder (``w/read``, a resource
  handle, ``w * 0.01``);
* **layer ops**: ops that apply weights to data (MatMul, Conv*, BiasAdd, batch norm,
  gathers, and loops or function calls that take weights in);
* **data inputs**: placeholders some layer op depends on; **labels**: the other
  placeholders (and dataset outputs) that reach a loss — what the model is compared with;
* **losses**: what gradients were taken of (``gradients/Shape`` reads it) and the
  ``losses`` collection.

The model's **predictions** are where the loss meets the labels: walking up from a
loss through label-dependent nodes, the first inputs computed from data and weights
without labels (logits, a softmax, a regression output). Auxiliary heads (a loss input
whose own layers are a small fraction of another's, e.g. Inception's AuxLogits) are
left out. The **heads following** a prediction are softmax/sigmoid/argmax/top-k nodes
computed from it without labels, outside training, metrics and summaries (each
extended through the reshapes that end it, as tf-slim's ``Predictions`` do).
**Inference branches** are sinks computed with the trained weights by layers the loss
never sees (greedy decoding in a loop, an export head): when a graph has them, they
are the model's outputs and the teacher-forced predictions are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from .graph import PLACEHOLDER_OPS, VARIABLE_OPS, node_of, reach, tensor_name

HEAD_OPS = {"Softmax", "Sigmoid", "LogSoftmax", "ArgMax", "ArgMin", "TopKV2", "TopK"}
_ALIAS_OPS = {"Identity", "Reshape", "Squeeze", "ExpandDims", "StopGradient", "Snapshot"}
LAYER_OPS = {
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "SparseMatMul", "Einsum",
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2",
    "BiasAdd", "BiasAddV1", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
    "Gather", "GatherV2", "GatherNd", "ResourceGather", "ResourceGatherNd",
    "LSTMBlockCell", "GRUBlockCell", "BlockLSTM", "BlockLSTMV2", "CudnnRNN", "CudnnRNNV2", "CudnnRNNV3",
    "While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase",
    "PartitionedCall", "StatefulPartitionedCall",
}
# Elementwise ops that are a layer when one side is a variable read (x * w + b written by hand).
_ELEMENTWISE_LAYER_OPS = {"Add", "AddV2", "Mul", "Sub"}
_READ_OPS = {"Identity", "ReadVariableOp", "Enter", "RefEnter", "Switch", "RefSwitch"}
DATA_SOURCE_OPS = PLACEHOLDER_OPS | {"IteratorGetNext", "QueueDequeueV2", "QueueDequeueManyV2",
                                     "QueueDequeueUpToV2", "OneShotIterator"}
_BACK_EDGE_OPS = {"NextIteration", "RefNextIteration"}
# tf.gradients seeds each y with `gradients/grad_ys_K = Fill(Shape(y), 1)`.
_GRAD_YS = re.compile(r"(^|/)gradients(_\d+)?/grad_ys_\d+$")
_KERAS_LOSS = re.compile(r"^loss(?:_\d+)?/(.+?)_loss/")
METRIC_SCOPE = re.compile(r"(^|/)metrics(_\d+)?/")


@dataclass
class Evidence:
    """Outputs found by structure, each (tensor, reason), and what was seen."""
    outputs: List[Tuple[str, str]] = field(default_factory=list)
    losses: List[str] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    predictions: List[str] = field(default_factory=list)
    auxiliary: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


class Structure:
    """Dependency facts about one GraphDef's top-level nodes."""

    def __init__(self, graph_def, excluded: Set[str], loss_names: Iterable[str] = ()):
        self.by_name = {n.name: n for n in graph_def.node}
        self.order = [n.name for n in graph_def.node]
        self.excluded = excluded
        self.data_inputs: Dict[str, List[str]] = {}
        self.users: Dict[str, List[str]] = {}
        for n in graph_def.node:
            data = [i for i in n.input if not i.startswith("^") and node_of(i) in self.by_name]
            self.data_inputs[n.name] = data
            for i in data:
                self.users.setdefault(node_of(i), []).append(n.name)
        self.from_vars = self._forward([n for n, node in self.by_name.items() if node.op in VARIABLE_OPS])
        self.sources = [n for n in self.order if self.by_name[n].op in DATA_SOURCE_OPS]
        self.bits = self._source_bits()
        self.layers = {n for n in self.order if self.is_layer(n)}
        self.extra_losses = [n for n in loss_names if n in self.by_name]

    # -- basic relations -------------------------------------------------------------
    def _forward(self, roots: Iterable[str], allowed=None) -> Set[str]:
        return reach(roots, lambda name: (u for u in self.users.get(name, ()) if allowed is None or allowed(u)))

    def upstream(self, roots: Iterable[str]) -> Set[str]:
        return reach([r for r in roots if r in self.by_name], lambda name: map(node_of, self.data_inputs[name]))

    def _source_bits(self) -> Dict[str, int]:
        """node -> bitmask of the data sources it depends on (topological order,
        loop back edges ignored: a loop's values enter it through Enter)."""
        index = {s: 1 << k for k, s in enumerate(self.sources)}
        pending = {}
        for name in self.order:
            preds = {node_of(i) for i in self.data_inputs[name]
                     if self.by_name[node_of(i)].op not in _BACK_EDGE_OPS}
            pending[name] = preds
        remaining = {n: len(p) for n, p in pending.items()}
        bits = {n: index.get(n, 0) for n in self.order}
        ready = [n for n in self.order if remaining[n] == 0]
        done: Set[str] = set()
        while ready:
            name = ready.pop()
            done.add(name)
            for i in pending[name]:
                bits[name] |= bits[i]
            for u in set(self.users.get(name, ())):
                if name in pending[u]:
                    remaining[u] -= 1
                    if remaining[u] == 0:
                        ready.append(u)
        for name in self.order:  # cycles without a back-edge op (malformed): best effort
            if name not in done:
                for i in pending[name]:
                    bits[name] |= bits[i]
        return bits

    def is_weight(self, name: str) -> bool:
        return name in self.from_vars and self.bits[name] == 0

    def is_activation(self, name: str) -> bool:
        return name in self.from_vars and self.bits[name] != 0

    def _is_read(self, name: str, depth: int = 0) -> bool:
        node = self.by_name.get(name)
        if node is None or depth > 8:
            return False
        if node.op in VARIABLE_OPS:
            return True
        return node.op in _READ_OPS and bool(self.data_inputs[name]) and \
            self._is_read(node_of(self.data_inputs[name][0]), depth + 1)

    def is_layer(self, name: str) -> bool:
        """Applies weights to data: a layer op with a weight input and a data-dependent one."""
        node = self.by_name[name]
        ins = [node_of(i) for i in self.data_inputs[name]]
        if node.op in LAYER_OPS:
            return any(self.is_weight(i) for i in ins) and any(self.bits[i] for i in ins)
        if node.op in _ELEMENTWISE_LAYER_OPS:
            return any(self._is_read(i) for i in ins) and any(self.bits[i] for i in ins)
        return False

    # -- the analysis ----------------------------------------------------------------
    def losses(self) -> List[str]:
        """What gradients were taken of: each `gradients/grad_ys_K` seed is read by
        `gradients/Y_grad/...` (or is Fill(Shape(Y)) when Y's shape is not static)."""
        found: List[str] = []
        for name in self.order:
            if self.by_name[name].op != "Fill" or not _GRAD_YS.search(name):
                continue
            scope = name[:name.rindex("/") + 1]
            ys = [u[len(scope):u.index("_grad/", len(scope))] for u in self.users.get(name, ())
                  if u.startswith(scope) and "_grad/" in u[len(scope):]]
            shape = node_of(self.data_inputs[name][0]) if self.data_inputs[name] else ""
            if shape and self.by_name[shape].op == "Shape" and self.data_inputs[shape]:
                ys.append(node_of(self.data_inputs[shape][0]))
            for y in ys:
                if y in self.by_name and y not in found:
                    found.append(y)
        for y in self.extra_losses:
            if y not in found:
                found.append(y)
        return found

    def labels(self, losses: List[str], switches: Set[str]) -> Tuple[List[str], int]:
        """Data sources that reach a loss but no layer op: what the model is compared with."""
        feeds_layers = self.upstream(self.layers - self.excluded)
        in_loss = self.upstream(losses)
        labels = [s for s in self.sources if s in in_loss and s not in feeds_layers and s not in switches]
        mask = 0
        for s in labels:
            mask |= 1 << self.sources.index(s)
        return labels, mask

    def predictions(self, losses: List[str], label_mask: int) -> List[str]:
        """Walking up from each loss through label-dependent nodes: the first inputs
        computed from data and weights without labels (tensor names)."""
        found: List[str] = []

        def step(name):
            for i in self.data_inputs[name]:
                src = node_of(i)
                if self.bits[src] & label_mask:
                    yield src
                elif self.is_activation(src) and src not in self.excluded and tensor_name(i) not in found:
                    found.append(tensor_name(i))
        reach([y for y in losses if self.bits[y] & label_mask], step)
        return found

    def leave_loss_scope(self, tensor: str, loss_scopes: Set[str]) -> List[str]:
        """A prediction found inside a loss's name scope (Keras' ``loss/...`` computing
        from probabilities) is replaced by what the scope reads from the model."""
        name = node_of(tensor)
        scope = name.split("/")[0]
        if scope not in loss_scopes:
            return [tensor]
        frontier: List[str] = []

        def step(n):
            for i in self.data_inputs[n]:
                src = node_of(i)
                if not self.is_activation(src):
                    continue
                if src.split("/")[0] == scope:
                    yield src
                elif tensor_name(i) not in frontier:
                    frontier.append(tensor_name(i))
        reach([name], step)
        return frontier or [tensor]

    def layer_count(self, nodes: Set[str]) -> int:
        return len(nodes & self.layers)

    def heads_after(self, tensor: str, label_mask: int, loss_scopes: Set[str]) -> List[str]:
        """Prediction heads computed from ``tensor`` (or from what it reshapes)."""
        base = node_of(tensor)
        while self.by_name[base].op in _ALIAS_OPS and self.data_inputs[base]:
            base = node_of(self.data_inputs[base][0])

        def allowed(n):
            return (not self.bits[n] & label_mask and n not in self.excluded
                    and n.split("/")[0] not in loss_scopes - {base.split("/")[0]})
        reach = self._forward([base], allowed)
        heads: List[str] = []
        for n in self.order:
            if n not in reach or self.by_name[n].op not in HEAD_OPS:
                continue
            end = n
            while True:  # through the reshapes that finish it (tf-slim's Predictions/Reshape_1)
                nxt = [u for u in self.users.get(end, ()) if allowed(u)]
                if len(nxt) == 1 and self.by_name[nxt[0]].op in _ALIAS_OPS:
                    end = nxt[0]
                else:
                    break
            t = end + ":0"
            if t not in heads and t != tensor:
                heads.append(t)
        return heads

    def effective_sinks(self, training: Set[str]) -> List[str]:
        """Nodes read by nothing but summaries, metrics or bookkeeping (what feeds an
        assignment or an optimizer is an update, not a sink)."""
        return [n for n in self.order if n not in self.excluded
                and all(u in self.excluded and u not in training for u in self.users.get(n, ()))]


def find(graph_def, excluded: Set[str], training: Set[str], switches: Set[str], loss_collection: Iterable[str],
         unused_control_flow) -> Optional[Evidence]:
    """The model's outputs by structure, or None when the graph has no loss to go by."""
    s = Structure(graph_def, excluded, loss_collection)
    losses = s.losses()
    if not losses:
        return None
    ev = Evidence(losses=losses)
    labels, label_mask = s.labels(losses, switches)
    ev.labels = labels
    if not label_mask:
        ev.notes.append("no labels found: every placeholder the loss reads also feeds the model")
        return ev
    loss_scopes = {y.split("/")[0] for y in losses} | {
        n.split("/")[0] for n in s.upstream(losses) if s.bits[n] & label_mask and "/" in n}
    preds: List[str] = []
    for p in s.predictions(losses, label_mask):
        for q in s.leave_loss_scope(p, loss_scopes):
            if q not in preds:
                preds.append(q)
    # Auxiliary heads: a prediction whose own layers are few next to another's.
    if len(preds) > 1:
        up = {p: s.upstream([node_of(p)]) for p in preds}
        keep = []
        for p in preds:
            aux = False
            for o in preds:
                if o == p or not (up[p] & up[o]):
                    continue
                own, other = s.layer_count(up[p] - up[o]), s.layer_count(up[o] - up[p])
                if other >= 3 * max(own, 1) and s.layer_count(up[p] & up[o]) > own:
                    aux = True
            (ev.auxiliary if aux else keep).append(p)
        preds = keep
    ev.predictions = preds

    # Inference branches: sinks computed by layers outside everything the loss reads.
    in_loss = s.upstream(losses)
    downstream = s._forward([node_of(p) for p in preds])
    # One forward pass (linear in the graph): what layers outside the loss's inputs compute.
    after_own_layers = s._forward(s.layers - in_loss, lambda n: n not in in_loss)
    branches = [n + ":0" for n in s.effective_sinks(training)
                if n in after_own_layers and n not in downstream and s.is_activation(n)
                and not s.bits[n] & label_mask and not unused_control_flow(s.by_name[n])]
    if branches:
        ev.outputs = [(t, "inference branch: computed with the trained weights by layers the loss (%s) "
                          "never reads" % ", ".join(losses[:3])) for t in branches]
        if preds:
            ev.notes.append("training-time predictions left out (%s): the graph has an inference branch"
                            % ", ".join(preds))
        return ev
    keras_outputs = {m.group(1) for y in s.upstream(losses) for m in [_KERAS_LOSS.match(y)] if m}
    for p in preds:
        following = s.heads_after(p, label_mask, loss_scopes)
        named = [h for h in following if h.split("/")[0] in keras_outputs]
        if named:  # Keras computes the loss of output layer NAME in `loss/NAME_loss`, from its logits
            ev.outputs += [(h, "Keras model output: the loss %s is computed for layer %s"
                            % ("loss/%s_loss" % h.split("/")[0], h.split("/")[0])) for h in named
                           if h not in [t for t, _ in ev.outputs]]
            continue
        ev.outputs.append((p, "prediction: the loss %s compares it with %s"
                           % (", ".join(losses[:3]), ", ".join(labels[:3]))))
        for h in following:
            if h not in [t for t, _ in ev.outputs]:
                ev.outputs.append((h, "prediction head (%s) computed from %s"
                                   % (s.by_name[node_of(h)].op if s.by_name[node_of(h)].op in HEAD_OPS
                                      else "reshaped %s" % _head_op(s, node_of(h)), p)))
    return ev


def _head_op(s: Structure, name: str) -> str:
    while s.by_name[name].op in _ALIAS_OPS and s.data_inputs[name]:
        name = node_of(s.data_inputs[name][0])
    return s.by_name[name].op
