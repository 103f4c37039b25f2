"""Name resolution: which tensors are the frozen graph's outputs and inputs.

Ranked sources, each a rule that records typed evidence (``evidence.Evidence``); the
first that yields outputs wins, and each output carries its record's sentence as its
reason: explicit names > signature defs (``signature-def``) > user collections
(``user-collection``) > the training structure (``rules.STRUCTURE_RULES``, decided
by ``rules.decide``) > graph sinks (``graph-sinks``: nodes nothing reads that are
not training, saver, summary, init or bookkeeping ops). An inferred answer that holds a
tensor with only TensorFlow's default name, next to tensors the graph's author named, is
not sure (``_unnamed_answer``): who names a computation's tensors names the ones they
fetch. ``resolve`` is the one place
that answers or refuses (OUTPUTS_AMBIGUOUS, NO_OUTPUTS_FOUND, with ranked
candidates); ``explain`` returns every source's records (what inspect shows). Inputs
are explicit, or the signature's, or the placeholders the outputs depend on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from tensorflow.python.framework import dtypes

from . import heads, rules
from .evidence import (WEIGHT_AGAINST, WEIGHT_COLLECTION, WEIGHT_LOOSE_END, WEIGHT_OPEN, WEIGHT_SIGNATURE, WEIGHT_SINK, Board,
                       Claim, Evidence, Rule, rule)
from .oproles import (ACCUMULATE_OPS, ACTIVATION_OPS, BOOKKEEPING_OPS as _BOOKKEEPING_OPS,
                      CONTROL_FLOW_V1_OPS as _CONTROL_FLOW_V1,
                      FUNCTIONAL_CONTROL_FLOW_OPS as _LOOP_OUTPUT_SOURCES, ITERATOR_GET_NEXT_OPS, LOOP_ENTER_OPS,
                      LOOP_EXIT_OPS, MERGE_OPS, MOVING_AVERAGE_UPDATE_OPS, SWITCH_OPS,
                      PLACEHOLDER_OPS, SELECTION_OPS as _SELECTION_OPS, SHAPE_OPS as _SHAPE_OPS, VARIABLE_OPS, VIEW_OPS,
                      CALL_OPS, DATA_SOURCE_OPS, is_input_pipeline_op, is_random, is_summary_op, is_training_op as _is_training_op)
from .graph import (ancestors, fixed_output_count, consumers, node_of, nodes_by_name, output_dtype_enum,
                    output_shape_proto, reach, resolve_names, tensor_name)
from .switches import find_switches
from .words import article

Named = Tuple[str, str]  # (tensor name "node:i", reason)
EXPLICIT_OUTPUT = "explicit outputs"
EXPLICIT_INPUT = "explicit inputs"

# Collections TensorFlow itself maintains; everything else was added by the user.
_TF_COLLECTIONS = {
    "variables", "trainable_variables", "local_variables", "model_variables", "global_step",
    "summaries", "train_op", "update_ops", "losses", "regularization_losses", "saveable_objects",
    "savers", "cond_context", "while_context", "queue_runners", "table_initializer",
    "asset_filepaths", "init_op", "local_init_op", "ready_op", "ready_for_local_init_op",
    "summary_op", "eval_step", "concatenated_variables", "metric_variables",
    "moving_average_variables", "_SUMMARY_WRITER_INIT_OP", "iterators", "resources",
    "local_resources", "trainable_resource_variables", "_streaming_model_ports",
}
_INPUT_COLLECTION = re.compile(r"(^|[_\W])(in|inputs?|x|feeds?|placeholders?)$", re.I)

_BOOKKEEPING_SCOPES = re.compile(
    r"^(save(_\d+)?|gradients(_\d+)?|gradient_tape|init(_\d+)?|report_uninitialized_variables(_\d+)?|"
    r"global_step|summaries|train|Merge)(/|$)")


_GRADIENTS = re.compile(r"(^|/)(gradients(_\d+)?|gradient_tape)/")  # tf.gradients' and GradientTape's scopes


def training_nodes(graph_def) -> Set[str]:
    """Nodes that exist for training or bookkeeping: gradients, optimizer
    updates, assignments, and everything computed from their data (control
    edges and Merge joins are not followed: a cond's training branch orders
    its updates with control edges and rejoins the model at a Merge; a v2 loop
    or cond that takes gradient accumulators in is still the model's forward op)."""
    users: dict = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                users.setdefault(node_of(i), set()).add(n.name)
    merges = {n.name for n in graph_def.node if n.op in MERGE_OPS or
              (n.op in _LOOP_OUTPUT_SOURCES and not _GRADIENTS.search(n.name))}
    forward = _forward_gradients(graph_def, users)
    seeds = [n.name for n in graph_def.node
             if _is_training_op(n.op) or (_GRADIENTS.search(n.name) and n.name not in forward)]
    return reach(seeds, lambda name: (u for u in users.get(name, ()) if u not in merges))


def _gradient_scope(name: str) -> Optional[str]:
    m = None
    for m in _GRADIENTS.finditer(name):
        pass
    return name[:m.end()] if m else None


def _forward_gradients(graph_def, users) -> Set[str]:
    """Gradients the model computes with: a tf.gradients scope whose values reach, through no
    training op, what another tf.gradients scope differentiates (MAML's adapted weights, a
    gradient penalty inside a critic's loss). They are part of the forward computation; the
    optimizer's own gradients, clipped or not, reach only its updates."""
    scopes: Dict[str, Set[str]] = {}
    ops = {n.name: n.op for n in graph_def.node}
    for n in graph_def.node:
        scope = _gradient_scope(n.name)
        if scope is not None:
            scopes.setdefault(scope, set()).add(n.name)
    if len(scopes) < 2:
        return set()
    out: Set[str] = set()
    for scope, names in scopes.items():
        after = reach(names, lambda name: (u for u in users.get(name, ()) if not _is_training_op(ops[u])
                                           and _gradient_scope(u) is None))
        after -= names
        if any(_gradient_scope(u) not in (None, scope) for n in after for u in users.get(n, ())):
            out |= names
    return out


_HANDLE_DTYPES = {dtypes.variant.as_datatype_enum, dtypes.resource.as_datatype_enum}
_INT_DTYPES = {dtypes.int32.as_datatype_enum, dtypes.int64.as_datatype_enum}


def _is_shape_arithmetic(node, by_name, limit: int = 64) -> bool:
    """An int32/int64 tensor computed only from the shapes of other tensors and constants
    (a strided_slice of a Shape, a batch size): never a model output."""
    if node.op in _SHAPE_OPS or output_dtype_enum(node, 0) not in _INT_DTYPES:
        return False
    stack, seen, from_shape = [node.name], set(), False
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > limit:
            return False
        current = by_name.get(name)
        if current is None:
            return False
        if current.op in _SHAPE_OPS:
            from_shape = True
            continue  # what it measures does not matter
        if current.op == "Const":
            continue
        inputs = [node_of(i) for i in current.input if not i.startswith("^")]
        if not inputs or output_dtype_enum(current, 0) not in _INT_DTYPES:
            return False  # a placeholder, a variable read, a float computation
        stack.extend(inputs)
    return from_shape


def _is_bookkeeping(node, by_name, training) -> bool:
    if node.op in _BOOKKEEPING_OPS or node.name in training or _BOOKKEEPING_SCOPES.match(node.name):
        return True
    if is_input_pipeline_op(node.op):  # an iterator's initializer or string handle, a dataset
        return True
    if output_dtype_enum(node, 0) in _HANDLE_DTYPES:  # a TensorList, a dataset, a resource: not data
        return True
    if _is_shape_arithmetic(node, by_name):
        return True
    if node.op in _CONTROL_FLOW_V1 - LOOP_EXIT_OPS:
        return True
    # cond internals: the pivots `cond/switch_t`, `cond/switch_f`, `cond/pred_id` read a Switch.
    if node.op == "Identity" and node.input:
        src = by_name.get(node_of(node.input[0]))
        if src is not None and src.op in SWITCH_OPS:
            return True
    # A bare read of a variable (`w/read`) is not a model output.
    if node.op == "Identity" and node.input:
        src = by_name.get(node_of(node.input[0]))
        return src is not None and src.op in VARIABLE_OPS
    return False


@dataclass
class Resolution:
    outputs: List[Named]
    inputs: Optional[List[Named]]  # None: the placeholders the outputs depend on
    warnings: List[str] = field(default_factory=list)
    unsure: str = ""  # why the outputs are only candidates (a freeze refuses them)
    evidence: List[Evidence] = field(default_factory=list)  # what the source that answered found

    @staticmethod
    def of(records: List[Evidence], inputs: Optional[List[Named]] = None, warnings: Optional[List[str]] = None,
           unsure: str = "") -> "Resolution":
        """The outputs an evidence list is for, in its order, with the records."""
        return Resolution([(e.tensor, e.why) for e in records if not e.against], inputs, list(warnings or []),
                          unsure, list(records))


# -- the ranked sources: each a rule; the first that yields outputs answers -------------------
@rule("signature-def", "the outputs a signature def names are the model's outputs, as its author exported them")
def _signature_outputs(args, board: Board) -> List[Evidence]:
    meta, key = args
    sig = meta.signature_def[key]
    return [Evidence(tensor_name(sig.outputs[a].name), Claim.SIGNATURE_OUTPUT, WEIGHT_SIGNATURE,
                     "signature_def %r output %r" % (key, a), (node_of(sig.outputs[a].name),))
            for a in sorted(sig.outputs)]


def _from_signature(meta, key: Optional[str]) -> Optional[Resolution]:
    if not key or key not in meta.signature_def:
        return None
    sig = meta.signature_def[key]
    outs = _signature_outputs((meta, key), Board())
    ins = [(tensor_name(sig.inputs[a].name), "signature_def %r input %r" % (key, a)) for a in sorted(sig.inputs)]
    return Resolution.of(outs, ins) if outs else None


# A collection is taken as the model's outputs only when its name says so, or when
# it is small and specific; a framework's end-point collection (tf-slim's
# `net/_end_points`, one entry per layer) describes layers, not outputs.
_OUTPUT_COLLECTION = re.compile(r"(^|[_\W])(outputs?|preds?|predictions?|logits|probs|probabilities|scores|"
                                r"inference|infer|y_?pred|y_?hat|results?|network|heads?)($|[_\W])", re.I)
_FRAMEWORK_COLLECTION = re.compile(r"end_?points|/|^_", re.I)
_SMALL_COLLECTION = 4


def user_collections(meta) -> List[str]:
    """User-added collections holding graph nodes or tensors."""
    return sorted(k for k, v in meta.collection_def.items()
                  if k not in _TF_COLLECTIONS and v.HasField("node_list") and v.node_list.value)


def _names_outputs(key: str, size: int) -> bool:
    if _FRAMEWORK_COLLECTION.search(key):
        return False
    return bool(_OUTPUT_COLLECTION.search(key)) or size <= _SMALL_COLLECTION


def _ends(values, by_name) -> list:
    """The entries no other entry is computed from. In a listing of layers along the network
    (tflearn's ``activations``) that is the last layer; results side by side are all ends."""
    nodes = {node_of(v) for v in values if node_of(v) in by_name}
    inner = set()
    for name in nodes:
        seen, stack = set(), [node_of(i) for i in by_name[name].input]
        while stack:
            up = stack.pop()
            if up in seen or up not in by_name:
                continue
            seen.add(up)
            if up in nodes:
                inner.add(up)
            stack.extend(node_of(i) for i in by_name[up].input)
    return [v for v in values if node_of(v) not in inner]


_SEED = re.compile(r"(^|/)gradients(_\d+)?/(grad_ys_\d+(_\d+)?|Fill)$")
_SEEDED = re.compile(r"^(.*?gradients(_\d+)?/)(.+?)_grad/")


def _gradient_targets(by_name) -> Set[str]:
    """What tf.gradients was called on (the losses): Y of the ``gradients/Y_grad/...`` ops that read
    the gradients' seed (``grad_ys_0``, or the Fill of ones)."""
    out: Set[str] = set()
    for name, node in by_name.items():
        if any(_SEED.search(node_of(i)) for i in node.input if not i.startswith("^")):
            m = _SEEDED.match(name)
            if m and m.group(3) in by_name:
                out.add(m.group(3))
    return out


def _runs_training(node, by_name) -> bool:
    """The op a training step runs (an optimizer's update, or the NoOp minimize() groups them in)."""
    if _is_training_op(node.op):
        return True
    return node.op == "NoOp" and any(
        _is_training_op(by_name[node_of(i)].op) or (by_name[node_of(i)].op == "NoOp" and any(
            _is_training_op(by_name[node_of(j)].op) for j in by_name[node_of(i)].input if node_of(j) in by_name))
        for i in node.input if node_of(i) in by_name)


def _collection_entries(meta, by_name):
    """(collection, value, node, is_input) for the user collections that name outputs or inputs.
    A collection taken by its size alone (its name says neither) gives its ends: one whose
    entries follow each other lists layers, and the last is the network's output."""
    losses = _gradient_targets(by_name)
    for key in user_collections(meta):
        values = meta.collection_def[key].node_list.value
        if not _INPUT_COLLECTION.search(key) and not _names_outputs(key, len(values)):
            continue
        if not _INPUT_COLLECTION.search(key) and not _OUTPUT_COLLECTION.search(key):
            # (taken by its size alone: one that holds the training op or the loss lists what a training
            # script resumes with, X, y, the accuracy and the step, not what the model is deployed for)
            if any(node_of(v) in by_name and (_runs_training(by_name[node_of(v)], by_name) or node_of(v) in losses)
                   for v in values):
                continue
            if len(values) > 1:
                values = _ends(values, by_name)
        for value in values:
            node = by_name.get(node_of(value))
            if node is not None:
                yield key, value, node, node.op in PLACEHOLDER_OPS or bool(_INPUT_COLLECTION.search(key))


@rule("user-collection", "a collection its author added whose name says outputs (or that holds a few tensors) "
      "names the model's outputs; a framework's per-layer end points do not")
def _collection_outputs(args, board: Board) -> List[Evidence]:
    meta, by_name, training = args
    return [Evidence(tensor_name(value), Claim.COLLECTION_OUTPUT, WEIGHT_COLLECTION, "collection %r" % key,
                     (node.name,)) for key, value, node, is_input in _collection_entries(meta, by_name)
            if not is_input and not _is_bookkeeping(node, by_name, training)]


def _from_collections(meta, by_name, training) -> Optional[Resolution]:
    outs = _collection_outputs((meta, by_name, training), Board())
    ins, seen = [], set()
    for key, value, _, is_input in _collection_entries(meta, by_name):
        if is_input and tensor_name(value) not in seen:  # one input listed by two collections is one input
            seen.add(tensor_name(value))
            ins.append((tensor_name(value), "collection %r" % key))
    if not outs:
        return None
    return Resolution.of(outs, ins or None)


def ancestors_by_data(names: Iterable[str], by_name) -> Set[str]:
    """The nodes tensors' values are computed from, theirs included (data inputs only: a control
    dependency on a training step reads nothing)."""
    seen: Set[str] = set()
    todo = [node_of(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(node_of(i) for i in by_name[name].input if not i.startswith("^"))
    return seen


def _variables_read(names: Iterable[str], by_name) -> Set[str]:
    """The variables tensors' values are computed from."""
    return {n for n in ancestors_by_data(names, by_name) if by_name[n].op in VARIABLE_OPS}


def _inference_view(e: Evidence, by_name, users, training) -> Named:
    """A prediction a loss compares (logits), or the one activation of it that the loss does
    not read (the softmax an app fetches), with why."""
    in_loss = ancestors_by_data([e.loss], by_name) if e.loss else set()
    after = [u for u in users.get(node_of(e.tensor), ()) if u not in in_loss and u not in training
             and by_name[u].op in ACTIVATION_OPS]
    if len(after) == 1:
        return "%s:0" % after[0], "%s of %s (%s)" % (by_name[after[0]].op, e.tensor, e.why)
    return e.tensor, e.why


def _trained_past(listed: Resolution, meta, by_name, training, excluded: Set[str]) -> Optional[Resolution]:
    """A collection lists the outputs its author had when it was written. A graph trained further
    keeps it (``import_meta_graph``, a new head with its own loss and optimizer) and may deploy
    something it does not list. When a loss compares with its labels a prediction computed from
    variables that none of the listed outputs reads, and not from a listed output (a critic
    scoring the listed output is a part of training), the collection no longer speaks for the
    whole graph: both are candidates, the trained prediction first, and a freeze asks which."""
    f = _facts(meta, by_name, training, excluded)
    if f is None:
        return listed
    # What compares the model with its labels (an accuracy, the loss) is the evaluation's, whichever
    # collection lists it (tutorials keep x, y, the accuracy and the step in collections to resume with).
    evaluated = [t for t, _ in listed.outputs if f.s.bits.get(node_of(t), 0) & f.label_mask]
    if evaluated:
        listed.outputs = [(t, w) for t, w in listed.outputs if t not in evaluated]
        listed.warnings.append("left out of the outputs a collection lists: %s, which compare%s the model with its "
                               "labels (evaluation, not what it is deployed for)"
                               % (", ".join(evaluated), "s" if len(evaluated) == 1 else ""))
        if not listed.outputs:
            return None
    d = _structure(meta, by_name, training, excluded, f)
    if d is None:
        return listed
    names = {t for t, _ in listed.outputs}
    listed_nodes = {node_of(t) for t in names}
    users = consumers(meta.graph_def)
    theirs = _variables_read(names, by_name)
    beyond: List[Named] = []
    for e in d.board.records:
        if (e.claim not in (Claim.PREDICTION, Claim.LOSS_PREDICTION) or e.against or e.tensor in names
                or e.tensor in [t for t, _ in beyond]):
            continue
        upstream = ancestors_by_data([node_of(e.tensor)], by_name)
        if not upstream & listed_nodes and _variables_read([e.tensor], by_name) - theirs:
            beyond.append(_inference_view(e, by_name, users, training))
    if not beyond:
        return listed
    keys = sorted({e.why for e in listed.evidence if not e.against})
    listed.unsure = ("the %s list%s %s, but a loss also trains %s, computed from variables that %s does not "
                     "read (a graph trained further after the collection was written, e.g. a new head after "
                     "import_meta_graph?)" % (" and ".join(keys), "" if len(keys) > 1 else "s",
                                              ", ".join(sorted(names)), ", ".join(t for t, _ in beyond),
                                              "none of them" if len(names) > 1 else "it"))
    listed.outputs = beyond + listed.outputs
    return listed


def _is_unused_control_flow_output(node, by_name) -> bool:
    """A loop's or cond's result nobody reads (the loop counter of a while_loop...)."""
    if node.op in LOOP_EXIT_OPS:
        return True
    if node.op == "Identity" and node.input:
        src = by_name.get(node_of(node.input[0]))
        return src is not None and src.op in _LOOP_OUTPUT_SOURCES
    return False


_GRADIENT_SCOPE = re.compile(r"^gradients(_\d+)?/")


def _differentiated(names) -> Set[str]:
    """Names N for which a `gradients/N_grad/...` node exists (one pass over the graph)."""
    out: Set[str] = set()
    for n in names:
        m = _GRADIENT_SCOPE.match(n)
        if not m:
            continue
        rest = n[m.end():]
        at = rest.find("_grad/")
        while at >= 0:
            out.add(rest[:at])
            at = rest.find("_grad/", at + 1)
    return out


def _predictions_feeding(losses, graph_def, by_name, training) -> List[str]:
    """Where the model meets its target: data inputs, computed from variables, of a
    node inside a loss whose other input is computed without any (labels, targets)."""
    data_users: dict = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                data_users.setdefault(node_of(i), []).append(n.name)
    from_vars: Set[str] = set()
    stack = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    while stack:
        name = stack.pop()
        if name not in from_vars:
            from_vars.add(name)
            stack.extend(data_users.get(name, ()))
    in_loss = ancestors(graph_def, losses)
    integer = {3, 9}  # DT_INT32, DT_INT64: axes and shapes, not targets

    def target_like(name: str) -> bool:
        node = by_name.get(name)
        if node is not None and node.op == "Const":
            return node.attr["dtype"].type not in integer
        return any(by_name[a].op in PLACEHOLDER_OPS | ITERATOR_GET_NEXT_OPS for a in ancestors(graph_def, [name]))

    found: List[str] = []
    for n in graph_def.node:
        if n.name not in in_loss or n.name in training:
            continue
        data = [node_of(i) for i in n.input if not i.startswith("^")]
        if len(data) < 2 or not any(d not in from_vars and target_like(d) for d in data):
            continue
        for d in data:
            node = by_name.get(d)
            if d in from_vars and node is not None and not _is_bookkeeping(node, by_name, training) and d not in found:
                found.append(d)
    return found


_SINK_REASON = "graph sink: nothing consumes it and it is not a training, saver, summary, init or bookkeeping op"
_REDUCTIONS = frozenset({"Mean", "Sum"})


def _without_computed_losses(graph_def, sinks):
    """Sinks apart from the losses a graph computes without training (an inference graph
    that still builds its loss from a label placeholder): a sink that reduces (mean, sum,
    within a few scalar steps) a computation reading a data source that no layer reads,
    when other sinks read no such source. Returns (kept sinks, [(loss, [targets])])."""
    s = heads.Structure(graph_def, set())
    fed = s.upstream({node_of(i) for n in s.layers for i in s.data_inputs[n]})
    targets = [src for src in s.sources if src not in fed]
    if not targets:
        return sinks, []
    mask = 0
    for t in targets:
        mask |= 1 << s.sources.index(t)

    def reduces(name, depth=0):
        node = s.by_name[name]
        if node.op in _REDUCTIONS:
            return True
        return depth < 3 and any(reduces(node_of(i), depth + 1) for i in s.data_inputs[name])
    losses = [n for n in sinks if s.bits[n.name] & mask and s.is_activation(n.name) and reduces(n.name)]
    kept = [n for n in sinks if n not in losses]
    if not losses or not kept or any(s.bits[n.name] & mask for n in kept):
        return sinks, []
    return kept, [(n.name, [t for t in targets if s.bits[n.name] & (1 << s.sources.index(t))]) for n in losses]


def _data_reached(graph_def, excluded: Set[str]) -> Set[str]:
    """The nodes whose values data decides: what placeholders, iterators and queues (and random
    draws) reach through data edges; not the bookkeeping's (the saver's file name)."""
    users: Dict[str, List[str]] = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                users.setdefault(node_of(i), []).append(n.name)
    todo = [n.name for n in graph_def.node if n.op in DATA_SOURCE_OPS and not _BOOKKEEPING_SCOPES.match(n.name)]
    if not todo:  # (a graph that takes no data: nothing to tell apart)
        return set()
    from . import oppolicy

    safe = oppolicy.safe_ops()  # (what the server does not run as pure computation, a file read, brings data too)
    todo += [n.name for n in graph_def.node if (is_random(n.op) or n.op not in safe) and n.name not in excluded]
    seen = set(todo)
    while todo:
        for u in users.get(todo.pop(), ()):
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


@rule("graph-sinks", "in a graph without a loss to go by, what nothing reads (and is no training, saver, summary, "
      "init, shape or bookkeeping op) is an output; an unused loop or cond result only when nothing else is; a "
      "sink that gradients were taken of is a loss, and the prediction it compares with its target is the output; "
      "a sink reducing what the model computes with a data source no layer reads (a target) is a loss the graph "
      "computes, not an output, when other sinks read no such source")
def _sink_outputs(args, board: Board) -> List[Evidence]:
    graph_def, by_name, training = args[:3]
    excluded = args[3] if len(args) > 3 and args[3] is not None else _excluded(graph_def, by_name, training)
    users = consumers(graph_def)
    differentiated = _differentiated(n.name for n in graph_def.node)
    # (what only a tf.print or a string format reads is shown, not consumed: a sink)
    sinks = [n for n in graph_def.node if n.op not in _SHOW_OPS
             and not [u for u in users.get(n.name, ()) if by_name[u].op not in _SHOW_OPS]]
    # In a graph that takes data, a sink no data reaches (a weight's L2 norm times a decay, a
    # regularizer nothing adds) is a fact of the checkpoint, not an output of the model.
    fed = _data_reached(graph_def, excluded)
    primary, loose_ends, losses = [], [], []
    for n in sinks:
        if fed and n.name not in fed:
            continue
        if _is_unused_control_flow_output(n, by_name):
            loose_ends.append(n)  # unused loop/cond results: outputs only if nothing else is
        elif n.name not in excluded:  # (bookkeeping, metrics, the graph's constants...)
            (losses if n.name in differentiated else primary).append(n)
    if primary:
        kept, computed_losses = _without_computed_losses(graph_def, primary)
        return ([Evidence("%s:0" % n.name, Claim.SINK, WEIGHT_SINK, _SINK_REASON, (n.name,)) for n in kept]
                + [Evidence("%s:0" % n, Claim.COMPUTED_LOSS, WEIGHT_AGAINST, "left out: %s reduces what the model "
                            "computes together with %s, which no layer reads: a loss computed in the graph (nothing "
                            "differentiates it), not an output" % (n, ", ".join(targets)), (n,) + tuple(targets))
                   for n, targets in computed_losses])
    if loose_ends:
        return [Evidence("%s:0" % n.name, Claim.LOOSE_END, WEIGHT_LOOSE_END, _SINK_REASON, (n.name,))
                for n in loose_ends]
    if losses:
        loss_names = [n.name for n in losses]
        predictions = _predictions_feeding(loss_names, graph_def, by_name, training)
        if predictions:
            return [Evidence("%s:0" % p, Claim.LOSS_PREDICTION, WEIGHT_SINK, "graph analysis: the prediction the "
                             "loss %s compares with its target" % ", ".join(loss_names), tuple(loss_names))
                    for p in predictions]
        return [Evidence("%s:0" % n, Claim.LOSS, WEIGHT_LOOSE_END, "graph sink (a training loss)", (n,))
                for n in loss_names]
    return []


_SHOW_OPS = frozenset({"StringFormat", "PrintV2", "AsString"})


def _from_analysis(graph_def, by_name, training, excluded: Optional[Set[str]] = None) -> Resolution:
    found = _sink_outputs((graph_def, by_name, training, excluded), Board())
    losses = [e.tensor for e in found if e.claim is Claim.LOSS]
    warnings = ["the only outputs found are training losses (%s); name the outputs"
                % ", ".join(node_of(t) for t in losses)] if losses else []
    return Resolution.of(found, None, warnings + [e.why for e in found if e.claim is Claim.COMPUTED_LOSS])


MAX_INFERRED_OUTPUTS = 10


_VALUE_FREE_OPS = frozenset({"OnesLike", "ZerosLike"})  # (their values follow from a shape alone)


def _value_free(graph_def, by_name) -> Set[str]:
    """Tensors whose values no input, variable or random draw decides: computed from constants and
    shapes alone (a sampler's grid from ``linspace(0, width - 1)``, ``ones_like`` of the output).
    They are the graph's constants, never an output. Only through ops the server runs as pure
    computation (the op allowlist): a file read of a constant path, an op it does not know, decide
    values of their own."""
    from . import oppolicy

    safe = oppolicy.safe_ops()
    free: Dict[str, bool] = {}

    def decide(name: str) -> bool:
        stack = [name]
        while stack:
            n = stack[-1]
            node = by_name.get(n)
            if n in free:
                stack.pop()
                continue
            if node is None or node.op in VARIABLE_OPS or node.op in PLACEHOLDER_OPS or is_random(node.op) \
                    or is_input_pipeline_op(node.op) or node.op in _LOOP_OUTPUT_SOURCES or node.op in CALL_OPS \
                    or node.op not in safe:
                free[n] = False
                stack.pop()
                continue
            if node.op == "Const" or node.op in _SHAPE_OPS or node.op in _VALUE_FREE_OPS:
                free[n] = True
                stack.pop()
                continue
            inputs = [node_of(i) for i in node.input if not i.startswith("^")]
            if not inputs:  # (an op that makes a value of its own: stateful, a function call)
                free[n] = False
                stack.pop()
                continue
            todo = [i for i in inputs if i not in free]
            if todo:
                if any(i in stack for i in todo):  # a loop's back edge: values of iterations
                    free[n] = False
                    stack.pop()
                    continue
                stack.extend(todo)
                continue
            free[n] = all(free[i] for i in inputs)
            stack.pop()
        return free[name]

    return {n.name for n in graph_def.node if n.op not in ("Const", "NoOp") and decide(n.name)}


def metric_scopes(graph_def) -> List[str]:
    """Name scopes that hold a streaming metric: scopes whose only state is accumulators (variables
    that are only ever added into: totals, counts, a confusion matrix) and that take no input of
    their own (tf.compat.v1.metrics.auc's ``auc/``, mean_iou's ``mean_iou/``, a Keras metric's). For
    each accumulator, the outermost scope around it that holds nothing else of the kind; a step
    counter at the top level has none. Nothing in such a scope is a model output: its asserts, its
    comparisons, the top-k it takes of the predictions, its value."""
    by_name = nodes_by_name(graph_def)
    added = {node_of(n.input[0]) for n in graph_def.node if n.op in ACCUMULATE_OPS and n.input}
    accumulators = {v for v in added if v in by_name and by_name[v].op in VARIABLE_OPS}
    others = [n.name for n in graph_def.node
              if (n.op in VARIABLE_OPS and n.name not in accumulators) or n.op in PLACEHOLDER_OPS]
    scopes: Set[str] = set()
    for var in accumulators:
        parts = var.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            scope = "/".join(parts[:depth]) + "/"
            if not any(o.startswith(scope) for o in others):
                scopes.add(scope)
                break
    return sorted(scopes)


def _excluded(graph_def, by_name, training) -> Set[str]:
    """Nodes that are never a model output: training, bookkeeping, metrics, the copy
    tf.custom_gradient leaves beside the IdentityN it hands the value on with (tf.nn.silu's),
    tensors whose values no input decides (ones_like of the output, as tf.gradients' grad_ys),
    and a view of a tensor (a reshape, a transpose) nobody named that only summaries read: it
    is the summary's (an image summary's reshape of the output), the tensor it views is the
    model's."""
    wrapped = {node_of(i) for n in graph_def.node if n.op == "IdentityN" for i in n.input if not i.startswith("^")}
    users = consumers(graph_def)
    read = {n for n, readers in users.items() if readers}

    def for_summaries(n) -> bool:  # (a view its author named, tf.identity(x, name="shown"), is a name: kept)
        return (n.op in VIEW_OPS and bool(users.get(n.name)) and _default_name(n)
                and all(is_summary_op(by_name[u].op) for u in users[n.name]))
    metrics = tuple(metric_scopes(graph_def))
    value_free = _value_free(graph_def, by_name)
    return {n.name for n in graph_def.node
            if _is_bookkeeping(n, by_name, training) or heads.METRIC_SCOPE.search(n.name)
            or (metrics and n.name.startswith(metrics))
            or (n.name not in read and _GRADIENTS.search(n.name))  # (a partial tf.gradients made and nobody reads)
            or (n.op == "Identity" and n.input and node_of(n.input[0]) in wrapped)
            or n.name in value_free or for_summaries(n)}


def _moving_average_arithmetic(graph_def, by_name) -> Set[str]:
    """What only moving-average updates read (batch norm's decayed difference, cond/mul beside
    AssignSub): the update's arithmetic, however many steps before it. Never a candidate."""
    users = consumers(graph_def)
    found: Set[str] = set()
    todo = [n.name for n in graph_def.node if n.op in MOVING_AVERAGE_UPDATE_OPS]
    while todo:
        for i in by_name[todo.pop()].input:
            src = node_of(i.lstrip("^"))
            if (src not in found and src in by_name and by_name[src].op not in VARIABLE_OPS
                    and all(u in found or by_name[u].op in MOVING_AVERAGE_UPDATE_OPS for u in users.get(src, ()))):
                found.add(src)
                todo.append(src)
    return found


def _loss_collection(meta) -> List[str]:
    """Node names in the meta graph's ``losses`` collection (tf.losses adds each loss there)."""
    if "losses" in meta.collection_def and meta.collection_def["losses"].HasField("node_list"):
        return [node_of(v) for v in meta.collection_def["losses"].node_list.value]
    return []


def _facts(meta, by_name, training, excluded: Optional[Set[str]] = None) -> Optional[rules.Facts]:
    graph_def = meta.graph_def
    return rules.facts(graph_def, _excluded(graph_def, by_name, training) if excluded is None else excluded,
                       training, {sw.name for sw in find_switches(graph_def)}, _loss_collection(meta),
                       lambda n: _is_unused_control_flow_output(n, by_name))


def _structure(meta, by_name, training, excluded: Optional[Set[str]] = None,
               facts: Optional[rules.Facts] = None) -> Optional[rules.Decision]:
    """The training structure's rules run and decided (None: the graph has no loss)."""
    facts = facts or _facts(meta, by_name, training, excluded)
    return None if facts is None else rules.decide(rules.run(facts))


def _from_structure(meta, by_name, training, excluded: Optional[Set[str]] = None) -> Optional[Resolution]:
    d = _structure(meta, by_name, training, excluded)
    if d is None or not (d.outputs or d.candidates):
        return None
    records = d.board.records
    if d.candidates:
        return Resolution(d.candidates, None, d.warnings, d.unsure, records)
    return Resolution(d.outputs, None, d.warnings, evidence=records)


def resolve(meta, outputs: List[str], inputs: List[str], signature: Optional[str] = None,
            refuse_ambiguous: bool = True) -> Resolution:
    """Outputs and inputs with reasons; ``signature``: the signature def to use, if any.
    With too many candidates a freeze refuses (``refuse_ambiguous``); inspect lists the best."""
    graph_def = meta.graph_def
    by_name = nodes_by_name(graph_def)
    training = training_nodes(graph_def)
    warnings: List[str] = []
    made: List[Set[str]] = []

    def excluded() -> Set[str]:  # (never an output: made once, when first asked for)
        if not made:
            made.append(_excluded(graph_def, by_name, training))
        return made[0]
    if outputs:
        res = Resolution([(t, EXPLICIT_OUTPUT) for t in _once(resolve_names(outputs, graph_def, "outputs"),
                                                                "outputs", warnings)], None)
        in_loops = _inside_v1_loops(graph_def)
        for t, _ in res.outputs:
            if node_of(t) in in_loops:
                from .errors import InvalidArgument
                raise InvalidArgument("output %s is computed inside a tf.while_loop body: it has a value per "
                                      "iteration, none a caller can fetch. Name the loop's result (what its Exit "
                                      "feeds) or a tensor after the loop" % t,
                                      "ERROR_REASON_INVALID_NAME", field="options.outputs", name=t)
            count = fixed_output_count(by_name[node_of(t)])
            if count is not None and int(t.rsplit(":", 1)[1]) >= count:
                from .errors import InvalidArgument
                op = by_name[node_of(t)].op
                raise InvalidArgument(("output %s: %s is %s op with %d output(s) (%s); name one of them"
                                       % (t, node_of(t), article(op), count,
                                          ", ".join("%s:%d" % (node_of(t), i) for i in range(count)))) if count else
                                      ("output %s: %s is %s op, which produces no tensor (it only runs); name the "
                                       "tensor whose computation you want" % (t, node_of(t), article(op))),
                                      "ERROR_REASON_INVALID_NAME", field="options.outputs", name=t)
    else:
        declared = _from_signature(meta, signature)
        if declared is None:
            declared = _from_collections(meta, by_name, training)
            if declared is not None:
                declared = _trained_past(declared, meta, by_name, training, excluded())
        res = (declared or _from_structure(meta, by_name, training, excluded())
               or _from_analysis(graph_def, by_name, training, excluded()))
        in_loops = _inside_v1_loops(graph_def)  # (a value per iteration, never an output: the loop's result is)
        res.outputs = [(t, r) for t, r in res.outputs if node_of(t) not in in_loops]
        if not res.outputs:
            raise _no_outputs(meta, by_name)
        res.outputs = _with_selection_indices(res.outputs, by_name)  # (candidates too)
        if not res.unsure and not declared:  # (a signature or collection names its tensors itself)
            res.outputs = _by_their_names(res.outputs, graph_def, by_name)
            gate = _unnamed_answer(res.outputs, graph_def, by_name, training, excluded) or _unnamed_sinks(res, by_name)
            if gate is not None:
                res.unsure, res.outputs = gate
        if res.unsure:
            if refuse_ambiguous:
                raise _not_sure(res.outputs, by_name, res.unsure)
            warnings.append("not sure which outputs: %s; a freeze without outputs would be refused" % res.unsure)
        if len(res.outputs) > MAX_INFERRED_OUTPUTS:
            if refuse_ambiguous:
                raise _not_confident(res.outputs, by_name)
            warnings.append("no model head stands out: %d tensors qualify, so a freeze without outputs would be "
                            "refused; the best %d are listed" % (len(res.outputs), MAX_INFERRED_OUTPUTS))
            res.outputs = _ranked(res.outputs, by_name)
        if len(res.outputs) > 1 and any(e.claim in (Claim.SINK, Claim.LOOSE_END, Claim.LOSS) for e in res.evidence):
            warnings.append("%d outputs were inferred as graph sinks (%s); name the outputs to choose"
                            % (len(res.outputs), ", ".join(t for t, _ in res.outputs)))
    if inputs:
        res.inputs = [(t, EXPLICIT_INPUT) for t in _once(resolve_names(inputs, graph_def, "inputs"), "inputs", warnings)]
    elif res.inputs is not None:
        # Keep the signature's/collection's inputs only if the outputs use them.
        needed = ancestors(graph_def, [node_of(t) for t, _ in res.outputs])
        res.inputs = [(t, r) for t, r in res.inputs if node_of(t) in needed] or None
    res.warnings = warnings + res.warnings
    return res


def _once(names: List[str], what: str, warnings: List[str]) -> List[str]:
    """Tensor names given more than once (``probs,probs:0``) are one tensor: kept once, with a warning."""
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        twice = [t for t in unique if names.count(t) > 1]
        warnings.append("options.%s names %s more than once; each tensor is kept once" % (what, ", ".join(twice)))
    return unique


def _with_selection_indices(outputs: List[Named], by_name) -> List[Named]:
    """A selection's values come with the indices that say what was selected (top-k)."""
    out: List[Named] = []
    names = {t for t, _ in outputs}
    for t, reason in outputs:
        out.append((t, reason))
        node = by_name.get(node_of(t))
        if node is not None and node.op in _SELECTION_OPS and t.endswith(":0") and "%s:1" % node.name not in names:
            out.append(("%s:1" % node.name, "%s (beside %s)" % (_SELECTION_OPS[node.op], t)))
    return out


_DEFAULT_IDENTITY = re.compile(r"(^|/)Identity(_\d+)?$")


def _by_their_names(outputs: List[Named], graph_def, by_name) -> List[Named]:
    """An output the graph names with an identity nothing reads (``tf.identity(pred, name="output")``
    for the app) is given by that name: the frozen graph keeps it, and the app fetches it."""
    users = consumers(graph_def)
    out: List[Named] = []
    for t, why in outputs:
        named = [u for u in sorted(users.get(node_of(t), ())) if by_name[u].op == "Identity" and by_name[u].input
                 and tensor_name(by_name[u].input[0]) == t and not users.get(u) and not _DEFAULT_IDENTITY.search(u)]
        if len(named) == 1 and named[0] + ":0" not in [o for o, _ in outputs]:
            out.append((named[0] + ":0", "%s; named %s by the graph (an identity of it that nothing reads)"
                        % (why, named[0])))
        else:
            out.append((t, why))
    return out


def _inside_v1_loops(graph_def) -> Set[str]:
    """Nodes inside a control-flow-v1 while loop: reached from an Enter without passing an Exit."""
    enters = [n.name for n in graph_def.node if n.op in LOOP_ENTER_OPS]
    if not enters:
        return set()
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    return reach(enters, lambda name: (u for u in users.get(name, ()) if by_name[u].op not in LOOP_EXIT_OPS))


def _no_outputs(meta, by_name):
    from .errors import FailedPrecondition
    found = candidates(meta)
    if found:
        listing = "; ".join("%s: %s" % (describetensor_name(t, by_name), r) for t, r in found)
        hint = "Candidates: %s. Name the outputs, e.g. outputs=%s" % (listing, found[0][0])
    else:
        hint = "The graph computes nothing from its variables that could be an output; name the outputs."
    return FailedPrecondition("could not infer any output: every sink of the graph is a training, saver, summary "
                              "or bookkeeping op, and no loss reads a tensor of the model. %s" % hint,
                              "ERROR_REASON_NO_OUTPUTS_FOUND", field="options.outputs",
                              candidates=",".join(t for t, _ in found))


_UNSET = object()


def structure_of(meta) -> Optional[rules.Decision]:
    """The training structure's evidence and decision (None: no loss), to share between
    ``candidates`` and ``explain``."""
    return _structure(meta, nodes_by_name(meta.graph_def), training_nodes(meta.graph_def))


# How candidates are listed when the graph does not decide, best first (each a named principle).
CANDIDATE_RULES = (
    Rule("structure-decision", "what the training structure decided, or the predictions it could not choose "
         "between", None),
    Rule("loss-reads", "a prediction a loss reads (one left out as an auxiliary head too)", None),
    Rule("head-op", "a softmax, sigmoid, argmax or top-k computed from data and weights may be a head", None),
    Rule("last-layer", "a network's last layer (no other layer reads it) may be its output", None),
    Rule("model-computation-end", "what is computed from the model's layers and read by no model computation "
         "may be an output", None),
)
_LISTED_BY = {r.name: r for r in CANDIDATE_RULES}


def candidate_records(meta, structure=_UNSET) -> List[Evidence]:
    """Up to 10 tensors that might be the model's outputs, best first, each a CANDIDATE
    record saying why it might be (``CANDIDATE_RULES``): what the structure found
    (predictions, auxiliary heads, the tensors a loss reads), head ops (softmax, argmax,
    top-k), the last layer of each network, then what no model computation reads.
    Training, bookkeeping, shape arithmetic and handles are never candidates."""
    graph_def = meta.graph_def
    by_name = nodes_by_name(graph_def)
    training = training_nodes(graph_def)
    excluded = _excluded(graph_def, by_name, training)
    loss_collection = _loss_collection(meta)
    s = heads.Structure(graph_def, excluded, loss_collection)
    out: List[Evidence] = []
    in_loops = _inside_v1_loops(graph_def)  # (a value per iteration: no output)
    updates = _moving_average_arithmetic(graph_def, by_name)

    def add(tensor, reason, listed_by):
        node = by_name.get(node_of(tensor))
        if (node is not None and node.name not in excluded and node.name not in in_loops and node.name not in updates
                and not (not s.users.get(node.name) and _is_unused_control_flow_output(node, by_name))
                and tensor not in [e.tensor for e in out]
                and len(out) < MAX_INFERRED_OUTPUTS):
            out.append(Evidence(tensor, Claim.CANDIDATE, WEIGHT_OPEN, reason, (node.name,),
                                _LISTED_BY[listed_by].name))
    d = _structure(meta, by_name, training, excluded) if structure is _UNSET else structure
    if d is not None:
        for t, r in d.outputs + d.candidates:
            add(t, r, "structure-decision")
        for e in rules.predictions(d.board) + d.board.of(Claim.AUXILIARY):
            add(e.tensor, "a prediction the loss reads", "loss-reads")
    activations = [n for n in s.order if s.is_activation(n) and n not in excluded]
    for n in activations:
        if by_name[n].op in heads.HEAD_OPS:
            add(n + ":0", "a %s of the model's computation" % by_name[n].op, "head-op")
    model_layers = s.layers - excluded
    in_layers = s._forward(model_layers, lambda n: n not in excluded)
    feeds_a_layer = s.upstream({node_of(i) for n in model_layers for i in s.data_inputs[n]})
    for n in activations:  # the last layer of each network: no layer computes from it
        if n in model_layers and n not in feeds_a_layer:
            add(n + ":0", "the last layer (%s) of a network: no other layer reads it" % by_name[n].op, "last-layer")
    for n in activations:
        if n in in_layers and all(u in excluded for u in s.users.get(n, ())):
            add(n + ":0", "computed from the model's layers and read by no model computation", "model-computation-end")
    return out


def candidates(meta, structure=_UNSET) -> List[Named]:
    """``candidate_records`` as (tensor, reason)."""
    return [(e.tensor, e.why) for e in candidate_records(meta, structure)]


def explain(meta, signature: Optional[str] = None, structure=_UNSET, listed: Optional[List[Evidence]] = None
            ) -> List[Evidence]:
    """Every record the rules make about the graph, best-ranked source first: the
    signature def's, the user collections', the training structure's (for and against)
    and the graph sinks', then what listed the candidates the others say nothing of
    (``listed``: ``candidate_records``' answer, else computed). What ``inspect`` shows
    beside the outputs and candidates."""
    graph_def = meta.graph_def
    by_name = nodes_by_name(graph_def)
    training = training_nodes(graph_def)
    records: List[Evidence] = []
    if signature and signature in meta.signature_def:
        records += _signature_outputs((meta, signature), Board())
    records += _collection_outputs((meta, by_name, training), Board())
    d = _structure(meta, by_name, training) if structure is _UNSET else structure
    if d is not None:
        records += d.board.records
    records += _sink_outputs((graph_def, by_name, training), Board())
    said = {e.tensor for e in records}
    return records + [e for e in (candidate_records(meta, structure) if listed is None else listed)
                      if e.tensor not in said]


def describetensor_name(tensor: str, by_name) -> str:
    """'name (dtype, shape)' from the node's attributes, without importing the graph."""
    node = by_name.get(node_of(tensor))
    dtype, shape = "?", "?"
    if node is not None:
        index = int(tensor.split(":")[1]) if ":" in tensor else 0
        enum = output_dtype_enum(node, index)
        dtype = dtypes.as_dtype(enum).name if enum else "?"
        s = output_shape_proto(node, index)
        if s is not None and not s.unknown_rank:
            shape = "[%s]" % ", ".join(str(d.size) for d in s.dim)
    return "%s (%s, %s)" % (tensor, dtype, shape)


def _ranked(found: List[Named], by_name) -> List[Named]:
    """The best candidates: head ops (softmax, argmax...) first, then graph order."""
    return sorted(found, key=lambda tr: by_name[node_of(tr[0])].op not in heads.HEAD_OPS)[:MAX_INFERRED_OUTPUTS]


def _not_sure(found: List[Named], by_name, why: str):
    from .errors import FailedPrecondition
    ranked = found[:MAX_INFERRED_OUTPUTS]
    listing = "; ".join("%s: %s" % (describetensor_name(t, by_name), r) for t, r in ranked)
    return FailedPrecondition(
        "not sure which tensors are the outputs: %s. Candidates: %s. Name the outputs, e.g. outputs=%s"
        % (why, listing, ranked[0][0]), "ERROR_REASON_OUTPUTS_AMBIGUOUS", field="options.outputs",
        candidates=",".join(t for t, _ in ranked))


def _not_confident(found: List[Named], by_name):
    from .errors import FailedPrecondition
    ranked = _ranked(found, by_name)
    listing = "; ".join("%s: %s" % (describetensor_name(t, by_name), r) for t, r in ranked)
    return FailedPrecondition(
        "no model head stands out: %d tensors qualify as outputs, too many to be the model's outputs. The best "
        "%d: %s. Name the outputs, e.g. outputs=%s" % (len(found), len(ranked), listing,
                                                        ",".join(t for t, _ in ranked[:2])),
        "ERROR_REASON_OUTPUTS_AMBIGUOUS", field="options.outputs",
        candidates=",".join(t for t, _ in ranked))


# The names TensorFlow's Python functions give their ops when the caller gives none (besides
# the op type itself): an author who named nothing gets these.
_PYTHON_DEFAULT_NAMES = frozenset(
    n.replace("_", "").lower() for n in (
        "add", "add_n", "sub", "mul", "truediv", "floordiv", "div", "div_no_nan", "mod", "pow", "neg", "transpose",
        "concat", "stack", "unstack", "strided_slice", "reshape", "squeeze", "split", "matmul", "tensordot",
        "einsum", "where", "cast", "gather", "slice", "pad", "tile", "range", "fill", "sum", "mean", "max", "min",
        "prod", "l2_normalize", "norm", "sigmoid", "softmax", "log_softmax", "argmax", "argmin", "clip_by_value",
        "maximum", "minimum", "one_hot", "zeros_like", "ones_like", "sequence_mask", "bias_add", "flatten",
        "expand_dims", "truncated_normal", "random_normal", "random_uniform", "sqrt", "square", "exp", "log",
        "abs", "tanh", "relu", "elu", "selu", "gelu", "erf", "sign", "floor", "ceil", "round", "pow", "rsqrt",
        "reduce_sum", "reduce_mean", "reduce_max", "logical_and", "logical_or", "logical_not", "equal",
        "not_equal", "greater", "less", "greater_equal", "less_equal", "boolean_mask", "gather_nd", "scatter_nd",
        "topkv2", "dropout", "batchnorm", "moments", "rnn", "while", "cond", "scan", "map", "foldl",
        "identity", "read", "embedding_lookup", "conv2d", "conv1d", "relu6", "leaky_relu", "softplus",
        "cumsum", "cumprod", "reverse", "realdiv", "addv2", "concatv2", "pack", "unpack", "select", "selectv2",
        "batch_matmul", "batchmatmul", "matrix_transpose", "linalg", "shape", "size", "rank", "zeros", "ones",
        "sparse_to_dense", "sparse_tensor_to_dense", "to_dense", "stop_gradient", "check_numerics", "ExpandDims",
        # (tf.compat.v1's casts name their op so: ToInt32, ToFloat)
        "ToInt32", "ToInt64", "ToFloat", "ToDouble", "ToBFloat16", "ToComplex64", "ToComplex128"))


def _default_name(node) -> bool:
    """Whether the node carries the name TensorFlow gives when none is given."""
    last = re.sub(r"_\d+$", "", node.name.rsplit("/", 1)[-1]).lower()
    op = node.op.lower()  # (a versioned op keeps its first name: TensorArray for TensorArrayV3)
    return (last.replace("_", "") == op or last == re.sub(r"v\d+$", "", op)
            or last.replace("_", "") in _PYTHON_DEFAULT_NAMES)


def _named_by_its_scope(node, users) -> bool:
    """A tensor that leaves a scope someone named (``Predictions/Reshape_1``, which nothing in
    ``Predictions`` reads) is named by that scope."""
    if "/" not in node.name:
        return False
    scope, last = node.name.rsplit("/", 1)
    parent = scope.rsplit("/", 1)[-1]
    if re.sub(r"_\d+$", "", parent).lower().replace("_", "") in _PYTHON_DEFAULT_NAMES:
        return False
    return not any(u.startswith(scope + "/") for u in users.get(node.name, ()))


_NEAR = 4
_SHAPE_READS = _SHAPE_OPS | frozenset({"ZerosLike", "OnesLike"})  # (read a tensor's shape, not its values)


def _unnamed_sinks(res: Resolution, by_name):
    """Several graph sinks, one at least with only TensorFlow's default name (``mul_4``), are
    computations nobody used as much as outputs anyone chose: with no training structure to say
    which, not sure. (One sink is the graph's one end; a scope someone named does not name each
    of several ends in it.) Returns (why, candidates) or None."""
    sinks = [e.tensor for e in res.evidence if e.claim is Claim.SINK and not e.against]
    if len(sinks) < 2 or {t for t, _ in res.outputs} - set(sinks):
        return None
    unnamed = [t for t in sinks if _default_name(by_name[node_of(t)])]
    if not unnamed:
        return None
    return ("%d graph sinks (tensors nothing reads), %s with no name of the author's (%s): computations left "
            "unused as much as outputs" % (len(sinks), "one" if len(unnamed) == 1 else "%d" % len(unnamed),
                                            ", ".join(unnamed[:4])), list(res.outputs))


def _unnamed_answer(outputs: List[Named], graph_def, by_name, training, excluded=None):
    """An answer that holds a tensor nobody named, next to a computation its author named,
    is not sure: an author who names the tensors of a computation names the ones they fetch.
    Next to it: up to ``_NEAR`` ops upstream (what it is computed from), or downstream through
    its values (not its shape) to a tensor that reads no other feed (no label: not the loss's
    arithmetic, which TensorFlow's loss functions name). Returns (why, candidates) or None."""
    users = consumers(graph_def)
    unnamed = [t for t, _ in outputs if _default_name(by_name[node_of(t)])
               and not _named_by_its_scope(by_name[node_of(t)], users)]
    if not unnamed:
        return None
    answer = {node_of(t) for t, _ in outputs}
    feeds_of = {}

    def feeds(names):
        key = frozenset(names)
        if key not in feeds_of:
            feeds_of[key] = {n for n in ancestors(graph_def, names) if by_name[n].op in PLACEHOLDER_OPS}
        return feeds_of[key]

    def authored(n):
        node = by_name.get(n)
        if (node is None or n in answer or n in training or node.op in PLACEHOLDER_OPS or node.op in VARIABLE_OPS
                or node.op in ("Const", "ReadVariableOp", "NoOp") or _default_name(node) or _BOOKKEEPING_SCOPES.match(n)):
            return False
        source = by_name.get(node_of(node.input[0].lstrip("^"))) if node.input else None
        if node.op == "Identity" and source is not None and source.op in VARIABLE_OPS:  # (a variable's read)
            return False
        return n not in (excluded() if excluded else _excluded(graph_def, by_name, training))

    named: List[str] = []
    for t in unnamed:
        start = node_of(t)
        for step in (lambda n: [node_of(i.lstrip("^")) for i in by_name[n].input if not i.startswith("^")],
                     lambda n: [m for m in sorted(users.get(n, ())) if by_name[m].op not in _SHAPE_READS]):
            seen, frontier = {start}, [start]
            for _ in range(_NEAR):
                nxt = []
                for n in frontier:
                    for m in step(n):
                        if m in seen or m not in by_name or m in training:
                            continue
                        seen.add(m)
                        nxt.append(m)
                        if authored(m) and m + ":0" not in named:
                            named.append(m + ":0")
                frontier = nxt
    # a tensor downstream that reads another feed (labels) is the loss's, whoever named it
    own = feeds(sorted(answer))
    named = [t for t in named if feeds([node_of(t)]) <= own]
    if not named:
        return None
    why = ("%s %s no name of the graph's author, while the computation next to it has named tensors (%s)"
           % (", ".join(unnamed), "has" if len(unnamed) == 1 else "have", ", ".join(named[:4])))
    return why, [(t, "a tensor the graph names, next to %s" % unnamed[0]) for t in named[:3]] + list(outputs)
