"""The rules that find a trained model's outputs in its training graph, and the one
decision made from their evidence.

Each rule is a named principle (``evidence.Rule``) applied to the graph's facts
(:class:`Facts`: the dependency bitmasks of ``heads.Structure``, the losses and
labels); it adds typed records to a board. Later rules read earlier records by claim.
:func:`decide` reads the board once and answers (the outputs, with the warnings that
say what was left out and why) or leaves the choice open (candidates and the reason
the graph does not decide). No rule knows a framework, a model kind or a layer name.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from .evidence import (LABELLED_CLAIMS, PREDICTION_CLAIMS, WEIGHT_AGAINST, WEIGHT_HEAD, WEIGHT_OPEN,
                       WEIGHT_STRUCTURE, Board, Claim, Evidence, rule)
from .graph import node_of, output_shape_proto, reach, tensor_name
from .heads import GRADIENT_SCOPE, batch_statistic, LOGITS_AND_LABELS_OPS, MATRIX_PRODUCT_OPS, REFINE_PRINCIPLES, Structure, computed_targets_apart, head_op, post_processing
from .oproles import ALIAS_OPS, DATA_SOURCE_OPS, HEAD_OPS, VIEW_OPS, is_random, is_stateful


@dataclass
class Facts:
    """What the rules read: one training graph's structure, its losses and labels."""

    s: Structure
    losses: List[str]
    labels: List[str]
    label_mask: int
    loss_scopes: Set[str]  # top-level scopes of the losses' own computation
    in_loss: Set[str]  # everything the losses read
    loss_values: Set[str]  # what the losses compute with (not only read the shape of)
    training: Set[str]
    unused_control_flow: Callable


def facts(graph_def, excluded: Set[str], training: Set[str], switches: Set[str], loss_collection,
          unused_control_flow) -> Optional[Facts]:
    """The facts of a training graph, or None when it has no loss to go by."""
    s = Structure(computed_targets_apart(_iterator_outputs_apart(graph_def)), excluded, loss_collection)
    losses = s.losses()
    if not losses:
        return None
    labels, label_mask = s.labels(losses, switches)
    loss_scopes = {y.split("/")[0] for y in losses} | {
        n.split("/")[0] for n in s.upstream(losses) if s.bits[n] & label_mask and "/" in n}
    # A scope that holds trained layers is a part of the model that also builds its loss terms, not a loss's own.
    loss_scopes -= {n.split("/")[0] for n in s.layers if "/" in n and s.own_vars(n)}
    return Facts(s, losses, labels, label_mask, loss_scopes, s.upstream(losses), s.value_upstream(losses), training,
                 unused_control_flow)


def _iterator_outputs_apart(graph_def):
    """Each output of a tf.data iterator is its own data source (the features and the labels
    one ``get_next()`` returns): a copy of the graph with one placeholder per output."""
    from .oproles import ITERATOR_GET_NEXT_OPS
    from .rewrite import cut_iterator

    several = [n.name for n in graph_def.node
               if n.op in ITERATOR_GET_NEXT_OPS and len(n.attr["output_types"].list.type) > 1]
    if not several:
        return graph_def
    copy = type(graph_def)()
    copy.CopyFrom(graph_def)
    for name in several:
        cut_iterator(copy, name)
    return copy


# -- the rules, in the order they run ----------------------------------------------------
@rule("loss-meets-model",
      "a loss compares what the model computes with a target: walking up from the loss through what depends on "
      "the labels, the first tensors computed from data and trained weights without labels are the model's "
      "predictions; inside loss arithmetic the walk goes on to where the trained model's tensors enter (see "
      "heads.REFINE_PRINCIPLES); a tensor a metric compares with the labels is the model's output as evaluated")
def loss_meets_model(f: Facts, board: Board) -> List[Evidence]:
    s, found = f.s, []

    def add(record: Evidence) -> None:
        # (one number reduced from a batch, a loss term an average tracks, is no example's prediction)
        # (nor is what computes with no variable at all: a fixed loss network's features of the data)
        if (record.tensor not in [e.tensor for e in found] and not batch_statistic(s, node_of(record.tensor))
                and s.var_bits[node_of(record.tensor)]):
            found.append(record)
    for y in f.losses:
        trained = s.trained_mask(y)
        read = [l for l in f.labels if s.bits[y] & s.bits[l]] or f.labels  # the labels this loss reads
        if s.bits[y] & f.label_mask:
            for p in s.predictions([y], f.label_mask):
                seen_from = s.through_loss_arithmetic(s.through_loss_view(p, f.in_loss), f.in_loss)
                for q in s.leave_loss_scope(s.out_of_op_wrapper(s.through_loss_log(seen_from, f.in_loss)),
                                            f.loss_scopes):
                    metric = s.evaluated_by(q, f.label_mask, f.in_loss, f.training)
                    if metric is not None:
                        add(Evidence(q, Claim.EVALUATED, WEIGHT_STRUCTURE, _evaluated_why(f, metric),
                                     (y, metric), loss=y))
                        continue
                    stops, loss_term = s.refine(node_of(q), trained, f.label_mask)
                    if loss_term and stops and not s.read_beside_the_loss(node_of(q), f.in_loss, f.training):
                        for e in stops:
                            add(_with_loss(e, "%s (inside the loss %s)" % (e.why, y), y))
                    elif (loss_term and not stops and not s.read_beside_the_loss(node_of(q), f.in_loss, f.training)
                          and not s.is_layer(node_of(q))):
                        # a term beside the labelled one that only draws the model's tensors together (a
                        # consistency cost towards a stop_gradient teacher): loss arithmetic, no output
                        add(Evidence(q, Claim.REGULARIZER, WEIGHT_AGAINST, "loss arithmetic left out: %s draws the "
                                     "model's own tensors together (one side held by a stop_gradient) beside what "
                                     "the loss %s compares with %s" % (q, y, ", ".join(read[:3])), (y,), loss=y))
                    else:
                        add(Evidence(q, Claim.PREDICTION, WEIGHT_STRUCTURE, "prediction: the loss %s compares it "
                                     "with %s" % (y, ", ".join(read[:3])), (y,) + tuple(read[:3]), loss=y))
        else:
            # (one number of the whole batch read beside the loss, a correlation fetched to watch, is evaluated,
            # not used: the walk goes on through it to the model)
            stops = s.refine(y, trained, f.label_mask,
                             beside=lambda n: s.is_activation(n) and not batch_statistic(s, n)
                             and s.read_beside_the_loss(n, f.in_loss, f.training, 0))[0]
            for e in _finest(s, sorted(stops, key=lambda e: s.order.index(node_of(e.tensor)))):
                add(_with_loss(e, "%s (the loss %s reads no labels)" % (e.why, y), y))
    found = _not_reshapes_of_others(s, found)
    return (found + _regularizers(f, found) + _unreferenced_terms(f, found) + _fixed_after_others(s, found)
            + _compared_heads(f, found))


def _fixed_after_others(s: Structure, found: List[Evidence]) -> List[Evidence]:
    """A tensor an unlabelled loss reads that is computed from another such tensor with no weight
    of the checkpoint in between (a fixed loss network's features of the model's output, held as
    constants) is the loss's computation, not an output."""
    unlabelled = [e.tensor for e in found if e.claim is Claim.LOSS_INPUT]
    out: List[Evidence] = []
    for t in unlabelled:
        up = s.upstream([node_of(t)])
        before = [o for o in unlabelled if o != t and node_of(o) in up and s.var_bits[node_of(o)] == s.var_bits[node_of(t)]]
        if before:
            out.append(Evidence(t, Claim.REGULARIZER, WEIGHT_AGAINST, "loss arithmetic left out: %s is computed from "
                                "%s with no weight of the checkpoint in between (a fixed loss network)"
                                % (t, before[0]), (node_of(before[0]),)))
    return out


def _unreferenced_terms(f: Facts, found: List[Evidence]) -> List[Evidence]:
    """A loss with no labels that compares a tensor of the model with the data itself, as given
    (a reconstruction with its input), has that data for its reference: a tensor it reads only
    for terms that meet no reference (a rate under a learned density, a prior) is loss arithmetic,
    as a penalty beside a labelled loss is, when only the loss reads it."""
    s = f.s
    if f.label_mask:
        return []
    data = 0
    for k, n in enumerate(s.sources):
        data |= 1 << k
    tensors = [e.tensor for e in found if e.claim in (Claim.PREDICTION, Claim.LOSS_INPUT)]
    compared = [t for t in tensors if s.meets_labels(t, f.in_loss, data)]
    if not compared:
        return []
    out = []
    for t in tensors:
        if t in compared or any(u not in f.in_loss and u not in s.excluded for u in s.users.get(node_of(t), ())):
            continue
        out.append(Evidence(t, Claim.REGULARIZER, WEIGHT_AGAINST, "loss arithmetic left out: the loss compares %s "
                            "with the data it is computed from, and %s with nothing (a rate or prior term)"
                            % (compared[0], t), (node_of(compared[0]),)))
    return out


def _not_reshapes_of_others(s: Structure, found: List[Evidence]) -> List[Evidence]:
    """A tensor a loss reads that is another found tensor in another shape (the generator's
    image flattened for a discriminator) is that tensor: one record for both."""
    nodes = {node_of(e.tensor) for e in found}
    out = []
    for e in found:
        source = node_of(e.tensor)
        while s.by_name[source].op in ALIAS_OPS and s.data_inputs[source]:
            source = node_of(s.data_inputs[source][0])
            if source in nodes:
                break
        if source == node_of(e.tensor) or source not in nodes:
            out.append(e)
    return out


def _compared_heads(f: Facts, found: List[Evidence]) -> List[Evidence]:
    """A prediction the loss also compares through a head computed from it (the logits of a
    cross-entropy beside the sigmoid of a dice term): the head stands for it."""
    s, tensors = f.s, [e.tensor for e in found if e.claim in LABELLED_CLAIMS]
    out: List[Evidence] = []
    for t in tensors:
        source = _head_of(s, t)
        for p in tensors:
            if source and p != t and node_of(p) == source:
                out.append(Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "the loss also compares the head %s computed "
                                    "from it, which stands for it" % t, (node_of(t),)))
    return out


def _head_of(s: Structure, tensor: str) -> str:
    """The node a head op (softmax, sigmoid...) ``tensor`` is computed from (through reshapes), else ''."""
    base = node_of(tensor)
    if s.by_name[base].op not in HEAD_OPS or not s.data_inputs[base]:
        return ""
    source = node_of(s.data_inputs[base][0])
    while s.by_name[source].op in ALIAS_OPS and s.data_inputs[source]:
        source = node_of(s.data_inputs[source][0])
    return source


def _regularizers(f: Facts, found: List[Evidence]) -> List[Evidence]:
    """Records against the tensors a loss reads that add no layer of their own to what
    the other predictions compute, that only the loss reads and that no other prediction
    is computed from: loss arithmetic on the model, not an output. Either computed from
    another prediction (an entropy bonus on the logits), or from features the model
    computes further layers from (an activity penalty on the trunk); a part of a last
    layer's output (a mixture density head's weights, means and scales) is a prediction."""
    s = f.s
    tensors = [e.tensor for e in found if e.claim in (Claim.PREDICTION, Claim.LOSS_INPUT)]
    kind = {e.tensor: e.claim for e in reversed(found)}
    if len(tensors) < 2:
        return []
    up = {t: s.upstream([node_of(t)]) for t in tensors}
    out: List[Evidence] = []
    for t in tensors:
        others = [o for o in tensors if o != t and o not in [e.tensor for e in out]]
        if not others or any(u not in f.in_loss and u not in s.excluded for u in s.users.get(node_of(t), ())):
            continue
        beside: Set[str] = set()
        for o in others:
            beside |= up[o]
        if node_of(t) in beside:  # the model computes another prediction from it (a VAE's latent mean) ...
            labelled = [o for o in others if node_of(t) in up[o] and s.meets_labels(o, f.in_loss, f.label_mask)]
            if (not labelled or kind[t] is not Claim.PREDICTION  # (a network that scores it decides: critic-networks)
                    or not _penalised_only(f, t, {node_of(o) for o in others})):
                continue
            # ... unless that one is compared with labels and no label reaches this one but through it: a
            # penalty on what the model computes the compared prediction from (generated weights)
            out.append(Evidence(t, Claim.REGULARIZER, WEIGHT_AGAINST,
                                "loss arithmetic left out: %s is what %s is computed from, and the loss compares it "
                                "with no labels (a penalty on the model's tensors)" % (t, labelled[0]),
                                (node_of(labelled[0]),)))
            continue
        if _head_of(s, t) in [node_of(o) for o in others]:  # a head the loss compares too (_compared_heads)
            continue
        computed_from_another = any(node_of(o) in up[t] for o in others)  # (a sum of the probabilities)
        data = 0
        for o in others:
            data |= s.bits[node_of(o)]
        if s.bits[node_of(t)] & ~data & ~f.label_mask:
            continue  # it computes with data no other prediction reads: the model's computation, not arithmetic on it
        if not computed_from_another and s.meets_labels(t, f.in_loss, f.label_mask):
            continue  # compared with the labels itself
        if not computed_from_another and not s.from_features(t):
            continue  # a part of a last layer's output, as its siblings are (a mixture's weights beside its means)
        if s.layer_count(up[t] - beside) == 0 and s.layer_count(up[t]) > 0:
            out.append(Evidence(t, Claim.REGULARIZER, WEIGHT_AGAINST,
                                "loss arithmetic left out: %s adds no layer to what %s compute%s, and only the loss "
                                "reads it (a penalty or bonus on the model's tensors)"
                                % (t, ", ".join(others[:3]), "s" if len(others) == 1 else ""),
                                tuple(node_of(o) for o in others[:3])))
    return out


def _penalised_only(f: Facts, tensor: str, through: Set[str]) -> bool:
    """No labels meet ``tensor`` on its way down the loss, but through ``through`` (another
    prediction): the loss only penalises it."""
    s = f.s
    seen = reach([node_of(tensor)], lambda n: (u for u in s.users.get(n, ()) if u in f.in_loss and u not in through))
    return not any(s._as_given(node_of(i), f.label_mask) for n in seen for i in s.data_inputs.get(n, ()))


def _finest(s: Structure, stops: List[Evidence]) -> List[Evidence]:
    """Parts of one tensor that one unlabelled loss reads each (its left and right channels) are
    that tensor; and of the model's tensors the loss reads (its trained last layers), one that
    another of the same kind (rank and channels) is computed from through layers (a coarse scale a
    decoder upsamples into the next: a pyramid supervised at every scale) is a step towards that
    other. (A VAE's latent mean, which its reconstruction is computed from, is of another kind.)"""
    others = [e for e in stops if e.claim is not Claim.LOSS_INPUT]  # (copies, one computation's ends: as found)
    stops = [e for e in stops if e.claim is Claim.LOSS_INPUT]
    whole: Dict[str, List[Evidence]] = {}
    for e in stops:
        n = node_of(e.tensor)
        while s.by_name[n].op in VIEW_OPS and s.data_inputs[n]:
            n = node_of(s.data_inputs[n][0])
        whole.setdefault(n, []).append(e)
    merged: List[Evidence] = []
    for n, parts in whole.items():
        if len(parts) > 1 and all(node_of(e.tensor) != n for e in parts):
            merged.append(Evidence(n + ":0", parts[0].claim, parts[0].weight, "%s, whose parts (%s) the loss reads"
                                   % (parts[0].why, ", ".join(e.tensor for e in parts)), parts[0].nodes, parts[0].rule))
        else:
            merged += parts
    up = {node_of(e.tensor): s.value_upstream([node_of(e.tensor)]) for e in merged}

    def same_kind(n, m):  # (one output at two scales: the same rank and channels, other sizes)
        a, b = output_shape_proto(s.by_name[n], 0), output_shape_proto(s.by_name[m], 0)
        return (a is not None and b is not None and not a.unknown_rank and not b.unknown_rank and a.dim and b.dim
                and len(a.dim) == len(b.dim) and a.dim[-1].size == b.dim[-1].size >= 0)

    def step_towards(n, m):  # m is computed from n through layers of its own
        return m != n and n in up[m] and bool(s.layers & (up[m] - up[n])) and same_kind(n, m)
    return [e for e in merged if not any(step_towards(node_of(e.tensor), m) for m in up)] + others


def _with_loss(e: Evidence, why: str, loss: str) -> Evidence:
    return Evidence(e.tensor, e.claim, e.weight, why, (loss,) + e.nodes, e.rule, loss)


def _evaluated_why(f: Facts, metric: str) -> str:
    return "the output the training evaluates: the metric %s compares it with %s" % (metric, ", ".join(f.labels[:3]))


@rule("replicas",
      "copies of one network (the same variables, each on its own data under its own loss: data-parallel towers) "
      "compute one function; the first copy is the model, the others are not outputs")
def replicas(f: Facts, board: Board) -> List[Evidence]:
    kept: List[Evidence] = []
    out: List[Evidence] = []
    for e in board.of(*PREDICTION_CLAIMS):
        twin = next((k for k in kept if e.claim is not Claim.COPY and k.claim is not Claim.COPY
                     and f.s._copies([k.tensor, e.tensor], f.label_mask)), None)
        if twin is not None:
            out.append(Evidence(e.tensor, Claim.REPLICA, WEIGHT_AGAINST,
                                "replica left out: %s computes what %s does (the same variables, its own data and "
                                "loss)" % (e.tensor, twin.tensor), (node_of(twin.tensor), e.loss), loss=e.loss))
        else:
            kept.append(e)
    return out


@rule("deep-supervision",
      "a head that leaves the main network's trunk early, with its own layers a small part (under a third) of "
      "what another head compared with the same labels computes from the shared trunk, is a training aid "
      "(Inception's AuxLogits), not the deployed head")
def deep_supervision(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    recomputed = _recomputed(board)
    standing = _standing_predictions(board, Claim.AUXILIARY, Claim.REGULARIZER)
    labelled = [e.tensor for e in standing if e.claim in LABELLED_CLAIMS and e.tensor not in recomputed]
    if len(labelled) < 2:
        return []
    up = {p: s.upstream([node_of(p)]) for p in labelled}
    labels = {p: s.compared_labels(p, f.in_loss, f.label_mask) for p in labelled}
    out: List[Evidence] = []
    for p in labelled:
        for o in labelled:
            if o == p or not (up[p] & up[o]) or not labels[p] & labels[o]:
                continue
            own, other = s.layer_count(up[p] - up[o]), s.layer_count(up[o] - up[p])
            if other >= 3 * max(own, 1) and s.layer_count(up[p] & up[o]) > own:
                out.append(Evidence(p, Claim.AUXILIARY, WEIGHT_AGAINST,
                                    "auxiliary head left out: %s (its own layers are few next to the main head's); "
                                    "name it in options.outputs to keep it" % p, (node_of(o),)))
                break
    return out


@rule("inference-branch",
      "a sink computed with the trained weights by layers no loss reads (greedy decoding, a sampler tower, an "
      "export head) is the deployed computation: it supersedes the training-time predictions it recomputes (those "
      "whose variables it computes with) and what unlabelled losses read (a discriminator's scores); predictions "
      "compared with labels that it does not recompute stand beside it; a sink computed through a layer no "
      "optimizer trains and no loss reads (a pre-training head kept in a fine-tuning graph) is left over, not deployed; "
      "what only metrics read (an accuracy against the labels, through its argmax) ends such a branch as a sink does; "
      "a layer only a weight penalty reads learned nothing; of branches computing with the same weights, one that "
      "draws random numbers no input switches off is a sampled estimate of the deterministic one; several "
      "branches that are separate computations are each possibly the deployment: the graph does not say which")
def inference_branch(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    preds = [e.tensor for e in predictions(board)]
    labelled = {p for p in preds if s.compared_labels(p, f.in_loss, f.label_mask)}
    downstream = s._forward([node_of(p) for p in preds])
    trained = _all_trained(f)
    own_layers = s.layers - f.in_loss
    learned = _learned(f) | s._moving_averages() if trained != -1 else -1
    untrained = {n for n in own_layers if trained != -1 and not s.own_vars(n) & learned}
    # One forward pass (linear in the graph): what layers outside the loss's inputs compute.
    after_own_layers = s._forward(own_layers - untrained, lambda n: n not in f.in_loss)
    after_untrained = s._forward(untrained, lambda n: n not in f.in_loss)
    sinks = [n for n in s.effective_sinks(f.training) + s.evaluated_ends(f.label_mask, f.in_loss, f.training)
             if n not in downstream and s.is_activation(n) and not s.bits[n] & f.label_mask and not batch_statistic(s, n)
             and not f.unused_control_flow(s.by_name[n])]
    branches = [n + ":0" for n in sinks if n in after_own_layers and n not in after_untrained]
    branches = _collected_steps(s, branches)
    before, branches = _before_adaptation(f, preds, branches)
    before += _sampled(f, branches)
    branches = [b for b in branches if b not in {e.tensor for e in before}]
    out = [Evidence(n + ":0", Claim.UNTRAINED_BRANCH, WEIGHT_AGAINST,
                    "left out: %s is computed by layers no optimizer trains (%s); name it in options.outputs to keep it"
                    % (n, ", ".join(sorted(untrained & s.upstream([n]))[:3])), tuple(sorted(untrained & s.upstream([n]))[:3]))
           for n in sinks if n in after_untrained] + before
    if not branches:
        return out
    why = "inference branch: computed with the trained weights by layers the loss (%s) never reads" % ", ".join(
        f.losses[:3])
    computes_with = 0
    for b in branches:
        computes_with |= s.var_bits[node_of(b)]
    steady = not any(_draws(s, b) for b in branches)  # (the branches draw no random numbers)
    out += [Evidence(t, Claim.INFERENCE_BRANCH, WEIGHT_STRUCTURE, why, tuple(f.losses[:3])) for t in branches]
    out += _one_computation(s, branches) or _taps(s, branches)
    out += [Evidence(g.tensor, Claim.SUPERSEDED, WEIGHT_AGAINST, "a training-time sample: the graph has an inference "
                     "branch (%s) computing with its variables (a sampler tower)" % ", ".join(branches[:3]),
                     tuple(node_of(b) for b in branches[:3]))
            for g in board.of(Claim.GENERATED) if not s.var_bits[node_of(g.tensor)] & ~computes_with]
    out += [Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "a training-time prediction: the graph has an inference "
                     "branch (%s) computing with its variables" % ", ".join(branches[:3]),
                     tuple(node_of(b) for b in branches[:3]))
            for p in preds if not s.var_bits[node_of(p)] & ~computes_with or p not in labelled
            or (s.var_bits[node_of(p)] & computes_with and steady and _draws(s, p))]
    return out


def _collected_steps(s: Structure, branches: List[str]) -> List[str]:
    """A branch end that is one computation repeated (the same op in a scope entered again at each
    step: an unrolled recurrent step's mean) where another end collects repeats of it (a forecast stacking
    its horizon's steps) is a step of that end: the repeats it leaves out (the conditioning
    range's) are the unroll's by-products, not outputs."""
    def key(n):  # (TensorFlow names a scope entered again deepar_1, deepar_2: one computation, repeated)
        return s.by_name[n].op, re.sub(r"_\d+(?=/|$)", "", n)
    ends = {node_of(b) for b in branches}
    collected_keys = set()
    for c in ends:  # (repeated: the same computation at two steps at least)
        counts = collections.Counter(key(m) for m in s.upstream([c]) if m not in ends and s.var_bits[m])
        collected_keys |= {k for k, count in counts.items() if count > 1}
    return [b for b in branches if key(node_of(b)) not in collected_keys]


def _learned(f: Facts) -> int:
    """The variables a loss computes with together with data: what its gradients teach. A
    variable the loss reads only on its own (a weight penalty's l2_loss) is pulled towards zero,
    never taught by an example: a layer applying only such weights (a layer whose output no
    other layer reads, kept in the graph by the code that builds it) is no trained branch."""
    s = f.s
    mask = 0
    for n in f.in_loss:
        if s.bits.get(n):
            for i in s.data_inputs.get(n, ()):
                m = node_of(i)
                # weights applied to the data (read, or computed from variables: a sampled weight), not a
                # penalty reduced from them (an l2_loss, a KL term) that the loss adds to the data's terms
                if s.is_weight(m) and not any(s.by_name[u].op in _PENALTY_REDUCTIONS for u in reach(
                        [m], lambda x: (node_of(j) for j in s.data_inputs.get(x, ()) if s.is_weight(node_of(j))))):
                    mask |= s.var_bits[m]
    return mask


_PENALTY_REDUCTIONS = frozenset({"L2Loss", "Sum", "Mean", "Prod", "Max", "Min", "AddN"})


def _one_computation(s: Structure, branches: List[str]) -> List[Evidence]:
    """Several sinks of one inference computation, none computed by a layer the others are not
    (an unrolled decoder's ids, its unused logits and the next input it prepared after its last
    step): each may be an output or a by-product, and the graph does not say which."""
    if len(branches) < 2:
        return []
    up = {t: s.upstream([node_of(t)]) for t in branches}
    for b in branches:
        others: Set[str] = set()
        for t in branches:
            if t != b:
                others |= up[t]
        if s.layer_count(up[b] - others):
            return []
    return [Evidence(t, Claim.ONE_COMPUTATION, WEIGHT_OPEN, "%s is one of %d ends of one inference computation "
                     "(%s), none computed by a layer the others are not: which are outputs and which by-products "
                     "is not in the graph" % (t, len(branches), ", ".join(branches[:3])),
                     tuple(node_of(o) for o in branches[:3] if o != t)) for t in branches]


def _before_adaptation(f: Facts, preds: List[str], branches: List[str]) -> Tuple[List[Evidence], List[str]]:
    """A prediction computed with weights the model adapts by gradients of its own (MAML's inner
    steps) is the adapted model's; a branch that computes with the same variables and no such
    gradient is the model before adaptation (a logged baseline), not the deployed computation."""
    s = f.s
    adapting = {n for n in s.order if GRADIENT_SCOPE.search(n) and n not in f.training and n not in s.excluded}
    if not adapting:
        return [], branches
    adapted = [p for p in preds if s.upstream([node_of(p)]) & adapting]
    if not adapted:
        return [], branches
    weights = 0
    for p in adapted:
        weights |= s.var_bits[node_of(p)]
    before = [b for b in branches if s.var_bits[node_of(b)] & weights and not s.upstream([node_of(b)]) & adapting]
    return ([Evidence(b, Claim.UNTRAINED_BRANCH, WEIGHT_AGAINST, "left out: %s computes with the variables %s is "
                      "computed with after the model adapts them (by gradients of its own), but before: the model "
                      "before adaptation; name it in options.outputs to keep it" % (b, adapted[0]), (node_of(adapted[0]),))
             for b in before], [b for b in branches if b not in before])


def _sampled(f: Facts, branches: List[str]) -> List[Evidence]:
    """Of inference branches computing with the same weights, one that draws random numbers no
    input switches off (an average over sampled latents) estimates what the other computes
    without drawing (the decoder of the mean): the deterministic one is the prediction a caller
    can rely on; the sampled one is an evaluation's estimate."""
    s = f.s
    if len(branches) < 2:
        return []
    drawn = {b: _draws(s, b) for b in branches}
    drawn = {b: ops for b, ops in drawn.items() if ops}
    steady = [b for b in branches if b not in drawn]
    if not drawn or not steady:
        return []
    weights = 0
    for b in steady:
        weights |= s.var_bits[node_of(b)]
    return [Evidence(b, Claim.UNTRAINED_BRANCH, WEIGHT_AGAINST, "left out: %s draws random numbers (%s) that %s, "
                     "computed with the same weights, does without: a sampled estimate of a deterministic "
                     "prediction; name it in options.outputs to keep it" % (b, drawn[b][0], steady[0]),
                     (node_of(steady[0]),))
            for b in drawn if s.var_bits[node_of(b)] & weights]


def _draws(s: Structure, tensor: str) -> List[str]:
    """The random draws ``tensor`` is computed from that no input switches off: not one inside a
    cond a flag decides, nor one a rate or keep probability scales away (a dropout's)."""
    scalar = 0  # the inputs a switch is fed by: a training flag, a dropout's keep probability
    for k, n in enumerate(s.sources):
        shape = s.by_name[n].attr["shape"].shape if "shape" in s.by_name[n].attr else None
        if shape is not None and not shape.unknown_rank and not shape.dim:
            scalar |= 1 << k

    def switched(n):
        if s.bits[n] & scalar:
            return True
        return any(s.bits[node_of(i)] & scalar for u in s.users.get(n, ()) for i in s.data_inputs[u]
                   if node_of(i) != n)
    return sorted(n for n in s.upstream([node_of(tensor)])
                  if is_random(s.by_name[n].op) and is_stateful(s.by_name[n].op) and not switched(n))


def _taps(s: Structure, branches: List[str]) -> List[Evidence]:
    """An end of an inference computation that another end computes on from with layers of its
    own (a feature extractor's representation, beside the projection the same function also
    returned): the user may deploy the tap, the end, or both, and the graph does not say which.
    The tap is listed first: it is what was taken out of the computation on purpose."""
    up = {t: s.upstream([node_of(t)]) for t in branches}
    pairs = [(b, t) for b in branches for t in branches
             if b != t and node_of(b) not in up[t] and not s.layer_count(up[b] - up[t]) and s.layer_count(up[t] - up[b])
             and up[b] - {node_of(b)} <= up[t] | {n for n in up[b] if s.by_name[n].op in ALIAS_OPS}]
    if not pairs:
        return []
    listed: List[str] = []
    for b, t in pairs:
        listed += [x for x in (b, t) if x not in listed]
    b, t = pairs[0]
    return [Evidence(x, Claim.ONE_COMPUTATION, WEIGHT_OPEN, "%s is taken out of the inference computation that "
                     "%s computes on from with layers of its own: the deployed output may be either, or both, and "
                     "the graph does not say which" % (b, t), (node_of(b), node_of(t))) for x in listed]


def _all_trained(f: Facts) -> int:
    """The variables some optimizer (or moving-average update) changes; -1 when unknown."""
    mask = 0
    for y in f.losses:
        m = f.s.trained_mask(y)
        if m == -1:
            return -1
        mask |= m
    return mask


@rule("generated-samples",
      "what one network computes and feeds to another network where that network also reads data as given (a "
      "generator's samples beside the real images a discriminator scores, an actor's action beside the replayed one "
      "a critic scores) is what the first network is deployed for: its output; the network reading both, and all "
      "it computes, serve the training")
def generated_samples(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    applied: Dict[int, List[str]] = {}  # a layer's weights -> the layers applying them
    for n in s.order:
        if n in s.layers and n not in f.training and n not in s.excluded:
            w = s.own_vars(n)
            if w:
                applied.setdefault(w, []).append(n)
    found: Dict[str, Tuple[str, str]] = {}  # a generated sample -> (the layer reading it, the one reading data)
    critic = 0  # the variables of the networks that read both
    trained = _all_trained(f)
    masks = [s.trained_mask(y) for y in f.losses]
    moving = s._moving_averages()  # (every loss's mask holds them: no optimizer trains them)
    for w, layers in applied.items():
        if len(layers) < 2 or trained == -1 or not w & trained:
            continue  # (a fixed network scoring the output beside its target is the loss's: scored-by-fixed-network)
        fed = {l: [i for i in s.data_inputs[l] if not s.is_weight(node_of(i))] for l in layers}
        given = [l for l in layers if fed[l] and all(not s.var_bits[node_of(i)] and s.bits[node_of(i)] for i in fed[l])]
        if not given:
            continue
        data = 0
        for l in given:
            for i in fed[l]:
                data |= s.bits[node_of(i)]
        for l in layers:
            if l in given:
                continue
            for i in fed[l]:
                v = s.var_bits[node_of(i)]
                if not v or v & w or node_of(i) in f.training:
                    continue
                if not any(m & w and not m & v & ~moving for m in masks):
                    continue  # one objective trains both: one model applying its weights twice, not a critic
                samples = _samples_in(s, i)
                beside = 0  # what the sample is fed with (the condition a pix2pix critic also reads)
                assembled = s.by_name[node_of(i)].op in ("ConcatV2", "Concat", "Pack")
                for j in s.data_inputs[node_of(i)] if assembled else ():
                    if tensor_name(j) not in samples:
                        beside |= s.bits[node_of(j)]
                for t in samples:
                    if s.bits[node_of(t)] & data & ~beside:
                        continue  # computed from the very data it stands in for (an interpolate of real and fake)
                    if t not in found:
                        found[t] = (l, given[0])
                        for m in masks:
                            if m & w and not m & v & ~moving:
                                critic |= m & ~moving
    # a sample that is also what a loss compares with labels, or what the model computes such a prediction on
    # from (features a domain critic scores), is the model's own computation: the other rules answer for it
    labelled = [e.tensor for e in board.of(Claim.PREDICTION)]
    found = {t: v for t, v in found.items()
             if not any(node_of(t) in s.upstream([_unaliased(s, node_of(p))]) or _unaliased(s, node_of(t)) ==
                        _unaliased(s, node_of(p)) for p in labelled)}
    if not found:
        return []
    out: List[Evidence] = []

    def allowed(n):
        return not s.bits[n] & f.label_mask and n not in s.excluded and n not in f.in_loss and not s.var_bits[n] & critic
    evaluated = s.evaluated_ends(f.label_mask, f.in_loss, f.training)
    ends = post_processing(s, list(found), allowed, f.training, f.unused_control_flow, evaluated)
    for t, (l, g) in found.items():
        why = "generated: computed by one network and fed to another (%s) where it also reads data as given (%s)" % (l, g)
        answers = ends.get(t) or s.heads_after(t, f.label_mask, f.loss_scopes, f.loss_values) or [t]
        out += [Evidence(a, Claim.GENERATED, WEIGHT_STRUCTURE, why if a == t else "%s, then %s: %s" % (
            "end of the inference computation after the generated %s" % t, a, why), (l, g)) for a in answers]
    # what the scoring networks compute (their predictions, what only they read) serves the training
    scored = [e.tensor for e in predictions(board)] + [n + ":0" for n in s.effective_sinks(f.training)]
    out += [Evidence(t, Claim.CRITIC, WEIGHT_AGAINST, "left out: %s is computed by a network that scores the "
                     "generated %s beside data" % (t, ", ".join(list(found)[:2])), tuple(v[0] for v in found.values()))
            for t in dict.fromkeys(scored) if s.var_bits[node_of(t)] & critic and t not in found
            and not board.against(t, Claim.CRITIC)]
    return out


def _unaliased(s: Structure, name: str) -> str:
    while s.by_name[name].op in ALIAS_OPS and s.data_inputs[name]:
        name = node_of(s.data_inputs[name][0])
    return name


def _samples_in(s: Structure, tensor: str) -> List[str]:
    """The tensors computed with weights that ``tensor`` assembles (a concat with the data)."""
    node = s.by_name[node_of(tensor)]
    if node.op in ("ConcatV2", "Concat", "Pack"):
        found: List[str] = []
        for i in s.data_inputs[node.name]:
            if s.var_bits[node_of(i)] and not s.is_weight(node_of(i)):
                found += [t for t in _samples_in(s, i) if t not in found]
        return found or [tensor_name(tensor)]
    return [tensor_name(tensor)]


@rule("critic-networks",
      "of networks trained by optimizers with no variable in common, one that computes a prediction from another's "
      "output, while the other computes none from it (a GAN's discriminator scoring the generator's samples, a "
      "domain critic reading the features), is that network's critic, a training aid; what a critic scores inside "
      "the model it scores, when the model computes its predictions on from it (the features), is no output either; "
      "one compared with the labels the other is compared with (a temperature fitted to the logits) is not its "
      "critic but its next stage, whose prediction supersedes the other's")
def critic_networks(f: Facts, board: Board) -> List[Evidence]:
    s, preds = f.s, predictions(board)
    networks = _disjoint_networks({_optimized(s, e.loss) for e in preds})
    if len(networks) < 2:
        return []
    own = {g: [e for e in preds if _optimized(s, e.loss) & g] for g in networks}

    def reads(g, h):  # a prediction of g is computed from what network h computes
        return any(s.var_bits[node_of(e.tensor)] & h for e in own[g])

    def labels(g):
        mask = 0
        for e in own[g]:
            mask |= s.compared_labels(e.tensor, f.in_loss, f.label_mask)
        return mask
    pairs = [(g, h) for g in networks for h in networks if g != h and reads(g, h) and not reads(h, g)]

    def scores_an_output(g, h):  # what g computes from h passes through a prediction of h (a sample, an action)
        up = s.upstream([node_of(e.tensor) for e in own[g]])
        return any(node_of(e.tensor) in up for e in own[h])

    def fed_labels(g):  # compared with labels fed to the graph, not made in it (a GAN's ones_like)
        mask = labels(g)
        return any(mask & (1 << i) and s.by_name[src].op in DATA_SOURCE_OPS for i, src in enumerate(s.sources))
    # a network that compares what it computes from another's output with the labels that other is
    # compared with (a temperature fitted to the classifier's logits) is its next stage, not its critic
    stages = [(g, h) for g, h in pairs if labels(g) and not labels(g) & ~labels(h)]
    # A network that reads another's features (not its predictions) and is compared with labels of its
    # own that the user feeds may as well be a new head trained on them (fine-tuning a trunk): not a critic;
    # the networks then stand side by side (separately-trained-networks)
    critics = {g for g, h in pairs if (g, h) not in stages and (scores_an_output(g, h) or not fed_labels(g))}
    out = [Evidence(e.tensor, Claim.SUPERSEDED, WEIGHT_AGAINST, "the model before its next stage: %s is computed "
                    "from it by a network trained apart (the loss %s) against the same labels (a calibration)"
                    % (own[g][0].tensor, own[g][0].loss), (node_of(own[g][0].tensor),))
           for g, h in stages for e in own[h]]
    out += [Evidence(e.tensor, Claim.CRITIC, WEIGHT_AGAINST, "left out: %s is computed by a network trained apart "
                    "(the loss %s) from another network's output, which it scores" % (e.tensor, e.loss), (e.loss,),
                    loss=e.loss)
           for g in critics for e in own[g]]
    scored = s.upstream([node_of(c.tensor) for g in critics for c in own[g]])
    for h in networks:
        if h in critics:
            continue
        for e in own[h]:
            if e.claim in LABELLED_CLAIMS or node_of(e.tensor) not in scored:
                continue
            if any(o.tensor != e.tensor and node_of(e.tensor) in s.upstream([node_of(o.tensor)]) for o in own[h]):
                out.append(Evidence(e.tensor, Claim.CRITIC, WEIGHT_AGAINST, "left out: %s is what a network trained "
                                    "apart scores, and the model computes its predictions on from it" % e.tensor,
                                    (e.loss,), loss=e.loss))
    return out


@rule("gradient-reversal",
      "a head that reads the model's features through a gradient reversal (stop_gradient((1 + l) * f) - l * f: the "
      "value of f, its gradient negated) is an adversary the training pits against those features (a domain "
      "classifier), not an output, when another prediction reads them as they are")
def gradient_reversal(f: Facts, board: Board) -> List[Evidence]:
    s, preds = f.s, predictions(board)
    reversals = {n: r for n in s.order for r in [_reversed(s, n)] if r}
    if not reversals or len(preds) < 2:
        return []
    out = []
    for e in preds:
        through = [n for n in reversals if n in s.upstream([node_of(e.tensor)])]
        if not through:
            continue
        features = reversals[through[0]]
        if any(o is not e and features in s.upstream([node_of(o.tensor)])
               and not any(n in s.upstream([node_of(o.tensor)]) for n in reversals) for o in preds):
            out.append(Evidence(e.tensor, Claim.CRITIC, WEIGHT_AGAINST, "left out: %s reads the model's features (%s) "
                                "through a gradient reversal (%s): an adversary the training pits against them"
                                % (e.tensor, features, through[0]), (through[0],), loss=e.loss))
    return out


def _reversed(s: Structure, name: str) -> Optional[str]:
    """The tensor ``name`` passes on with its gradient negated (a gradient reversal written with a
    stop_gradient: sg(a * f) - b * f, or sg(a * f) + (-(b * f))), else None."""
    node = s.by_name[name]
    if node.op not in ("Sub", "Add", "AddV2") or len(s.data_inputs[name]) != 2:
        return None
    a, b = (node_of(i) for i in s.data_inputs[name])
    if s.by_name[b].op == "StopGradient" and node.op != "Sub":
        a, b = b, a
    if s.by_name[a].op != "StopGradient" or not s.data_inputs[a]:
        return None
    if node.op != "Sub":
        if s.by_name[b].op != "Neg" or not s.data_inputs[b]:
            return None
        b = node_of(s.data_inputs[b][0])

    def scaled(n):  # f of f, k * f, -f
        while s.by_name[n].op in ("Mul", "Neg", "Identity"):
            acts = [node_of(i) for i in s.data_inputs[n] if s.is_activation(node_of(i))]
            if len(acts) != 1:
                break
            n = acts[0]
        return n
    fa, fb = scaled(node_of(s.data_inputs[a][0])), scaled(b)
    return fa if fa == fb and s.is_activation(fa) else None


@rule("separately-trained-networks",
      "networks trained by optimizers with no variable in common (the generator and the discriminator of a GAN "
      "whose critic reads no output of the other) are separate models; which one is deployed is not in the graph "
      "(optimizers sharing variables train one network); unless the graph joins their predictions in one "
      "inference computation no loss reads (an ensemble's average): then that is the deployed model")
def separately_trained_networks(f: Facts, board: Board) -> List[Evidence]:
    preds = predictions(board)
    networks = _disjoint_networks({_optimized(f.s, e.loss) for e in preds})
    if len(networks) < 2:
        return []
    if _joined(f, preds):
        return []
    return [Evidence(e.tensor, Claim.SEPARATELY_TRAINED, WEIGHT_OPEN, e.why, (e.loss,), loss=e.loss) for e in preds]


def _joined(f: Facts, preds: List[Evidence]) -> bool:
    """An end of the inference computation (a sink, or what only metrics read) that every
    prediction reaches outside the losses: the networks' predictions are combined (averaged)."""
    s = f.s
    ends = set(s.effective_sinks(f.training)) | set(s.evaluated_ends(f.label_mask, f.in_loss, f.training))

    def allowed(n):
        return not s.bits[n] & f.label_mask and n not in s.excluded and n not in f.in_loss
    reached = [s._forward([node_of(e.tensor)], allowed) & ends for e in preds]
    return bool(reached) and bool(set.intersection(*reached))


@rule("inference-ends",
      "computation the loss never reads that goes on after a prediction beyond heads and reshapes (box decoding "
      "and non-max suppression, CTC decoding, a selection) is the inference computation: its ends are the "
      "outputs, every output of a multi-output end, with the heads it decides from without carrying their values "
      "on (the probabilities a threshold reads)")
def inference_ends(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    preds = [e.tensor for e in predictions(board)]

    def allowed(n):
        return not s.bits[n] & f.label_mask and n not in s.excluded and n not in f.in_loss
    out: List[Evidence] = []
    # a score the loss reduces that the graph also computes on from (an anomaly score) is kept as a head is
    scores = {e.tensor for e in predictions(board) if e.rule == "computed-on-beside-the-loss"}
    evaluated = s.evaluated_ends(f.label_mask, f.in_loss, f.training)
    for p, ends in post_processing(s, preds, allowed, f.training, f.unused_control_flow, evaluated).items():
        why = "end of the inference computation after %s (the loss never reads it)" % p
        out += [Evidence(t, Claim.INFERENCE_END, WEIGHT_HEAD, why, (node_of(p),), follows=p) for t in ends]
        if ((head_op(s, node_of(p)) in HEAD_OPS or (p in scores and _thresholds(s, p, ends)))
                and not any(s.carries(node_of(p), node_of(t)) for t in ends)):
            # the prediction is itself a head (probabilities a hand-written cross-entropy reads) that the
            # inference computation decides from (a threshold): it stays beside the decision
            out.append(Evidence(p, Claim.INFERENCE_END, WEIGHT_HEAD, "%s the inference computation decides from "
                                "(%s) without carrying its values on"
                                % ("score" if p in scores else "prediction head (%s)" % head_op(s, node_of(p)),
                                   ", ".join(ends[:3])), (node_of(p),), follows=p))
        for h in s.heads_after(p, f.label_mask, f.loss_scopes, f.loss_values):
            if h not in ends and not any(s.carries(node_of(h), node_of(t)) or s.computes_on(node_of(h), node_of(t), allowed)
                                         for t in ends):
                out.append(Evidence(h, Claim.INFERENCE_END, WEIGHT_HEAD, "prediction head (%s) computed from %s, which "
                                    "the inference computation decides from (%s) without carrying its values on"
                                    % (s.by_name[node_of(h)].op, p, ", ".join(ends[:3])), (node_of(p),), follows=p))
        out.append(Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "the inference computation goes on after it (to "
                            "%s)" % ", ".join(ends[:3]), tuple(node_of(t) for t in ends[:3])))
        out += _heads_of_a_part(s, [e.tensor for e in out if e.claim is Claim.INFERENCE_END and e.follows == p])
    return out


def _heads_of_a_part(s: Structure, ends: List[str]) -> List[Evidence]:
    """Two ends that are one head (a softmax) of the prediction and of a part of it (its last
    position, one slice): the whole and the part are each a deployment (every position's
    distribution, or the next one's), and the graph does not say which; the part is listed first."""
    def base(t):
        node = s.by_name[node_of(t)]
        return node_of(s.data_inputs[node.name][0]) if node.op in HEAD_OPS and s.data_inputs[node.name] else None

    for part in ends:
        b = base(part)
        if b is None:
            continue
        n = b
        for _ in range(8):
            if s.by_name[n].op not in VIEW_OPS or not s.data_inputs[n]:
                break
            n = node_of(s.data_inputs[n][0])
            whole = [t for t in ends if t != part and base(t) == n and s.by_name[node_of(t)].op == s.by_name[
                node_of(part)].op]
            if whole and any(s.by_name[x].op not in ALIAS_OPS for x in s.upstream([b]) - s.upstream([n])):
                listed = [part] + [t for t in ends if t != part]
                return [Evidence(t, Claim.ONE_COMPUTATION, WEIGHT_OPEN, "%s is the same head (%s) of a part of what "
                                 "%s is computed from: the whole and the part are each a deployment, and the graph "
                                 "does not say which" % (part, s.by_name[node_of(part)].op, whole[0]),
                                 (node_of(whole[0]),)) for t in listed]
    return []


def _thresholds(s: Structure, score: str, ends: List[str]) -> bool:
    """Every end is a comparison of ``score`` with a value (a threshold), through casts."""
    def compares(n):
        while s.by_name[n].op in ("Cast", "Identity") and s.data_inputs[n]:
            n = node_of(s.data_inputs[n][0])
        return s.by_name[n].op in ("Greater", "GreaterEqual", "Less", "LessEqual") and node_of(score) in [
            node_of(i) for i in s.data_inputs[n]]
    return bool(ends) and all(compares(node_of(t)) for t in ends)


@rule("heads-after-prediction",
      "softmax, sigmoid, log-softmax, argmax and top-k computed from a prediction without labels, outside training "
      "and metrics, are heads of the model (through the reshapes that finish them); a head a metric compares "
      "with the labels is the output the training evaluates, and the tensor it is computed from is not; of heads "
      "of one prediction, those computed without variables another computes with (a learned temperature) are "
      "the model before that calibration")
def heads_after_prediction(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    out: List[Evidence] = []
    for e in predictions(board):
        p = e.tensor
        following = s.heads_after(p, f.label_mask, f.loss_scopes, f.loss_values)
        before, kept = s.uncalibrated.get(p, ([], []))
        out += [Evidence(h, Claim.UNTRAINED_BRANCH, WEIGHT_AGAINST, "left out: %s is computed from %s without "
                         "variables %s also computes with (a calibration, such as a learned temperature): the "
                         "model before that step; name it in options.outputs to keep it" % (h, p, kept[0]),
                         (node_of(kept[0]),)) for h in before]
        evaluated = [(h, m) for h in following for m in [s.evaluated_by(h, f.label_mask, f.in_loss, f.training)] if m]
        if evaluated:
            out += [Evidence(h, Claim.EVALUATED, WEIGHT_HEAD, _evaluated_why(f, m), (node_of(p), m), follows=p)
                    for h, m in evaluated]
            out.append(Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "the training evaluates a head computed "
                                "from it (%s)" % ", ".join(h for h, _ in evaluated), tuple(m for _, m in evaluated)))
            continue
        for h in following:
            op = s.by_name[node_of(h)].op
            out.append(Evidence(h, Claim.HEAD, WEIGHT_HEAD, "prediction head (%s) computed from %s"
                                % (op if op in HEAD_OPS else "reshaped %s" % head_op(s, node_of(h), {"Cast"}), p),
                                (node_of(p),), follows=p))
        own = head_op(s, node_of(p))
        if following and own in HEAD_OPS and not any(s.carries(node_of(p), node_of(h)) for h in following):
            # the prediction is itself a head (the probabilities an argmax decides from): it stays beside them
            out.append(Evidence(p, Claim.HEAD, WEIGHT_HEAD, "prediction head (%s) the loss compares; %s decide%s "
                                "from it" % (own, ", ".join(following[:3]), "s" if len(following) == 1 else ""),
                                (node_of(p),), follows=p))
    return out


@rule("labels-in-the-logits",
      "where the labels enter the logits a cross-entropy compares with them (a margin added for the true class), "
      "the class scores before them serve only the training's classes: the representation they are a product "
      "of may be what is deployed (compared with classes not seen in training), or the scores; the graph does not "
      "say which, and the representation is listed first")
def labels_in_the_logits(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    out: List[Evidence] = []
    for e in board.of(Claim.PREDICTION):
        p = node_of(e.tensor)
        if s.bits[p] & f.label_mask or s.by_name[p].op not in MATRIX_PRODUCT_OPS:
            continue
        arithmetic = s._forward([p], lambda n: n not in s.layers and not GRADIENT_SCOPE.search(n))
        joined = [n for n in f.in_loss if s.by_name[n].op in LOGITS_AND_LABELS_OPS and s.data_inputs[n]
                  and node_of(s.data_inputs[n][0]) in arithmetic and s.bits[node_of(s.data_inputs[n][0])] & f.label_mask]
        reps = [node_of(i) for i in s.data_inputs[p]
                if s.is_activation(node_of(i)) and s.bits[node_of(i)] and node_of(i) not in s.excluded]
        if not joined or len(reps) != 1:
            continue
        rep = tensor_name(reps[0])
        why = ("the labels enter the logits %s compares them with (through %s): %s is a product of the "
               "representation %s with the training's classes; the deployed output may be the representation or "
               "the scores, and the graph does not say which" % (joined[0], node_of(s.data_inputs[joined[0]][0]),
                                                                 e.tensor, rep))
        out += [Evidence(t, Claim.ONE_COMPUTATION, WEIGHT_OPEN, why, (p, joined[0])) for t in (rep, e.tensor)]
    return out


@rule("one-target-one-head",
      "of two predictions compared with the same labels, the one the graph computes an inference head from (a "
      "softmax, a decoding, the head a metric evaluates) is the deployed one; the other is a training aid. A "
      "classifier's logits (a cross-entropy reads them) of their own labels with no probabilities or classes "
      "computed from them, beside predictions of other labels, may be a second output or an auxiliary task: the "
      "graph does not say which. So may what a loss with no labels reads (a reconstruction) beside predictions "
      "compared with labels: a second output, or the network's pre-training or regulariser")
def one_target_one_head(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    recomputed = _recomputed(board)
    standing = [e for e in predictions(board) if e.claim is not Claim.COPY and e.tensor not in recomputed]
    if len(standing) < 2:
        return []
    followed = {e.follows for e in board.of(Claim.HEAD, Claim.EVALUATED, Claim.INFERENCE_END) if e.follows}
    headed = {e.tensor for e in standing if e.tensor in followed or e.claim is Claim.EVALUATED}
    labels = {e.tensor: s.compared_labels(e.tensor, f.in_loss, f.label_mask) for e in standing}
    out: List[Evidence] = []
    compared = [o.tensor for o in standing if labels[o.tensor]]
    for e in standing:
        if not labels[e.tensor] and e.claim is Claim.LOSS_INPUT and e.tensor not in headed and compared:
            out.append(Evidence(e.tensor, Claim.HEADLESS, WEIGHT_OPEN,
                                "%s is what a loss with no labels (%s) reads, beside predictions compared with labels "
                                "(%s): whether it is a second output or a training aid (the network's pre-training, "
                                "a regulariser) is not in the graph" % (e.tensor, e.loss, ", ".join(compared[:3])),
                                tuple(node_of(o) for o in compared[:3])))
            continue
        if e.tensor in headed or not labels[e.tensor]:
            continue
        main = next((o.tensor for o in standing if o.tensor in headed and labels[o.tensor] & labels[e.tensor]), None)
        if main is not None:
            out.append(Evidence(e.tensor, Claim.AUXILIARY, WEIGHT_AGAINST,
                                "auxiliary head left out: %s is compared with the same labels as %s, which the graph "
                                "computes an inference head from; name it in options.outputs to keep it" % (e.tensor, main),
                                (node_of(main),)))
        elif s.classifier_logits(e.tensor, f.in_loss, f.label_mask):
            others = [o.tensor for o in standing if o.tensor != e.tensor and labels[o.tensor]
                      and not labels[o.tensor] & labels[e.tensor]]
            if others:
                out.append(Evidence(e.tensor, Claim.HEADLESS, WEIGHT_OPEN,
                                    "%s is a classifier's logits compared with other labels than %s, and the graph "
                                    "computes no probabilities or classes from them: whether they are a second "
                                    "output or a training aid (an auxiliary task) is not in the graph"
                                    % (e.tensor, ", ".join(others[:3])),
                                    tuple(node_of(o) for o in others[:3])))
    return out


STRUCTURE_RULES = (loss_meets_model, replicas, critic_networks, generated_samples, gradient_reversal, inference_branch, deep_supervision,
                   separately_trained_networks, inference_ends, heads_after_prediction, one_target_one_head,
                   labels_in_the_logits)


# -- reading the board ---------------------------------------------------------------------
def _standing_predictions(board: Board, *also_against: Claim) -> List[Evidence]:
    """The predictions no replica record (nor one of ``also_against``) is against."""
    return [e for e in board.of(*PREDICTION_CLAIMS)
            if not board.against(e.tensor, Claim.REPLICA, *also_against)]


def _recomputed(board: Board) -> Set[str]:
    """The training-time predictions an inference branch recomputes (superseded by it)."""
    return {e.tensor for e in board.of(Claim.SUPERSEDED) if e.rule == inference_branch.name}


def predictions(board: Board) -> List[Evidence]:
    """The predictions left standing: neither replicas, auxiliary heads, loss arithmetic, the
    logits of a head the loss compares too, nor a model its next stage calibrates."""
    headed = {e.tensor for e in board.of(Claim.SUPERSEDED) if e.rule in (loss_meets_model.name, critic_networks.name)}
    return [e for e in _standing_predictions(board, Claim.AUXILIARY, Claim.REGULARIZER, Claim.CRITIC)
            if e.tensor not in headed]


def _optimized(s: Structure, loss: str) -> int:
    """The variables ``loss``'s optimizer trains, without the moving averages training updates in place
    (every loss's mask holds them: they join no two networks)."""
    mask = s.trained_mask(loss)
    return mask if mask == -1 else mask & ~s._moving_averages()


def _disjoint_networks(masks: Set[int]) -> List[int]:
    """Variable sets grouped where they overlap: optimizers sharing variables (two heads
    on one trunk trained by turns) train one network; disjoint ones train separate networks."""
    groups: List[int] = []
    for mask in masks:
        merged = mask
        for g in [g for g in groups if g & mask]:
            groups.remove(g)
            merged |= g
        groups.append(merged)
    return groups


@dataclass
class Decision:
    """What the structure decides: outputs (tensor, reason), or candidates when it does
    not decide (``unsure`` says why), with the warnings that say what was left out."""

    outputs: List[Tuple[str, str]] = field(default_factory=list)
    candidates: List[Tuple[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    unsure: str = ""
    board: Board = field(default_factory=Board)


def run(f: Facts) -> Board:
    board = Board()
    for r in STRUCTURE_RULES:
        r(f, board)
    return board


def decide(board: Board) -> Decision:
    """The one decision from a training graph's evidence: the inference branches, with the
    standing predictions they do not recompute; each prediction is answered by what
    follows it (inference ends, the evaluated head, its heads), else by itself; no answer when no prediction
    stands or several separately trained networks hold them (then they are candidates)."""
    d = Decision(board=board)
    d.warnings = ([e.why for e in board.of(Claim.AUXILIARY)] + [e.why for e in board.of(Claim.REPLICA)]
                  + [e.why for e in board.of(Claim.CRITIC) if e.rule != generated_samples.name]
                  + ["%s left out: %s" % (e.tensor, e.why) for e in board.of(Claim.SUPERSEDED)
                     if e.rule == critic_networks.name])
    generated = [e for e in board.of(Claim.GENERATED) if not board.against(e.tensor, Claim.SUPERSEDED)]
    if generated:  # the generator's outputs, beside what no network scoring them computes
        d.outputs = [(e.tensor, e.why) for e in generated]
        d.warnings.append("left out: what the networks that read the generated %s beside data compute (%s): they "
                          "serve the training" % ("samples" if len(generated) > 1 else "sample",
                                                  ", ".join(sorted({e.nodes[0] for e in generated})[:3])))
    standing = [e for e in predictions(board) if e.tensor not in [o for o, _ in d.outputs]]
    branches = [e for e in board.of(Claim.INFERENCE_BRANCH) if not board.against(e.tensor, Claim.CRITIC)]
    d.warnings += [e.why for e in board.of(Claim.UNTRAINED_BRANCH)]
    one = board.of(Claim.ONE_COMPUTATION)
    if one and len({node_of(e.tensor) for e in branches}) == 1:
        # the training computation leaves a choice open (the representation or the scores against the
        # training's classes); one tower the author built with the trained weights, which no loss
        # reads (a face model's test tower), is what the author runs: it settles the choice
        d.warnings.append("left out: %s, between which the training computation leaves the choice open: %s is "
                          "computed with the trained weights and read by no loss (%s)"
                          % (", ".join(e.tensor for e in one[:3]), branches[0].tensor, branches[0].why))
        d.outputs += [(e.tensor, e.why) for e in branches]
        return d
    if one:
        d.candidates = [(e.tensor, e.why) for e in one]
        d.unsure = one[0].why
        return d
    if branches:
        d.outputs += [(e.tensor, e.why) for e in branches]
        recomputed = _recomputed(board)
        superseded = [e for e in standing if e.tensor in recomputed]
        if superseded:
            d.warnings.append("training-time predictions left out (%s): the graph has an inference branch "
                              "computing with their variables" % ", ".join(e.tensor for e in superseded))
        standing = [e for e in standing if e not in superseded]
        if len({node_of(e.tensor) for e in branches}) > 1:
            # several computations no loss reads: each may be the deployment, or a by-product of the
            # evaluation code that built them, and the graph does not say which
            d.candidates, d.outputs = d.outputs, []
            d.unsure = ("the graph has %d computations with the trained weights that no loss reads (%s): which of "
                        "them the deployment runs is not in the graph"
                        % (len(branches), ", ".join(e.tensor for e in branches[:3])))
            return d
        if not standing:
            return d
    if not standing:
        return d
    headless = board.of(Claim.HEADLESS)
    if headless:
        d.candidates = d.outputs + decide_outputs(board, [e for e in standing
                                                          if e.tensor not in {h.tensor for h in headless}])
        d.candidates += [(e.tensor, e.why) for e in headless]
        d.outputs = []  # (an inference branch found beside them is one of the candidates)
        d.unsure = headless[0].why
        return d
    if board.of(Claim.SEPARATELY_TRAINED):
        d.candidates, d.outputs = d.outputs + decide_outputs(board, standing), []
        d.unsure = ("several networks are trained by different optimizers (%s); which one is deployed is not in "
                    "the graph" % ", ".join(sorted({e.loss for e in _standing_predictions(board)})))
        d.warnings.append(d.unsure)
        return d
    outputs, warnings = _answers(board, standing)
    d.outputs += [o for o in outputs if o[0] not in [t for t, _ in d.outputs]]
    d.warnings += warnings
    return d


def decide_outputs(board: Board, standing: List[Evidence]) -> List[Tuple[str, str]]:
    """What answers for ``standing`` predictions (their inference ends, evaluated heads, heads, or themselves)."""
    return _answers(board, standing)[0]


def _answers(board: Board, standing: List[Evidence]) -> Tuple[List[Tuple[str, str]], List[str]]:
    d = Decision(board=board)
    taken: List[str] = []
    for p in standing:
        ends = [e for e in board.of(Claim.INFERENCE_END) if e.follows == p.tensor]
        if ends:
            d.outputs += [(e.tensor, e.why) for e in ends if e.tensor not in taken]
            taken += [e.tensor for e in ends]
            continue
        evaluated = [e for e in board.of(Claim.EVALUATED) if e.follows == p.tensor]
        if evaluated:
            d.outputs += [(e.tensor, e.why) for e in evaluated if e.tensor not in taken]
            taken += [e.tensor for e in evaluated]
            continue
        following = [e for e in board.of(Claim.HEAD) if e.follows == p.tensor]
        if following and p.tensor not in [e.tensor for e in following]:
            d.warnings.append("%s left out: the graph computes its head%s (%s) from it; name it in options.outputs to keep "
                              "it" % (p.tensor, "s" if len(following) > 1 else "",
                                      ", ".join(e.tensor for e in following)))
        elif p.tensor not in taken:
            d.outputs.append((p.tensor, p.why))
            taken.append(p.tensor)
        for e in following:
            if e.tensor not in taken:
                taken.append(e.tensor)
                d.outputs.append((e.tensor, e.why))
    return d.outputs, d.warnings


ALL_RULES = STRUCTURE_RULES + REFINE_PRINCIPLES

__all__ = ["ALL_RULES", "Decision", "Facts", "STRUCTURE_RULES", "decide", "facts", "predictions", "run"]
