"""The facts of a training graph that its rules read: dependencies as bitmasks.

Read as data (nothing runs). The graph is split by what each node depends on:

* **weights**: computed from variables and no placeholder (``w/read``, a resource
  handle, ``w * 0.01``);
* **layer ops**: ops that apply weights to data (MatMul, Conv*, BiasAdd, batch norm,
  gathers, and loops or function calls that take weights in);
* **data inputs**: placeholders some layer op depends on; **labels**: the other
  placeholders (and dataset outputs) that reach a loss — what the model is compared with;
* **losses**: what gradients were taken of (``gradients/Shape`` reads it) and the
  ``losses`` collection.

The facts are read by the rules in ``rules.py`` (where the loss meets the model,
replicas, deep supervision, inference branches, separately trained networks,
inference ends, heads after a prediction), which record typed evidence; the walk up
a loss through loss arithmetic (``Structure.refine``) names the principle that
stopped it on each record (``REFINE_PRINCIPLES``).
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Set, Tuple

from .evidence import WEIGHT_STRUCTURE, Claim, Evidence, Rule
from .graph import node_of, output_shape_proto, reach, tensor_name
from .oproles import (ALIAS_OPS as _ALIAS_OPS, BACK_EDGE_OPS as _BACK_EDGE_OPS, COMPARISON_OPS as _COMPARISON_OPS,
                      DECISION_OPS as _DECISION_OPS,
                      DATA_SOURCE_OPS, ELEMENTWISE_LAYER_OPS as _ELEMENTWISE_LAYER_OPS, HEAD_OPS, LAYER_OPS,
                      LAYER_END_OPS as _UNARY_MODEL_OPS, MOVING_AVERAGE_UPDATE_OPS as _MOVING_UPDATE_OPS,
                      PAIRWISE_OPS as _PAIRWISE_OPS, VARIABLE_OPS, VIEW_OPS as _VIEW_OPS, VARIABLE_READ_OPS as _READ_OPS,
                      CONTROL_FLOW_V1_OPS, LOOP_EXIT_OPS, SWITCH_OPS, TRUE_CLASSES_OPS, is_optimizer_update, is_random, is_summary_op,
                      is_training_op, routing_operands)
# Ops whose outputs hold values of their input (a selection, a reshape): what carries a tensor's values on.
_CARRY_OPS = _VIEW_OPS | frozenset({"Gather", "GatherV2", "GatherNd", "TopKV2", "TopK", "ConcatV2", "Pack",
                                    "BatchGather", "CombinedNonMaxSuppression", "NonMaxSuppressionV5"})
# What a branch of a v2 cond or loop does to a variable it is handed when training updates it in place (no
# saver or initializer runs inside a branch): a tutorial batch norm's `assign(moving_mean, ...)`.
_IN_PLACE_UPDATE_OPS = frozenset({"AssignVariableOp", "AssignSubVariableOp", "AssignAddVariableOp", "Assign",
                                  "AssignSub", "AssignAdd"})
# Elementwise maps that keep every value (log-probabilities to probabilities): the values carried on.
_ONE_TO_ONE_OPS = frozenset({"Exp", "Log", "Neg", "Expm1", "Log1p"})
# A log a loss takes of the model's output, and the constant offsets and clips it puts around it first.
_LOG_OPS = frozenset({"Log", "Log1p"})
_OFFSET_OPS = frozenset({"Add", "AddV2", "Sub", "Maximum", "Minimum", "ClipByValue", "Identity"})
# Ops whose outputs are parts of one tensor (a mixture's weights, means and scales).
_PARTS_OPS = frozenset({"Split", "SplitV", "Unpack"})
# What a loss reads through these is held fixed: a target, not the model's prediction.
_NO_GRADIENT_OPS = frozenset({"StopGradient", "PreventGradient"})
# Ops that read only a tensor's shape.
_SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank"})
_SHAPE_READ_OPS = _SHAPE_OPS | frozenset({"ZerosLike", "OnesLike"})
# Rearrangements that may move a layer's batch axis (a transpose, a reshape).
_LAYER_REARRANGE_OPS = frozenset({"Transpose", "Reshape"})
# Arithmetic on a decision's indices (a flat argmax's row and column).
_INDEX_ARITHMETIC_OPS = frozenset({"FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod"})
# What a cross-entropy on logits computes them with (tf.nn's fused ops; the sigmoid form's softplus / log1p).
_CROSS_ENTROPY_OPS = frozenset({"SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits", "LogSoftmax",
                                "Log1p", "Softplus"})
# Products that compute with both operands (a tensor multiplied in is data, not a target compared).
_MATRIX_PRODUCT_OPS = frozenset({"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "SparseMatMul", "Einsum"})
MATRIX_PRODUCT_OPS = _MATRIX_PRODUCT_OPS
# Reductions: over axis 0 they sum (or average...) over the batch.
_BATCH_REDUCTION_OPS = frozenset({"Sum", "Mean", "Max", "Min", "Prod", "All", "Any"})
# Library losses whose first operand is the logits (the prediction) and whose second is the labels.
_LOGITS_AND_LABELS_OPS = frozenset({"SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits"})
LOGITS_AND_LABELS_OPS = _LOGITS_AND_LABELS_OPS
# tf.gradients seeds each y with `gradients/grad_ys_K = Fill(Shape(y), 1)`.
_GRAD_YS = re.compile(r"(^|/)gradients(_\d+)?/grad_ys_\d+(_\d+)?$")  # (grad_ys_0_1: a second call in one scope)
GRADIENT_SCOPE = re.compile(r"(^|/)gradients(_\d+)?/")  # tf.gradients' scope
METRIC_SCOPE = re.compile(r"(^|/)metrics(_\d+)?/")


# Principles the walk up a loss applies (``Structure.refine``): each names the records it makes.
TRAINED_LAST_LAYER = Rule(
    "trained-last-layer", "walking up a loss, the first layer its optimizer trains ends the model: its tensor is "
    "what the loss reads from the model", None)
FIXED_LAYER_ON_MODEL = Rule(
    "fixed-layer-on-model", "one untrained layer applied right on the trained model (a constant offset or scale) "
    "is the model's own last layer, not a network scoring it", None)
SCORED_BY_FIXED_NETWORK = Rule(
    "scored-by-fixed-network", "a sub-network whose variables no optimizer updates is not the model (a teacher, a "
    "fixed feature network): the trained model's tensor it reads is the output", None)
PAIRWISE_EMBEDDINGS = Rule(
    "pairwise-embeddings", "a loss that compares one batch with itself (a Gram matrix, pairwise differences) scores "
    "the tensor compared: the embeddings are the output, not the distances", None)
SHARED_WEIGHT_COPIES = Rule(
    "shared-weight-copies", "copies of one network (the same variables) on different data that a loss compares are "
    "each an output (a siamese pair's, a triplet's embeddings); the distance between them is loss arithmetic", None)
COMPUTED_ON_BESIDE = Rule(
    "computed-on-beside-the-loss", "walking up a loss that reads no labels, a tensor the graph also computes on "
    "from outside the losses and the training (a per-example score that a threshold decides from) is the model's "
    "output, not loss arithmetic", None)
DISTANCE_TO_REFERENCE = Rule(
    "distance-to-reference", "an unlabelled loss that reduces, per example, the model's output's distance to a "
    "reference the optimizer does not train (a one-class centre) leaves the choice open between that distance (a "
    "score) and the output itself", None)
REFINE_PRINCIPLES = (TRAINED_LAST_LAYER, FIXED_LAYER_ON_MODEL, SCORED_BY_FIXED_NETWORK, PAIRWISE_EMBEDDINGS,
                     SHARED_WEIGHT_COPIES, COMPUTED_ON_BESIDE, DISTANCE_TO_REFERENCE)


# What a library cross-entropy's labels operand is reached through from the target it was given.
_TARGET_FORM_OPS = frozenset({"Cast", "Identity", "Reshape", "OneHot", "ExpandDims", "Squeeze", "StopGradient"})
_TARGET_DTYPE_ATTRS = ("Tidx", "DstT", "T", "dtype")


def computed_targets_apart(graph_def):
    """A target the graph computes from shapes and constants alone (``tf.range`` over the batch:
    the positives of an in-batch contrastive loss; ``tf.eye``), given to a library cross-entropy
    as its labels, is the labels: what the training knows, as a fed label is, not a value the
    model computes. In a copy of the graph it becomes a data source of its own (a placeholder of
    its name), so that the metrics and losses that compare with it are seen as comparing with
    labels (an in-batch accuracy is evaluation, not an output)."""
    by_name = {n.name: n for n in graph_def.node}
    memo: dict = {}

    def value_free(name: str) -> bool:
        if name in memo:
            return memo[name]
        memo[name] = False  # a loop's back edge: not known to be free
        node = by_name.get(name)
        if node is None or node.op in DATA_SOURCE_OPS or node.op in VARIABLE_OPS or is_random(node.op):
            return False
        free = node.op in _SHAPE_OPS or all(
            value_free(node_of(i)) for i in node.input if not i.startswith("^"))
        memo[name] = free
        return free

    targets = []
    for node in graph_def.node:
        if node.op not in _LOGITS_AND_LABELS_OPS or len(node.input) < 2:
            continue
        n = node_of(node.input[1])
        while (n in by_name and by_name[n].op in _TARGET_FORM_OPS and by_name[n].input
               and by_name[node_of(by_name[n].input[0])].op != "Const" and value_free(node_of(by_name[n].input[0]))):
            n = node_of(by_name[n].input[0])
        target = by_name.get(n)
        if (target is not None and target.op not in ("Const", "Placeholder") and target.op not in _SHAPE_OPS
                and value_free(n) and any(k in target.attr for k in _TARGET_DTYPE_ATTRS) and n not in targets):
            targets.append(n)
    if not targets:
        return graph_def
    copy = type(graph_def)()
    copy.CopyFrom(graph_def)
    for node in copy.node:
        if node.name in targets:
            dtype = next(node.attr[k].type for k in _TARGET_DTYPE_ATTRS if k in node.attr)
            node.op = "Placeholder"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = dtype
    return copy


class Structure:
    """Dependency facts about one GraphDef's top-level nodes."""

    def __init__(self, graph_def, excluded: Set[str], loss_names: Iterable[str] = ()):
        self.by_name = {n.name: n for n in graph_def.node}
        self.order = [n.name for n in graph_def.node]
        self.library = graph_def.library
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
        self.bits = self._propagate({s: 1 << k for k, s in enumerate(self.sources)})
        self.variables = [n for n in self.order if self.by_name[n].op in VARIABLE_OPS]
        self.var_bits = self._propagate({v: 1 << k for k, v in enumerate(self.variables)})
        self.layers = {n for n in self.order if self.is_layer(n)}
        self.extra_losses = [n for n in loss_names if n in self.by_name]
        self.seeds: Dict[str, List[str]] = {}  # loss -> its gradient seeds (filled by losses())
        self.uncalibrated: Dict[str, Tuple[List[str], List[str]]] = {}  # prediction -> (heads left out, heads kept)

    # -- basic relations -------------------------------------------------------------
    def _forward(self, roots: Iterable[str], allowed=None) -> Set[str]:
        return reach(roots, lambda name: (u for u in self.users.get(name, ()) if allowed is None or allowed(u)))

    def upstream(self, roots: Iterable[str]) -> Set[str]:
        return reach([r for r in roots if r in self.by_name], lambda name: map(node_of, self.data_inputs[name]))

    def value_upstream(self, roots: Iterable[str]) -> Set[str]:
        """What ``roots`` compute with: ``upstream`` without the tensors only a shape op reads."""
        return reach([r for r in roots if r in self.by_name],
                     lambda name: () if self.by_name[name].op in _SHAPE_OPS else map(node_of, self.data_inputs[name]))

    def _propagate(self, index: Dict[str, int]) -> Dict[str, int]:
        """node -> bitmask of the ``index`` nodes it depends on (topological order, then what
        loops carry around their back edges)."""
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
        # What a loop's body computes flows around its back edges into what the loop hands on (a
        # greedy decoder's tokens, written into a TensorArray whose flow leaves by Exit): carried
        # over the back edges into their Merge and on, until nothing changes (nested loops).
        back = [(node_of(i), name) for name in self.order for i in self.data_inputs[name]
                if self.by_name[node_of(i)].op in _BACK_EDGE_OPS]
        position = {n: k for k, n in enumerate(self.order)}
        for _ in range(4):
            changed = [m for b, m in back if bits[b] & ~bits[m]]
            if not changed:
                break
            for b, m in back:
                bits[m] |= bits[b]
            for name in sorted(self._forward(changed), key=position.get):
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
                if y in self.by_name:
                    self.seeds.setdefault(y, []).append(name)
                    if y not in found:
                        found.append(y)
        for y in self.extra_losses:
            if y not in found:
                found.append(y)
        # A loss whose gradients another loss is computed from (MAML's inner adaptation steps) is part
        # of the model's computation, not what the training minimises.
        self.inner_losses = [y for y in found if self.seeds.get(y) and any(
            o != y and o in reach(self.seeds[y], lambda n: self.users.get(n, ())) for o in found)]
        return [y for y in found if y not in self.inner_losses]

    # -- what the optimizers train ---------------------------------------------------
    def trained_mask(self, loss: str) -> int:
        """Bitmask of the variables the optimizer of ``loss`` updates: the variables of
        the Apply*/Assign* ops its gradients reach (an optimizer's slots too). All variables (-1) when the loss
        has no gradients in the graph or they reach no update."""
        if not hasattr(self, "_trained"):
            self._trained: Dict[str, int] = {}
        if loss not in self._trained:
            mask = 0
            for name in reach(self.seeds.get(loss, ()), lambda n: self.users.get(n, ())):
                node = self.by_name[name]
                # an optimizer's Apply* op, or an assignment computed from the gradients (an optimizer
                # written with assign ops: AdamWarmup's AssignSubVariableOp)
                if (is_optimizer_update(node.op) or is_training_op(node.op)) and self.data_inputs[name]:
                    var = node_of(self.data_inputs[name][0])
                    if self.by_name[var].op in VARIABLE_OPS:
                        mask |= self.var_bits[var]
            if not self.seeds.get(loss):  # a term of a loss (the losses collection): its optimizer's
                self._trained[loss] = 0  # (no recursion through a cycle)
                for y in self.seeds:
                    if loss in self.upstream([y]):
                        mask |= self.trained_mask(y)
            self._trained[loss] = (mask | self._moving_averages()) if mask and mask != -1 else -1
        return self._trained[loss]

    def _moving_averages(self) -> int:
        """Variables training updates in place (batch norm's moving mean and variance):
        part of the trained model, though no optimizer applies a gradient to them."""
        if hasattr(self, "_moving"):
            return self._moving
        mask = 0
        functions = {f.signature.name: f for f in self.library.function}
        for name in self.order:
            node = self.by_name[name]
            if node.op in _MOVING_UPDATE_OPS and self.data_inputs[name]:
                var = node_of(self.data_inputs[name][0])
                if self.by_name[var].op in VARIABLE_OPS:
                    mask |= self.var_bits[var]
            # a v2 cond or loop whose branch assigns a variable it is handed (a batch norm's training
            # branch updating its moving mean) updates that variable in place too
            for key in ("then_branch", "else_branch", "body", "f"):
                func = functions.get(node.attr[key].func.name) if key in node.attr else None
                if func is None:
                    continue
                args = [a.name for a in func.signature.input_arg]
                offset = 1 if node.op in ("If", "StatelessIf") else 0  # (an If's first input is its predicate)
                for body_node in func.node_def:
                    if body_node.op in _IN_PLACE_UPDATE_OPS and body_node.input:
                        arg = body_node.input[0].split(":")[0]
                        if arg in args and args.index(arg) + offset < len(self.data_inputs[name]):
                            var = node_of(self.data_inputs[name][args.index(arg) + offset])
                            if self.by_name[var].op in VARIABLE_OPS:
                                mask |= self.var_bits[var]
        self._moving = mask
        return mask

    def own_vars(self, layer: str) -> int:
        """The variables a layer op applies (its weight inputs), as a bitmask."""
        mask = 0
        for i in self.data_inputs[layer]:
            if self.is_weight(node_of(i)):
                mask |= self.var_bits[node_of(i)]
        return mask

    def layer_end(self, name: str, trained: int, depth: int = 0) -> Optional[bool]:
        """True when ``name`` ends a layer trained by ``trained`` (the layer op, or an
        activation/reshape applied to one), False when it ends an untrained layer,
        None when it is no layer's end."""
        if name in self.layers:
            return bool(self.own_vars(name) & trained)
        node = self.by_name[name]
        if depth < 4 and node.op in _UNARY_MODEL_OPS and self.data_inputs[name]:
            return self.layer_end(node_of(self.data_inputs[name][0]), trained, depth + 1)
        return None

    def _copies(self, tensors: List[str], label_mask: int) -> List[str]:
        """Among ``tensors``, those computed by copies of one network (the same variables)
        from different data (a siamese pair, a triplet's anchor/positive/negative)."""
        out: List[str] = []
        for a in tensors:
            for b in tensors:
                na, nb = node_of(a), node_of(b)
                if a == b or not self.var_bits[na] or self.var_bits[na] != self.var_bits[nb]:
                    continue
                sa, sb = self.bits[na] & ~label_mask, self.bits[nb] & ~label_mask
                if sa and sb and not sa & sb and a not in out:
                    out.append(a)
        return out

    def _pairwise_base(self, name: str, inputs: List[str]) -> Optional[str]:
        """The tensor a node compares with itself across the batch: ``e @ e^T`` or
        ``expand_dims(e, 0) - expand_dims(e, 1)`` (a batch-hard triplet loss), else None."""
        if len(inputs) != 2 or self.by_name[name].op not in _PAIRWISE_OPS:
            return None
        bases = []
        for t in inputs:
            while self.by_name[node_of(t)].op in _ALIAS_OPS | {"Transpose"} and self.data_inputs[node_of(t)]:
                t = tensor_name(self.data_inputs[node_of(t)][0])
            bases.append(t)
        if bases[0] != bases[1] or (self.by_name[name].op in ("Sub", "SquaredDifference") and inputs[0] == inputs[1]):
            return None
        return bases[0]

    def refine(self, start: str, trained: int, label_mask: int, beside=None) -> Tuple[List[Evidence], bool]:
        """Walk up from ``start`` through loss arithmetic to where the trained model's
        tensors enter it. Returns (evidence records: LOSS_INPUT or COPY, each named by
        the principle that stopped the walk; whether loss arithmetic was seen: a
        comparison of copies of one network, or of the model with a network the
        optimizer does not train). Records carry no loss: the caller adds it."""
        stops: List[Evidence] = []
        seen: Set[str] = set()
        loss_term = False
        stack = [start]
        fixed: Set[str] = set()  # reached through a layer the optimizer does not train

        def stop(tensor, why, principle, claim=Claim.LOSS_INPUT, nodes=()):
            if tensor not in [e.tensor for e in stops]:
                stops.append(Evidence(tensor, claim, WEIGHT_STRUCTURE, why, (name,) + tuple(nodes),
                                      rule=principle.name))

        def acts(name):
            return [tensor_name(i) for i in self.data_inputs[name]
                    if self.is_activation(node_of(i)) and node_of(i) not in self.excluded
                    and not self.bits[node_of(i)] & label_mask]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if (beside is not None and name != start and not self.var_bits[name] & ~trained  # (not a scorer's)
                    and beside(name)):
                loss_term = True
                stop(name + ":0", "computed on from outside the loss too: the model's output, which the loss "
                     "reduces", COMPUTED_ON_BESIDE)
                continue
            end = self.layer_end(name, trained)
            if end:
                stop(self._batch_first(name) + ":0", "the trained model's last layer the loss reads", TRAINED_LAST_LAYER)
                continue
            inputs = acts(name)
            if self._pull(name, trained):
                loss_term = True  # neither side is an output
                continue
            if name in self.layers:  # a layer the optimizer does not train
                direct = [t for t in inputs if self.var_bits[node_of(t)] & trained
                          and not self.var_bits[node_of(t)] & ~trained]
                score = self._distance_to_reference(name) if direct and name not in fixed else None
                if score is not None:
                    loss_term = True
                    why = ("the loss reduces, per example, the distance %s of the model's output %s to a reference "
                           "the optimizer does not train: the model may be deployed for that score or for its output, "
                           "and the graph does not say which" % (score, direct[0]))
                    stop(score, why, DISTANCE_TO_REFERENCE, Claim.ONE_COMPUTATION)
                    stop(direct[0], why, DISTANCE_TO_REFERENCE, Claim.ONE_COMPUTATION)
                    continue
                if direct and name not in fixed:
                    # one fixed layer right on the trained model (a constant offset or scale):
                    # the model's own last layer, not a network scoring it
                    stop(name + ":0", "the model's last layer the loss reads (its variables are not trained)",
                         FIXED_LAYER_ON_MODEL)
                    continue
                loss_term = True
                for t in inputs:
                    if t in direct:
                        for part in self._joined_with_data(t, trained):
                            stop(part, "the trained model's output, scored by a network the optimizer does not train",
                                 SCORED_BY_FIXED_NETWORK)
                    else:
                        fixed.add(node_of(t))
                        stack.append(node_of(t))
                continue
            base = self._pairwise_base(name, inputs) if not self.batch_contracted(name) else None
            if base is not None:  # a pairwise distance / Gram matrix of one batch of embeddings
                loss_term = True
                stop(base, "the embeddings the loss compares pairwise", PAIRWISE_EMBEDDINGS)
                continue
            copies = self._copies(inputs, label_mask) if len(inputs) > 1 else []
            if copies:
                loss_term = True
                for t in copies:
                    stop(t, "one of the copies of a network (shared variables) the loss compares", SHARED_WEIGHT_COPIES,
                         Claim.COPY, [node_of(c) for c in copies if c != t])
                stack.extend(node_of(t) for t in inputs if t not in copies)
                continue
            if len(inputs) > 1 and any(not self.var_bits[node_of(t)] & trained for t in inputs):
                loss_term = True  # compared with a fixed network's output (a teacher)
            if name in fixed or self.layer_end(name, trained) is False:
                fixed.update(node_of(t) for t in inputs)
            stack.extend(node_of(t) for t in reversed(inputs))
        return stops, loss_term

    def _batch_first(self, name: str) -> str:
        """Back through rearrangements that move the batch axis from the front (a transpose that
        makes the examples columns, as a covariance takes them): what the model computed, with
        its examples first."""
        while self.by_name[name].op in _LAYER_REARRANGE_OPS and self.data_inputs[name]:
            given = node_of(self.data_inputs[name][0])
            out, src = output_shape_proto(self.by_name[name], 0), output_shape_proto(self.by_name[given], 0)
            if not (out is not None and src is not None and not out.unknown_rank and not src.unknown_rank
                    and out.dim and src.dim and src.dim[0].size == -1 and out.dim[0].size != -1):
                break
            name = given
        return name

    def batch_contracted(self, name: str) -> bool:
        """``name`` is a statistic of the batch with axes (a covariance ``H^T H``): the data it
        is computed from has the batch's unknown size, and the graph recorded its own shape as
        fully known; the batch was summed away."""
        out = output_shape_proto(self.by_name[name], 0)
        if out is None or out.unknown_rank or not out.dim or any(d.size < 0 for d in out.dim):
            return False
        for k, source in enumerate(self.sources):
            if self.bits[name] >> k & 1:
                shape = output_shape_proto(self.by_name[source], 0)
                if shape is not None and not shape.unknown_rank and shape.dim and shape.dim[0].size == -1:
                    return True
        return False

    def _distance_to_reference(self, name: str) -> Optional[str]:
        """For a difference of the model's output and a stored reference (``name``: a Sub or
        SquaredDifference), the per-example distance computed from it: squared or absolute,
        then reduced over every axis but the first (the batch). None when there is none."""
        if self.by_name[name].op not in ("Sub", "SquaredDifference"):
            return None
        n = name
        for _ in range(4):
            users = [u for u in self.users.get(n, ()) if u not in self.excluded]
            if len(users) != 1:
                return None
            n = users[0]
            op = self.by_name[n].op
            if op in ("Square", "Abs", "Identity"):
                continue
            if op in ("Sum", "Mean", "EuclideanNorm") and len(self.data_inputs[n]) == 2:
                axes = self.by_name.get(node_of(self.data_inputs[n][1]))
                if axes is None or axes.op != "Const":
                    return None
                from tensorflow.python.framework import tensor_util

                values = tensor_util.MakeNdarray(axes.attr["value"].tensor).ravel().tolist()
                return n + ":0" if values and 0 not in values else None
            return None
        return None

    def _joined_with_data(self, tensor: str, trained: int) -> List[str]:
        """What a scoring network reads: the model's output, or (a concatenation of it with data as
        given, a conditional GAN's class) the model's part of it; the join is the scorer's own."""
        name = node_of(tensor)
        if self.by_name[name].op not in ("ConcatV2", "Concat", "Pack"):
            return [tensor]
        ins = [i for i in self.data_inputs[name] if self.bits[node_of(i)]]
        model = [tensor_name(i) for i in ins if self.is_activation(node_of(i)) and self.var_bits[node_of(i)] & trained]
        data = [i for i in ins if node_of(i) not in self.from_vars]
        return model if model and data and len(model) + len(data) == len(ins) else [tensor]

    def _pull(self, name: str, trained: int) -> bool:
        """A loss term that draws one of the model's own tensors towards another held fixed by a
        stop_gradient (a vector quantiser's codebook and commitment terms), both computed with
        the weights this loss trains: it shapes the model's internals, and neither is an output."""
        if self.by_name[name].op not in ("Sub", "SquaredDifference") or len(self.data_inputs[name]) != 2:
            return False
        sides = [node_of(i) for i in self.data_inputs[name]]
        held = [n for n in sides if self.by_name[n].op in _NO_GRADIENT_OPS]
        if len(held) != 1 or not self.data_inputs[held[0]]:
            return False
        fixed, free = node_of(self.data_inputs[held[0]][0]), next(n for n in sides if n != held[0])
        return all(self.is_activation(n) and self.var_bits[n] & trained for n in (fixed, free))

    def labels(self, losses: List[str], switches: Set[str]) -> Tuple[List[str], int]:
        """Data sources that reach a loss but no trained layer: what the model is compared
        with (a fixed network may read them: a perceptual loss's target)."""
        trained = 0
        for y in losses:
            trained |= self.trained_mask(y)
        # (what reaches a layer only through gradients, an adversarial example's or an adaptation's, is not fed to it)
        feeds_layers = reach([n for n in self.layers - self.excluded if self.own_vars(n) & trained],
                             lambda name: (node_of(i) for i in self.data_inputs[name]
                                           if not GRADIENT_SCOPE.search(node_of(i))))
        in_loss = self.upstream(losses)
        coefficients = self._coefficients()
        labels = [s for s in self.sources if s in in_loss and s not in feeds_layers and s not in switches
                  and s not in coefficients
                  and not self._read_at_inference(s, in_loss) and not self._in_the_logits(s, in_loss)
                  and not self._multiplied_with_the_model(s, in_loss)]
        labels += [s for s in self.sources if s in in_loss and s in feeds_layers and s not in switches
                   and self._compared_with_the_model(s, in_loss - feeds_layers)]
        labels += [s for s in self.sources if s in in_loss and s not in labels and s not in switches
                   and self._true_classes(s, in_loss)]
        labels = [s for s in labels if not self._adapted_on(s, losses)]
        mask = 0
        for s in labels:
            mask |= 1 << self.sources.index(s)
        return labels, mask

    def _coefficients(self) -> Set[str]:
        """Placeholders declared with no batch axis (no shape, or a scalar) where the author
        declares one (``[None, ...]``) on the data placeholders: one value per run, a loss's
        coefficient or a prior (``r_alpha``, ``p_treated``), never the labels, which give each
        example its own target. (Where no placeholder declares a shape, nothing is told apart.)"""
        shapes = {s: output_shape_proto(self.by_name[s], 0) for s in self.sources
                  if self.by_name[s].op == "Placeholder"}
        batched = [s for s, shape in shapes.items() if shape is not None and not shape.unknown_rank
                   and shape.dim and shape.dim[0].size == -1]
        if not batched:
            return set()
        return {s for s, shape in shapes.items() if "shape" in self.by_name[s].attr  # (declared by the author:
                and (shape.unknown_rank or not shape.dim)}  # not a target the graph computes, put apart)

    def _true_classes(self, source: str, in_loss: Set[str]) -> bool:
        """A source a loss's candidate sampler takes as the true classes (a sampled softmax's
        labels, which it looks up rows of the output layer by, never comparing them with a
        prediction) is the labels: the op itself says which operand is which."""
        for name in in_loss:
            if self.by_name[name].op in TRUE_CLASSES_OPS and self.data_inputs[name]:
                first = node_of(self.data_inputs[name][0])
                if first == source or (source in self.value_upstream([first]) and first not in self.from_vars):
                    return True
        return False

    def _as_given(self, name: str, mask: int) -> bool:
        """``name`` holds values of the sources in ``mask`` as given: derived from them (a one-hot,
        a slice), computed by no weight of the model (a one-hot as deep as the logits are wide
        reads only their shape)."""
        return (bool(self.bits[name] & mask) and name not in self.values_from_vars
                and name in self._values_of(mask))  # (a batch size read from a shape is no source's values)

    def _values_of(self, mask: int) -> Set[str]:
        """What computes with the values (not only the shape) of the sources in ``mask``."""
        cache = self.__dict__.setdefault("_values_of_cache", {})
        if mask not in cache:
            roots = [s for k, s in enumerate(self.sources) if mask >> k & 1]
            cache[mask] = set(roots) | self._forward(roots, lambda n: self.by_name[n].op not in _SHAPE_OPS)
        return cache[mask]

    @property
    def values_from_vars(self) -> Set[str]:
        """What computes with a variable's values (``from_vars`` without what reads only a shape)."""
        if getattr(self, "_values_from_vars", None) is None:
            self._values_from_vars = self._forward(
                [n for n, node in self.by_name.items() if node.op in VARIABLE_OPS],
                lambda n: self.by_name[n].op not in _SHAPE_OPS)
        return self._values_from_vars

    def _compared_with_the_model(self, source: str, loss_only: Set[str]) -> bool:
        """A source the training also feeds into the model (a reconstruction mask chosen by the
        true class, a gold path scored through a layer) is still the labels when the loss compares
        it, as it is (no weight computes with it), with a model tensor computed without it: a
        prediction the model makes from the other data alone (``loss_only``: the loss's nodes
        no trained layer computes from)."""
        bit = self.bits[source]
        for name in loss_only:
            if self.by_name[name].op in _MATRIX_PRODUCT_OPS:
                continue  # (a product computes with both operands: it compares nothing)
            ins = [node_of(i) for i in self.data_inputs.get(name, ())]
            routing = routing_operands(self.by_name[name].op, len(ins))
            # (a source that only says which examples go where, a treatment routing examples through
            # one of two heads, decides the model's computation: it is compared with nothing)
            if (any(self._as_given(i, bit) for k, i in enumerate(ins) if k not in routing)
                    and any(self.is_activation(i) and not self.bits[i] & bit and i not in self.excluded
                            for i in ins)):
                return True
        return False

    def _adapted_on(self, source: str, losses: List[str]) -> bool:
        """A source an inner loss compares (the support set's targets MAML adapts its weights to)
        and the training loss itself never reads as it is: data the model adapts on, an input."""
        inner = getattr(self, "inner_losses", [])
        if not inner:
            return False
        up_inner = self.upstream(inner)
        if source not in up_inner:
            return False
        bit = self.bits[source]
        # what the training loss computes itself, not through gradients (an adversarial example's
        # loss is a term of the total too: what it compares are the labels)
        rest = reach([y for y in losses if y in self.by_name],
                     lambda name: (node_of(i) for i in self.data_inputs[name] if not GRADIENT_SCOPE.search(node_of(i))))
        return not any(self._as_given(node_of(i), bit) for n in rest for i in self.data_inputs.get(n, ()))

    def _in_the_logits(self, source: str, in_loss: Set[str]) -> bool:
        """A source that a library cross-entropy's logits are computed from, and its labels are
        not, is an input of the prediction that loss compares (a few-shot model's labelled support
        set, the number of classes), not a label: the op itself says which operand is which."""
        bit = self.bits[source]
        for name in in_loss:
            if self.by_name[name].op in _LOGITS_AND_LABELS_OPS and len(self.data_inputs[name]) >= 2:
                logits, labels = (node_of(i) for i in self.data_inputs[name][:2])
                if self.bits[logits] & bit and not self.bits[labels] & bit and logits in self.from_vars:
                    return True
        return False

    def read_beside_the_loss(self, name: str, in_loss: Set[str], training: Set[str], label_mask: int = -1) -> bool:
        """The graph computes on from ``name`` outside the losses and the training (a softmax or an
        argmax of the logits a loss compares, not a metric): the model made it to be used, so it is
        the prediction even when loss arithmetic computed it (a few-shot model's negative distances
        to its prototypes)."""
        return any(u not in in_loss and u not in self.excluded and u not in training
                   and (self.by_name[u].op not in _COMPARISON_OPS or not label_mask)
                   and self.by_name[u].op not in _SHAPE_READ_OPS
                   for u in self.users.get(name, ()))

    def _multiplied_with_the_model(self, source: str, in_loss: Set[str]) -> bool:
        """A source that enters a matrix product, as it is, with a tensor the model computed from its
        weights and other data (a hypernetwork's generated weights, a few-shot model's support
        embeddings), and that no other op compares so with the model, is data the model computes
        with: an input, not a label."""
        bit = self.bits[source]
        multiplied = False
        for name in in_loss:
            ins = [node_of(i) for i in self.data_inputs.get(name, ())]
            if not (any(self._as_given(i, bit) for i in ins)
                    and any(self.is_activation(i) and not self.bits[i] & bit and i not in self.excluded for i in ins)):
                continue
            if self.by_name[name].op not in _MATRIX_PRODUCT_OPS:
                return False  # compared with the model somewhere: a label
            multiplied = True
        return multiplied

    def _read_at_inference(self, source: str, in_loss: Set[str]) -> bool:
        """A source the inference computation reads beside the model's output outside
        the loss (a CTC decoder's sequence lengths) is an input, not a label; one only
        compared with a prediction (an accuracy) stays a label."""
        bit = self.bits[source]
        for name in self._forward([source], lambda n: n not in in_loss and n not in self.excluded):
            ins = [node_of(i) for i in self.data_inputs[name]]
            if any(self.bits[i] & bit for i in ins) and any(self.is_activation(i) and not self.bits[i] & bit
                                                             for i in ins):
                if self.by_name[name].op not in _COMPARISON_OPS and not self._summed_over_the_batch(name):
                    return True
        return False

    def _summed_over_the_batch(self, name: str) -> bool:
        """Every end computed from ``name`` is summed over the batch first (a concordance index, an
        accuracy written with a product), or is one number (an accuracy that takes the examples
        one at a time, ``pred[i]``, and adds their errors up): a metric of the batch, not a value
        per example."""
        seen: Set[str] = set()
        stack = [name]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n != name and self._over_the_batch(n):
                continue
            readers = [u for u in self.users.get(n, ()) if u not in self.excluded]
            if not readers:
                if self._one_number(n):
                    continue
                return False  # an end reached per example
            stack.extend(readers)
        return True

    def _one_number(self, name: str) -> bool:
        """The graph recorded ``name``'s value as a scalar: no axis, no example's own value."""
        out = output_shape_proto(self.by_name[name], 0)
        return out is not None and not out.unknown_rank and not out.dim

    def _over_the_batch(self, name: str) -> bool:
        node = self.by_name[name]
        if node.op not in _BATCH_REDUCTION_OPS or len(node.input) < 2:
            return False
        axes = self.by_name.get(node_of(node.input[1]))
        if axes is None or axes.op != "Const":
            return True  # (reduce_* without an axis on a tensor of unknown rank: a range of every axis)
        from tensorflow.python.framework import tensor_util
        values = tensor_util.MakeNdarray(axes.attr["value"].tensor).ravel().tolist()
        return 0 in values

    def predictions(self, losses: List[str], label_mask: int) -> List[str]:
        """Walking up from each loss through label-dependent nodes: the first inputs
        computed from data and weights without labels (tensor names); never behind a
        stop_gradient (a fixed target)."""
        found: List[str] = []

        def step(name):
            if self.by_name[name].op in _NO_GRADIENT_OPS:
                return  # what a loss takes through stop_gradient is a fixed target (an advantage's baseline)
            if name in self.layers and name not in losses:
                return  # a layer fed with labels (a decoder given the true class): its inputs are not compared
            for i in self.data_inputs[name]:
                src = node_of(i)
                if self.bits[src] & label_mask:
                    yield src
                elif (self.is_activation(src) and src not in self.excluded and tensor_name(i) not in found
                      and self.by_name[src].op not in _NO_GRADIENT_OPS
                      and self.by_name[name].op not in _MATRIX_PRODUCT_OPS  # (it computes with both: compares
                      and not self._met_through_itself(src, name, label_mask)  # nothing, as in labels())
                      and not self._terms_summed(name, label_mask)):
                    found.append(tensor_name(i))
        reach([y for y in losses if self.bits[y] & label_mask], step)
        return found

    def _terms_summed(self, name: str, label_mask: int) -> bool:
        """``name`` adds to a labelled term that is one number (a total loss: the labelled risk plus
        a penalty computed from the data): what it adds is another term, not a prediction the
        labels meet."""
        if self.by_name[name].op not in ("Add", "AddV2", "AddN"):
            return False
        labelled = [node_of(i) for i in self.data_inputs[name] if self.bits[node_of(i)] & label_mask]
        # (a term is one number, or a sum of terms whose shape the graph left unknown)
        return bool(labelled) and all(self._one_number(n) or self._terms_summed(n, label_mask) for n in labelled)

    def _met_through_itself(self, tensor: str, name: str, label_mask: int) -> bool:
        """At ``name``, the labels' side reaches ``tensor`` only after being computed from ``tensor``
        itself (a transport plan made from the costs it weighs, with a class prior): the loss's own
        arithmetic on the tensor, where no label meets it as given."""
        sides = [node_of(i) for i in self.data_inputs[name] if self.bits[node_of(i)] & label_mask]
        return bool(sides) and all(tensor in self.value_upstream([side]) for side in sides)

    def through_loss_view(self, tensor: str, in_loss: Set[str]) -> str:
        """A prediction that is a loss's own view of a model tensor (``logits[:, 0]``
        taken for the loss while inference reads ``logits``) is that tensor."""
        name = node_of(tensor)
        if self.by_name[name].op not in _VIEW_OPS:
            return tensor
        source = name
        while self.by_name[source].op in _VIEW_OPS and self.data_inputs[source]:
            if any(u not in in_loss and u not in self.excluded for u in self.users.get(source, ())):
                break
            source = node_of(self.data_inputs[source][0])
        if source == name or not self.is_activation(source):
            return tensor
        read_outside = any(u not in in_loss and u not in self.excluded for u in self.users.get(source, ()))
        return tensor_name(source) if read_outside else tensor

    def classifier_logits(self, tensor: str, in_loss: Set[str], label_mask: int = -1, depth: int = 6) -> bool:
        """A loss reads ``tensor`` through a cross-entropy on logits (softmax, log-softmax or
        the sigmoid form's softplus / log1p) with the labels within a few steps: a classifier's
        logits (a cross-entropy with a teacher's soft targets does not make them one)."""
        frontier, seen = [node_of(tensor)], set()
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for u in self.users.get(n, ()):
                    if u in seen or u not in in_loss:
                        continue
                    seen.add(u)
                    if self.by_name[u].op in _CROSS_ENTROPY_OPS and self._with_labels(u, label_mask):
                        return True
                    nxt.append(u)
            frontier = nxt
        return False

    def _with_labels(self, name: str, label_mask: int) -> bool:
        """``name`` (a cross-entropy) reads the labels, or a node after it in the loss does
        with no other model computation between (the sigmoid form's ``softplus(x) - x * y``)."""
        if self.bits[name] & label_mask:
            return True
        return any(self.bits[u] & label_mask and any(not self.bits[node_of(i)] & label_mask or node_of(i) == name
                                                      for i in self.data_inputs[u])
                   and all(node_of(i) == name or node_of(i) not in self.from_vars or self.bits[node_of(i)] & label_mask
                           for i in self.data_inputs[u])
                   for u in self.users.get(name, ()))

    def _down_the_loss(self, tensor: str, in_loss: Set[str], label_mask: int):
        """The loss's nodes below ``tensor``, each once: down through label-free nodes, up to and
        including the first node on each path that depends on labels."""
        seen: Set[str] = set()
        stack = [node_of(tensor)]
        while stack:
            for u in self.users.get(stack.pop(), ()):
                if u in seen or u not in in_loss:
                    continue
                seen.add(u)
                yield u
                if not self.bits[u] & label_mask:
                    stack.append(u)

    def meets_labels(self, tensor: str, in_loss: Set[str], label_mask: int) -> bool:
        """The loss compares ``tensor`` with the labels themselves: walking down the loss
        through label-free nodes, a node takes a label-derived input that no model
        computation produced (a dice term's ``probabilities * target``), not a sum with
        other loss terms that read labels elsewhere."""
        return any(any(self._as_given(node_of(i), label_mask) for i in self.data_inputs[u])
                   for u in self._down_the_loss(tensor, in_loss, label_mask))

    def from_features(self, tensor: str) -> bool:
        """``tensor`` is computed from features the model goes on computing layers from: walking
        up from it to the nearest layers, one of them feeds a further layer (through non-layer ops)."""
        nearest: Set[str] = set()
        stack, seen = [node_of(tensor)], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in self.layers and n != node_of(tensor):
                nearest.add(n)
                continue
            stack.extend(node_of(i) for i in self.data_inputs[n] if self.is_activation(node_of(i)))
        for layer in nearest:
            down, todo = set(), [layer]
            while todo:
                n = todo.pop()
                for u in self.users.get(n, ()):
                    if u in down or u in self.excluded:
                        continue
                    down.add(u)
                    if u in self.layers:
                        return True
                    todo.append(u)
        return False

    def through_loss_log(self, tensor: str, in_loss: Set[str]) -> str:
        """A prediction that is the log of the model's output taken by the loss (a cross-entropy
        written by hand: ``-sum(y * log(probs + 1e-10))``, ``log(1 - p)``) is that output: up
        through the log and the constant offsets and clips around it, read only by the loss."""
        name = node_of(tensor)
        if self.by_name[name].op not in _LOG_OPS:
            return tensor
        n = name
        while True:
            node = self.by_name[n]
            acts = [node_of(i) for i in self.data_inputs[n] if self.is_activation(node_of(i))]
            if len(acts) != 1 or any(u not in in_loss and u not in self.excluded for u in self.users.get(n, ())):
                return tensor
            if n != name and node.op not in _OFFSET_OPS:
                return tensor_name(n)
            n = acts[0]
            if self.by_name[n].op not in _OFFSET_OPS:
                return tensor_name(n) if self.is_activation(n) else tensor

    def through_loss_arithmetic(self, tensor: str, in_loss: Set[str]) -> str:
        """A prediction that is arithmetic only the loss reads on a tensor inference reads too (a
        margin loss's ``max(0, 0.9 - lengths) ** 2`` on the lengths an argmax decides from, a
        probability clipped for the loss's logs) is that tensor: up through single-input
        arithmetic only the loss reads, not through a layer, to the first tensor read outside the
        loss, or a head or layer several of its computations read. Where none is reached: the
        first tensor several of the loss's computations read, or the prediction itself."""
        n = node_of(tensor)
        seen = set()
        shared = None  # the first tensor several of the loss's computations read (log(p), log(1 - p))
        while n not in seen:
            seen.add(n)
            readers = [u for u in self.users.get(n, ()) if u not in self.excluded]
            here = tensor if n == node_of(tensor) else tensor_name(n)
            if any(u not in in_loss for u in readers):
                return here
            if len(readers) > 1:
                if n in self.layers or self.by_name[n].op in HEAD_OPS:
                    return here  # (a head several terms compare, a dice's probabilities: the model's)
                shared = shared or here
            if n in self.layers:
                break
            acts = [i for i in self.data_inputs[n] if self.is_activation(node_of(i))]
            if len(acts) != 1:
                break
            if tensor_name(acts[0]) != node_of(acts[0]) + ":0" or self.by_name[node_of(acts[0])].op in _PARTS_OPS:
                break  # (one part of a split is read on its own)
            n = node_of(acts[0])
        return shared or tensor

    def compared_labels(self, tensor: str, in_loss: Set[str], label_mask: int) -> int:
        """The labels a prediction is compared with: on every path down the loss, the
        first node that depends on labels; the labels all of them read (a sum of loss
        terms reads every term's labels, so the intersection keeps the comparison's). A node
        whose labels all come from what the model computes (a sum with another loss term) is
        no comparison: a score only an unlabelled loss compares is added to a labelled total."""
        common = -1
        for u in self._down_the_loss(tensor, in_loss, label_mask):
            if any(self._as_given(node_of(i), label_mask) for i in self.data_inputs[u]):
                common &= self.bits[u] & label_mask
        return 0 if common == -1 else common

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
                if not self.is_activation(src) or self.by_name[src].op in _NO_GRADIENT_OPS:
                    continue  # (what the loss reads through stop_gradient is a fixed target)
                if src.split("/")[0] == scope:
                    yield src
                elif tensor_name(i) not in frontier:
                    frontier.append(tensor_name(i))
        reach([name], step)
        return frontier or [tensor]

    def out_of_op_wrapper(self, tensor: str) -> str:
        """A view (a reshape) inside the name scope TensorFlow's Python wrapper opens for one op
        (``.../SparseSoftmaxCrossEntropyWithLogits/Reshape`` beside the op
        ``.../SparseSoftmaxCrossEntropyWithLogits/SparseSoftmaxCrossEntropyWithLogits``) is the
        wrapper's handling of that op's input: the tensor it views from outside the scope is."""
        name = node_of(tensor)
        while "/" in name and self.by_name[name].op in _VIEW_OPS:
            scope = name.rsplit("/", 1)[0]
            wrapped = self.by_name.get(scope + "/" + scope.rsplit("/", 1)[-1])
            if wrapped is None or wrapped.op != scope.rsplit("/", 1)[-1] or not self.data_inputs[name]:
                break
            source = self.data_inputs[name][0]
            if not node_of(source).startswith(scope + "/"):
                return tensor_name(source)
            name = node_of(source)
        return tensor

    def evaluated_by(self, tensor: str, label_mask: int, in_loss: Set[str], training: Set[str]) -> Optional[str]:
        """The metric (a comparison outside the model, the losses and training: an accuracy) that
        checks ``tensor`` against the labels, reading it through nothing but reshapes,
        casts and an argmax: the tensor the training evaluates, else None."""
        if not label_mask:
            return None
        start = node_of(tensor)
        path = reach([start], lambda n: (u for u in self.users.get(n, ())
                                          if u not in in_loss and self.by_name[u].op in _DECISION_OPS))
        for n in self.order:
            node = self.by_name[n]
            if node.op not in _COMPARISON_OPS or n in in_loss or n not in self.excluded or n in training:
                continue
            ins = [node_of(i) for i in self.data_inputs[n]]
            if any(i in path for i in ins) and any(self.bits[i] & label_mask and i not in path for i in ins):
                return n
        return None

    def layer_count(self, nodes: Set[str]) -> int:
        return len(nodes & self.layers)

    def heads_after(self, tensor: str, label_mask: int, loss_scopes: Set[str], in_loss: Set[str] = frozenset()
                    ) -> List[str]:
        """Prediction heads computed from ``tensor`` (or from what it reshapes) for inference:
        not what the loss computes (an entropy term's softmax)."""
        base = node_of(tensor)
        chain = {base}  # the prediction and what it reshapes: the loss reads them, heads are computed from them
        while self.by_name[base].op in _ALIAS_OPS and self.data_inputs[base]:
            base = node_of(self.data_inputs[base][0])
            chain.add(base)

        def allowed(n):
            return (not self.bits[n] & label_mask and n not in self.excluded
                    and n.split("/")[0] not in loss_scopes - {base.split("/")[0]})
        reach = self._forward([base], lambda n: allowed(n) and (n not in in_loss or n in chain))
        heads: List[str] = []
        for n in self.order:
            if n not in reach or n == base or self.by_name[n].op not in HEAD_OPS:
                continue
            end = n
            while True:  # through the reshapes that finish it (tf-slim's Predictions/Reshape_1)
                nxt = [u for u in self.users.get(end, ()) if allowed(u)]
                if len(nxt) == 1 and self.by_name[nxt[0]].op in _ALIAS_OPS:
                    end = nxt[0]
                elif (len(nxt) == 1 and self.by_name[nxt[0]].op == "Cast"
                      and all(u in self.excluded for u in self.users.get(nxt[0], ()))):
                    end = nxt[0]  # a final cast nothing else reads (argmax as int32 for the caller)
                else:
                    break
            if label_mask and self._only_compared_with_labels(end, label_mask):
                continue  # a decision made only to be compared with the labels (an accuracy's argmax): evaluation
            t = end + ":0"
            if t not in heads and t != tensor:
                heads.append(t)
        # a head whose values another head carries on (the softmax a top-k selects its values from) is a
        # step, not an end; one another head only decides from (an argmax of the probabilities) stays
        heads = [h for h in heads if not any(o != h and self.carries(node_of(h), node_of(o)) for o in heads)]
        before = self.before_calibration(heads)
        if before:
            self.uncalibrated[tensor] = (before, [h for h in heads if h not in before])
        return [h for h in heads if h not in before]

    def before_calibration(self, heads: List[str]) -> List[str]:
        """Of the heads of one prediction, those computed without variables another head computes
        with (a softmax of the logits beside the softmax of the logits over a learned temperature):
        the model before the step those variables add; the heads with every variable are the model."""
        bits = {h: self.var_bits[node_of(h)] for h in heads}
        full = 0
        for b in bits.values():
            full |= b
        if not any(b == full for b in bits.values()):
            return []  # (heads with variables of their own each: none is the others' calibration)
        return [h for h in heads if bits[h] != full]

    def carries(self, source: str, end: str) -> bool:
        """``end`` holds values of ``source``: reached from it only through selections and
        reshapes (gather, slice, top-k's values), not through a decision (argmax, a threshold)."""
        stack, seen = [source], set()
        while stack:
            n = stack.pop()
            for u in self.users.get(n, ()):
                if u in seen or self.by_name[u].op not in _CARRY_OPS:
                    continue
                if u == end:
                    return True
                seen.add(u)
                stack.append(u)
        return False

    def computes_on(self, source: str, end: str, allowed) -> bool:
        """``end`` is computed on from ``source``'s values (through ``allowed`` nodes), not from a
        decision about them (an argmax, a comparison): a head an end adds to, multiplies or
        exponentiates (a factor of a joint log-probability) is a step of the computation."""
        stop = _COMPARISON_OPS | {"ArgMax", "ArgMin"}
        return end in self._forward([source], lambda u: allowed(u) and self.by_name[u].op not in stop)

    def evaluated_ends(self, label_mask: int, in_loss: Set[str], training: Set[str]) -> List[str]:
        """Tensors of the model that metrics compare with the labels outside the losses and
        training (an accuracy, an ensemble's RMSE), through the decisions it makes of them (an
        argmax): the model's ends the evaluation reads. What the metric computes from such
        tensors alone (the log of a variance inside a likelihood) is the metric's arithmetic."""
        if not label_mask:
            return []
        metric = {n for n in self.order if self.bits[n] & label_mask and n not in in_loss and n not in training}
        found: List[str] = []
        for n in self.order:
            if n not in metric:
                continue
            for i in self.data_inputs[n]:
                m = node_of(i)
                if self.bits[m] & label_mask or m in in_loss or m in self.excluded or m not in self.from_vars:
                    continue
                m = self._evaluated_source(m)  # (the argmax an accuracy compares: what it decides from)
                decided = self._decided_from(m)
                for d in ([m] if decided is None else decided):  # (a threshold's or a pairwise ordering's operand)
                    if d not in found and d not in in_loss:
                        found.append(d)
        out = []
        for c in found:
            others = set(found) - {c}
            up = reach([c], lambda name: () if name in others else map(node_of, self.data_inputs[name]))
            if any(u != c and (u in self.layers or self.by_name[u].op in VARIABLE_OPS) for u in up):
                out.append(c)  # computed from the model itself, not only from other evaluated tensors
        return out

    def _evaluated_source(self, name: str) -> str:
        """The model tensor a metric's operand is made from: back through decisions (an argmax, a
        cast), arithmetic on a decision's indices (a flat argmax's row and column, ``// w``, ``% w``)
        and one example picked out of the batch by a constant index (``pred[i]``, as an accuracy
        that takes the examples one at a time does), with every view it was picked through: a
        metric of one example at a time evaluates the tensor of the whole batch."""
        m, picked = name, False
        while self.data_inputs[m]:
            op = self.by_name[m].op
            if op in _DECISION_OPS or (op in _INDEX_ARITHMETIC_OPS and self._indices_of_a_decision(m)):
                pass
            elif self._one_example(m):
                picked = True
            elif not (picked and op in _VIEW_OPS):
                break
            m = node_of(self.data_inputs[m][0])
        return m

    def _only_compared_with_labels(self, name: str, label_mask: int) -> bool:
        """Everything that reads ``name``, directly or through arithmetic on its indices (an argmax's
        row and column, ``// w`` and ``% w``), computes with the labels: it is made to be compared
        with them."""
        readers = [u for u in self.users.get(name, ()) if u not in self.excluded]
        if not readers:
            return False
        for u in readers:
            if self.bits[u] & label_mask:
                continue
            if self.by_name[u].op not in _INDEX_ARITHMETIC_OPS or not self._only_compared_with_labels(u, label_mask):
                return False  # (a cast of a decision is the decision: an argmax a caller fetches may be cast to compare)
        return True

    def _indices_of_a_decision(self, name: str) -> bool:
        n = name
        for _ in range(8):
            op = self.by_name[n].op
            if op in ("ArgMax", "ArgMin"):
                return True
            if not (op in _INDEX_ARITHMETIC_OPS or op in _ALIAS_OPS or op == "Cast") or not self.data_inputs[n]:
                return False
            n = node_of(self.data_inputs[n][0])
        return False

    def _one_example(self, name: str) -> bool:
        """``name`` takes one example out of the batch by a constant index (``x[i]``: a strided
        slice that drops the first axis, its start a constant)."""
        node = self.by_name[name]
        if node.op != "StridedSlice" or not node.attr["shrink_axis_mask"].i & 1 or node.attr["begin_mask"].i & 1:
            return False
        if node.attr["ellipsis_mask"].i & 1 or node.attr["new_axis_mask"].i & 1 or len(self.data_inputs[name]) < 2:
            return False
        begin = self.by_name.get(node_of(self.data_inputs[name][1]))
        return begin is not None and begin.op == "Const"

    def _decided_from(self, name: str) -> Optional[List[str]]:
        """When ``name`` holds only decisions about the model's values (comparisons: a threshold, a
        pairwise ordering, and their casts and sums), the model tensors compared; else None."""
        stack, seen, compared = [name], set(), []
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if self.by_name[n].op in _COMPARISON_OPS:
                for i in self.data_inputs[n]:
                    x = node_of(i)
                    while self.by_name[x].op in _VIEW_OPS and self.data_inputs[x]:
                        x = node_of(self.data_inputs[x][0])
                    if x in self.from_vars and x not in compared:
                        compared.append(x)
                continue
            if n in self.layers or self.by_name[n].op in VARIABLE_OPS or self.by_name[n].op in DATA_SOURCE_OPS:
                return None  # it computes with the model's (or the data's) values themselves
            stack.extend(node_of(i) for i in self.data_inputs[n])
        return compared

    def effective_sinks(self, training: Set[str]) -> List[str]:
        """Nodes read by nothing but summaries, metrics or bookkeeping (what feeds an
        assignment or an optimizer is an update, not a sink; what a summary shows is)."""
        return [n for n in self.order if n not in self.excluded
                and all(u in self.excluded and (u not in training or is_summary_op(self.by_name[u].op))
                        for u in self.users.get(n, ()))
                and not any(self.by_name[u].op in _BACK_EDGE_OPS or self.by_name[u].op == "LoopCond"
                            for u in self.users.get(n, ()))]
        # (what a v1 loop body hands its next iteration flows on, and what its condition reads steers it: not sinks)


def post_processing(s: Structure, preds: List[str], allowed, training: Set[str],
                    unused_control_flow=lambda node: False, evaluated: Iterable[str] = ()) -> Dict[str, List[str]]:
    """For each prediction, the ends of the inference computation after it that the
    loss never reads (decoding, non-max suppression, selection), when it has any
    beyond heads and reshapes: {prediction: [tensor, ...]}. ``evaluated``: tensors only
    metrics read (``Structure.evaluated_ends``), ends as sinks are."""
    evaluated = set(evaluated)
    sinks = set(s.effective_sinks(training)) | evaluated
    out: Dict[str, List[str]] = {}
    for p in preds:
        # the prediction in another layout (a time-major transpose) the loss reads too: decoding starts there as well
        views = s._forward([node_of(p)], lambda n: s.by_name[n].op in _VIEW_OPS and n not in s.excluded)
        after = s._forward([node_of(p)], lambda n: allowed(n) or n in views or (_loop_internal(s, n) and n not in training))
        # what only enters a v1 loop (a scan's initial value, its unstacked input) or only gives a shape
        # (``zeros_like``) is not an end: the loop's result is
        ends = [n for n in s.order if n in after and n in sinks and n != node_of(p)
                and not any(_loop_internal(s, u) or s.by_name[u].op in _SHAPE_READ_OPS for u in s.users.get(n, ()))
                and not unused_control_flow(s.by_name[n])]
        ends = list(dict.fromkeys(_past_exploration(s, n) for n in ends if not batch_statistic(s, n)))
        # what a metric reads that a head or a selection of it carries on to another end (the logits
        # an eval loss reads, whose softmax's top-k is the end) is a step of the computation, not an end
        ends = [n for n in ends if n not in evaluated or n in sinks - set(evaluated) or not any(
            e != n and e in s._forward([n], lambda u: s.by_name[u].op in HEAD_OPS | _CARRY_OPS | _ALIAS_OPS | _ONE_TO_ONE_OPS)
            for e in ends)]
        ends = _without_parts_of_others(s, ends, node_of(p))
        ends = [n for n in ends if not _differenced(s, node_of(p), n, after)]
        if not ends or all(_head_of_prediction(s, n, node_of(p)) for n in ends):
            continue
        out[p] = [t for n in ends for t in all_outputs(s.by_name[n])]
    return out


def _differenced(s: Structure, prediction: str, end: str, after: Set[str]) -> bool:
    """``end`` is computed from a difference of the prediction with a shifted part of itself
    (``d[:, :, 1:] - d[:, :, :-1]``: its neighbouring values compared, as a smoothness or
    total-variation penalty does): a regulariser's term, not a use of the prediction's values."""
    for n in s.upstream([end]) & after:
        node = s.by_name[n]
        if node.op not in ("Sub", "SquaredDifference") or len(s.data_inputs[n]) != 2:
            continue
        chains, sliced = [], False
        for t in s.data_inputs[n]:
            m, chain = node_of(t), []
            while s.by_name[m].op in _VIEW_OPS and s.data_inputs[m]:
                sliced = sliced or s.by_name[m].op in ("StridedSlice", "Slice")
                chain.append(m)
                m = node_of(s.data_inputs[m][0])
            chains.append(set(chain + [m]))
        common = chains[0] & chains[1]  # (both sides views of one tensor, the prediction or what follows it)
        if sliced and s.data_inputs[n][0] != s.data_inputs[n][1] and (prediction in common or common & after):
            return True
    return False


def _without_parts_of_others(s: Structure, ends: List[str], prediction: str) -> List[str]:
    """Without an end that is only a part of a tensor another end, or the prediction, holds whole (a
    slice taken for its static shape, nothing reading it): it adds nothing that one does not carry."""
    def source(n, ops):
        while s.by_name[n].op in ops and s.data_inputs[n]:
            n = node_of(s.data_inputs[n][0])
        return n
    whole = {source(n, _ALIAS_OPS) for n in ends} | {source(prediction, _ALIAS_OPS)}
    return [n for n in ends if s.by_name[n].op in _ALIAS_OPS or s.by_name[n].op not in _VIEW_OPS
            or source(n, _VIEW_OPS) not in whole]


def batch_statistic(s: Structure, name: str, depth: int = 0) -> bool:
    """A reduction of a batch of values to one number (a mean PSNR, an average error): the
    graph recorded it as a scalar computed from a tensor with axes. One number for the whole
    batch is a statistic of the evaluation, never an example's prediction."""
    node = s.by_name[name]
    if node.op not in _BATCH_REDUCTIONS and depth < 4 and s.data_inputs[name] and s.bits[name]:
        # arithmetic on batch statistics alone (an average of accuracies over K heads) is one too
        out = output_shape_proto(node, 0)
        return (out is not None and not out.unknown_rank and not out.dim
                and all(batch_statistic(s, node_of(i), depth + 1) or not s.bits[node_of(i)]
                        for i in s.data_inputs[name]))
    if node.op not in _BATCH_REDUCTIONS or not s.data_inputs[name]:
        return False
    out, given = output_shape_proto(node, 0), s.by_name.get(node_of(s.data_inputs[name][0]))
    src = output_shape_proto(given, int(s.data_inputs[name][0].split(":")[1]) if ":" in s.data_inputs[name][0]
                             else 0) if given is not None else None
    return (out is not None and not out.unknown_rank and not out.dim
            and src is not None and (src.unknown_rank or len(src.dim) > 0))


_BATCH_REDUCTIONS = frozenset({"Mean", "Sum", "Max", "Min", "Prod", "EuclideanNorm"})


def _past_exploration(s: Structure, name: str) -> str:
    """An end that chooses, element by element, between what the model computes and values no
    weight computes (epsilon-greedy: a random action where a coin says so) explores in training:
    what the model computes is the end."""
    node = s.by_name[name]
    if node.op not in ("Select", "SelectV2") or len(s.data_inputs[name]) != 3:
        return name
    values = [node_of(i) for i in s.data_inputs[name][1:]]
    modelled = [v for v in values if v in s.from_vars]
    return modelled[0] if len(modelled) == 1 else name


def _head_of_prediction(s: Structure, name: str, prediction: str) -> bool:
    """``name`` is a head or a layer end computed right from ``prediction`` (a softmax, a
    reshape, a cast of an argmax), not computation of its own."""
    for _ in range(8):
        if name == prediction:
            return True
        node = s.by_name[name]
        if node.op not in HEAD_OPS | _UNARY_MODEL_OPS | {"Cast"} or not s.data_inputs[name]:
            return False
        name = node_of(s.data_inputs[name][0])
    return False


def _loop_internal(s: Structure, name: str) -> bool:
    """A v1 while loop's plumbing: its control-flow ops, TensorArrays and the Identity after a Switch."""
    op = s.by_name[name].op
    if op in CONTROL_FLOW_V1_OPS - LOOP_EXIT_OPS or op.startswith("TensorArray"):
        return True
    return op == "Identity" and bool(s.data_inputs[name]) and s.by_name[node_of(s.data_inputs[name][0])].op in SWITCH_OPS


def all_outputs(node) -> List[str]:
    """Every output of an end node (non-max suppression's boxes, scores, classes, count)."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    n = 1
    if op_def is not None and not any(a.number_attr or a.type_list_attr for a in op_def.output_arg):
        n = max(1, len(op_def.output_arg))
    return ["%s:%d" % (node.name, k) for k in range(n)]


def head_op(s: Structure, name: str, also=frozenset()) -> str:
    while s.by_name[name].op in _ALIAS_OPS | set(also) and s.data_inputs[name]:
        name = node_of(s.data_inputs[name][0])
    return s.by_name[name].op
