"""Evidence about which tensors are a model's outputs: typed records, the named rules
that produce them, and the board they are collected on.

A *rule* is a named principle (``Rule.name``, ``Rule.principle``) applied to the facts
of one graph; it returns :class:`Evidence` records, each saying one thing (its
:class:`Claim`) about one tensor, with a weight (positive: for being an output,
negative: against, zero: it leaves the choice open), the nodes that justify it and
the sentence a user reads (``why``). Rules read what earlier rules found by claim,
never by the text of their sentences. One place decides from the records
(``rules.decide`` for a training graph's structure, ``resolve.resolve`` across the
ranked sources): it answers, or refuses with the candidates ranked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Callable, Iterable, List, Tuple


class Claim(enum.Enum):
    """What an evidence record says about its tensor."""

    # -- declared by the graph's author (ranked sources) --
    SIGNATURE_OUTPUT = "a signature def names it as an output"
    COLLECTION_OUTPUT = "a user collection names it"
    # -- found from a training graph's structure --
    PREDICTION = "a loss compares it with the labels"
    LOSS_INPUT = "the trained model's tensor a loss reads"
    COPY = "one of the copies of one network a loss compares"
    EVALUATED = "the training evaluates it against the labels"
    HEAD = "a head computed from a prediction"
    INFERENCE_END = "an end of the inference computation after a prediction"
    INFERENCE_BRANCH = "computed with the trained weights by layers no loss reads"
    GENERATED = "what a network computes in place of data another network reads as given"
    # -- found from the graph's sinks (graphs without a loss) --
    SINK = "nothing reads it"
    LOOSE_END = "an unused loop or cond result"
    LOSS_PREDICTION = "the prediction a loss compares with its target"
    LOSS = "a training loss"
    COMPUTED_LOSS = "a loss the graph computes from a target, nothing differentiates"
    # -- against --
    REPLICA = "computes what another copy does"
    AUXILIARY = "a training aid beside the main head"
    SUPERSEDED = "the inference computation goes on after it"
    UNTRAINED_BRANCH = "computed by layers no optimizer trains"
    REGULARIZER = "loss arithmetic on the model's tensors"
    CRITIC = "a network trained apart that scores another network's output"
    # -- open --
    SEPARATELY_TRAINED = "one of several networks trained apart"
    HEADLESS = "a prediction of its own labels with no inference head, beside predictions of other labels"
    ONE_COMPUTATION = "one of several ends of one inference computation, none with a layer of its own"
    CANDIDATE = "might be an output (listed when the graph does not decide)"

    @property
    def label(self) -> str:
        return self.name.lower()


# Claims a loss rule makes about where the model meets its loss (the predictions).
PREDICTION_CLAIMS = frozenset({Claim.PREDICTION, Claim.LOSS_INPUT, Claim.COPY, Claim.EVALUATED})
# Predictions compared with the labels (not loss arithmetic): what an auxiliary head is told apart among.
LABELLED_CLAIMS = frozenset({Claim.PREDICTION, Claim.EVALUATED})


@dataclass(frozen=True)
class Evidence:
    """One rule's finding about one tensor."""

    tensor: str
    claim: Claim
    weight: float  # > 0 for being an output, < 0 against, 0 leaves it open
    why: str  # the sentence a user reads (an output's ``reason``)
    nodes: Tuple[str, ...] = ()  # the nodes that justify it (the loss, the labels, the comparison...)
    rule: str = ""  # the rule's name (set by the rule)
    loss: str = ""  # the loss it was found from, if any
    follows: str = ""  # the prediction it is computed from (heads, inference ends)

    @property
    def against(self) -> bool:
        return self.weight < 0


# Weights: the ranked sources, best first. A source's evidence decides only when every
# better source has none; against-records (weight -1) remove a tensor within its source.
WEIGHT_SIGNATURE = 4.0
WEIGHT_COLLECTION = 3.0
WEIGHT_STRUCTURE = 2.0
WEIGHT_HEAD = 1.5  # a head or inference end: follows a prediction (structure)
WEIGHT_SINK = 1.0
WEIGHT_LOOSE_END = 0.5
WEIGHT_AGAINST = -1.0
WEIGHT_OPEN = 0.0


class Rule:
    """A named principle: ``find(facts, board)`` returns evidence records (the rule's
    name is stamped on each that a finer principle it applies did not name)."""

    def __init__(self, name: str, principle: str, find: Callable):
        self.name = name
        self.principle = principle
        self._find = find

    def __call__(self, facts, board: "Board") -> List[Evidence]:
        found = [e if e.rule else replace(e, rule=self.name) for e in self._find(facts, board)]
        board.extend(found)
        return found

    def __repr__(self) -> str:
        return "Rule(%r)" % self.name


def rule(name: str, principle: str):
    """Decorator: the function becomes a :class:`Rule`."""
    def wrap(find: Callable) -> Rule:
        return Rule(name, principle, find)
    return wrap


class Board:
    """The evidence collected so far, in the order the rules found it."""

    def __init__(self, records: Iterable[Evidence] = ()):
        self.records: List[Evidence] = list(records)

    def extend(self, records: Iterable[Evidence]) -> None:
        self.records.extend(records)

    def of(self, *claims: Claim) -> List[Evidence]:
        return [e for e in self.records if e.claim in claims]

    def against(self, tensor: str, *claims: Claim) -> bool:
        return any(e.tensor == tensor and e.against and (not claims or e.claim in claims) for e in self.records)

    def about(self, tensor: str) -> List[Evidence]:
        return [e for e in self.records if e.tensor == tensor]


__all__ = ["Board", "Claim", "Evidence", "LABELLED_CLAIMS", "PREDICTION_CLAIMS", "Rule", "rule"]
