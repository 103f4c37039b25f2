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

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Set, Tuple

from .evidence import (LABELLED_CLAIMS, PREDICTION_CLAIMS, WEIGHT_AGAINST, WEIGHT_HEAD, WEIGHT_OPEN,
                       WEIGHT_STRUCTURE, Board, Claim, Evidence, rule)
from .graph import node_of
from .heads import REFINE_PRINCIPLES, Structure, head_op, post_processing
from .oproles import HEAD_OPS


@dataclass
class Facts:
    """What the rules read: one training graph's structure, its losses and labels."""

    s: Structure
    losses: List[str]
    labels: List[str]
    label_mask: int
    loss_scopes: Set[str]  # top-level scopes of the losses' own computation
    in_loss: Set[str]  # everything the losses read
    training: Set[str]
    unused_control_flow: Callable


def facts(graph_def, excluded: Set[str], training: Set[str], switches: Set[str], loss_collection,
          unused_control_flow) -> Optional[Facts]:
    """The facts of a training graph, or None when it has no loss to go by."""
    s = Structure(graph_def, excluded, loss_collection)
    losses = s.losses()
    if not losses:
        return None
    labels, label_mask = s.labels(losses, switches)
    loss_scopes = {y.split("/")[0] for y in losses} | {
        n.split("/")[0] for n in s.upstream(losses) if s.bits[n] & label_mask and "/" in n}
    return Facts(s, losses, labels, label_mask, loss_scopes, s.upstream(losses), training, unused_control_flow)


# -- the rules, in the order they run ----------------------------------------------------
@rule("loss-meets-model",
      "a loss compares what the model computes with a target: walking up from the loss through what depends on "
      "the labels, the first tensors computed from data and trained weights without labels are the model's "
      "predictions; inside loss arithmetic the walk goes on to where the trained model's tensors enter (see "
      "heads.REFINE_PRINCIPLES); a tensor a metric compares with the labels is the model's output as evaluated")
def loss_meets_model(f: Facts, board: Board) -> List[Evidence]:
    s, found = f.s, []

    def add(record: Evidence) -> None:
        if record.tensor not in [e.tensor for e in found]:
            found.append(record)
    for y in f.losses:
        trained = s.trained_mask(y)
        if s.bits[y] & f.label_mask:
            for p in s.predictions([y], f.label_mask):
                for q in s.leave_loss_scope(p, f.loss_scopes):
                    metric = s.evaluated_by(q, f.label_mask, f.in_loss, f.training)
                    if metric is not None:
                        add(Evidence(q, Claim.EVALUATED, WEIGHT_STRUCTURE, _evaluated_why(f, metric),
                                     (y, metric), loss=y))
                        continue
                    stops, loss_term = s.refine(node_of(q), trained, f.label_mask)
                    if loss_term and stops:
                        for e in stops:
                            add(_with_loss(e, "%s (inside the loss %s)" % (e.why, y), y))
                    else:
                        add(Evidence(q, Claim.PREDICTION, WEIGHT_STRUCTURE, "prediction: the loss %s compares it "
                                     "with %s" % (y, ", ".join(f.labels[:3])), (y,) + tuple(f.labels[:3]), loss=y))
        else:
            stops = s.refine(y, trained, f.label_mask)[0]
            for e in sorted(stops, key=lambda e: s.order.index(node_of(e.tensor))):
                add(_with_loss(e, "%s (the loss %s reads no labels)" % (e.why, y), y))
    return found


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
    standing = _standing_predictions(board, Claim.AUXILIARY)
    labelled = [e.tensor for e in standing if e.claim in LABELLED_CLAIMS]
    if len(labelled) < 2:
        return []
    up = {p: s.upstream([node_of(p)]) for p in labelled}
    out: List[Evidence] = []
    for p in labelled:
        for o in labelled:
            if o == p or not (up[p] & up[o]):
                continue
            own, other = s.layer_count(up[p] - up[o]), s.layer_count(up[o] - up[p])
            if other >= 3 * max(own, 1) and s.layer_count(up[p] & up[o]) > own:
                out.append(Evidence(p, Claim.AUXILIARY, WEIGHT_AGAINST,
                                    "auxiliary head left out: %s (its own layers are few next to the main head's); "
                                    "name it in outputs to keep it" % p, (node_of(o),)))
                break
    return out


@rule("inference-branch",
      "a sink computed with the trained weights by layers no loss reads (greedy decoding, a sampler tower, an "
      "export head) is the deployed computation: the teacher-forced predictions are not outputs")
def inference_branch(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    preds = [e.tensor for e in predictions(board)]
    downstream = s._forward([node_of(p) for p in preds])
    # One forward pass (linear in the graph): what layers outside the loss's inputs compute.
    after_own_layers = s._forward(s.layers - f.in_loss, lambda n: n not in f.in_loss)
    branches = [n + ":0" for n in s.effective_sinks(f.training)
                if n in after_own_layers and n not in downstream and s.is_activation(n)
                and not s.bits[n] & f.label_mask and not f.unused_control_flow(s.by_name[n])]
    if not branches:
        return []
    why = "inference branch: computed with the trained weights by layers the loss (%s) never reads" % ", ".join(
        f.losses[:3])
    return ([Evidence(t, Claim.INFERENCE_BRANCH, WEIGHT_STRUCTURE, why, tuple(f.losses[:3])) for t in branches]
            + [Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "a training-time prediction: the graph has an "
                        "inference branch (%s)" % ", ".join(branches[:3]), tuple(node_of(b) for b in branches[:3]))
               for p in preds])


@rule("separately-trained-networks",
      "networks trained by optimizers with no variable in common (a GAN's generator and discriminator) are "
      "separate models; which one is deployed is not in the graph (optimizers sharing variables train one "
      "network)")
def separately_trained_networks(f: Facts, board: Board) -> List[Evidence]:
    preds = predictions(board)
    networks = _disjoint_networks({f.s.trained_mask(e.loss) for e in preds})
    if len(networks) < 2:
        return []
    return [Evidence(e.tensor, Claim.SEPARATELY_TRAINED, WEIGHT_OPEN, e.why, (e.loss,), loss=e.loss) for e in preds]


@rule("inference-ends",
      "computation the loss never reads that goes on after a prediction beyond heads and reshapes (box decoding "
      "and non-max suppression, CTC decoding, a selection) is the inference computation: its ends are the "
      "outputs, every output of a multi-output end")
def inference_ends(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    preds = [e.tensor for e in predictions(board)]

    def allowed(n):
        return not s.bits[n] & f.label_mask and n not in s.excluded and n not in f.in_loss
    out: List[Evidence] = []
    for p, ends in post_processing(s, preds, allowed, f.training).items():
        why = "end of the inference computation after %s (the loss never reads it)" % p
        out += [Evidence(t, Claim.INFERENCE_END, WEIGHT_HEAD, why, (node_of(p),), follows=p) for t in ends]
        out.append(Evidence(p, Claim.SUPERSEDED, WEIGHT_AGAINST, "the inference computation goes on after it (to "
                            "%s)" % ", ".join(ends[:3]), tuple(node_of(t) for t in ends[:3])))
    return out


@rule("heads-after-prediction",
      "softmax, sigmoid, log-softmax, argmax and top-k computed from a prediction without labels, outside training "
      "and metrics, are heads of the model (through the reshapes that finish them); a head a metric compares "
      "with the labels is the output the training evaluates, and the tensor it is computed from is not")
def heads_after_prediction(f: Facts, board: Board) -> List[Evidence]:
    s = f.s
    out: List[Evidence] = []
    for e in predictions(board):
        p = e.tensor
        following = s.heads_after(p, f.label_mask, f.loss_scopes)
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
    return out


STRUCTURE_RULES = (loss_meets_model, replicas, deep_supervision, inference_branch, separately_trained_networks,
                   inference_ends, heads_after_prediction)


# -- reading the board ---------------------------------------------------------------------
def _standing_predictions(board: Board, *also_against: Claim) -> List[Evidence]:
    """The predictions no replica record (nor one of ``also_against``) is against."""
    return [e for e in board.of(*PREDICTION_CLAIMS)
            if not board.against(e.tensor, Claim.REPLICA, *also_against)]


def predictions(board: Board) -> List[Evidence]:
    """The predictions left standing: neither replicas nor auxiliary heads."""
    return _standing_predictions(board, Claim.AUXILIARY)


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
    """The one decision from a training graph's evidence: an inference branch is the
    answer; else the standing predictions with what follows them (inference ends, the
    evaluated head, or the prediction and its heads); no answer when no prediction
    stands or several separately trained networks hold them (then they are candidates)."""
    d = Decision(board=board)
    d.warnings = [e.why for e in board.of(Claim.AUXILIARY)] + [e.why for e in board.of(Claim.REPLICA)]
    standing = predictions(board)
    branches = board.of(Claim.INFERENCE_BRANCH)
    if branches:
        d.outputs = [(e.tensor, e.why) for e in branches]
        if standing:
            d.warnings.append("training-time predictions left out (%s): the graph has an inference branch"
                              % ", ".join(e.tensor for e in standing))
        return d
    if not standing:
        return d
    if board.of(Claim.SEPARATELY_TRAINED):
        d.candidates = [(e.tensor, e.why) for e in standing]
        d.unsure = ("several networks are trained by different optimizers (%s); which one is deployed is not in "
                    "the graph" % ", ".join(sorted({e.loss for e in _standing_predictions(board)})))
        d.warnings.append(d.unsure)
        return d
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
        if p.tensor not in taken:
            d.outputs.append((p.tensor, p.why))
            taken.append(p.tensor)
        for e in board.of(Claim.HEAD):
            if e.follows == p.tensor and e.tensor not in taken:
                taken.append(e.tensor)
                d.outputs.append((e.tensor, e.why))
    return d


ALL_RULES = STRUCTURE_RULES + REFINE_PRINCIPLES

__all__ = ["ALL_RULES", "Decision", "Facts", "STRUCTURE_RULES", "decide", "facts", "predictions", "run"]
