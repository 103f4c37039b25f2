"""Random draws the outputs depend on: outputs that differ on every run.

A dropout (or noise layer) built without a training switch (``tf.nn.dropout(h, rate=0.5)``
in the inference graph) draws new random numbers each time the graph runs: the frozen graph,
like the checkpoint's own graph, gives other outputs on every run. Freeze and inspect warn
about it, naming the ops; verify says the outputs are random instead of that the frozen
graph computes something else, also when the draw is a dropout whose keep-prob is an input
left unbound (verify feeds it a generated value: ``switching_inputs``). Stateless random ops with constant seeds draw the same numbers
every run and are not counted.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from .oproles import is_random, is_stateful


def _switched(before) -> set:
    """Random nodes of ``before`` (the graph before binding) whose draw is compared with or
    scaled by a value a placeholder decides (a dropout's rate from keep_prob): binding that
    switch to its inference value makes the draw irrelevant, so they are not counted."""
    if before is None:
        return set()
    consumers = {}
    for n in before.node:
        for i in n.input:
            consumers.setdefault(i.lstrip("^").split(":")[0], []).append(n)
    fed = {n.name for n in before.node if n.op in ("Placeholder", "PlaceholderWithDefault")}
    changed = True
    while changed:  # every node a placeholder reaches
        changed = False
        for n in before.node:
            if n.name not in fed and any(i.lstrip("^").split(":")[0] in fed for i in n.input):
                fed.add(n.name)
                changed = True
    out = set()
    for n in before.node:
        if not (is_random(n.op) and is_stateful(n.op)):
            continue
        chain, users = {n.name}, list(consumers.get(n.name, []))
        while any(u.op == "Identity" for u in users):
            ident = [u for u in users if u.op == "Identity"]
            chain |= {u.name for u in ident}
            users = [u for u in users if u.op != "Identity"] + [c for u in ident for c in consumers.get(u.name, [])]
        if any(i.lstrip("^").split(":")[0] in fed for u in users for i in u.input
               if i.lstrip("^").split(":")[0] not in chain):
            out.add(n.name)
    return out


def switching_inputs(graph_def, before) -> Tuple[List[Tuple[str, str]], List[str]]:
    """The random nodes of ``graph_def`` that ``random_nodes`` leaves out because a placeholder
    of ``before`` decides their draw (``_switched``), when that placeholder is still an input of
    ``graph_def`` (not bound): ([(node, op)], [those inputs' names]). Fed any value but its
    inference one (a keep_prob of 1), such a dropout draws new numbers on every run."""
    switched = _switched(before)
    nodes = [(n.name, n.op) for n in graph_def.node if n.name in switched]
    if not nodes:
        return [], []
    inputs = {n.name for n in graph_def.node if n.op in ("Placeholder", "PlaceholderWithDefault")}
    users = {}
    for n in before.node:
        for i in n.input:
            users.setdefault(i.lstrip("^").split(":")[0], []).append(n.name)
    names = {n for n, _ in nodes}
    deciding = []
    for name in sorted(inputs):  # the unbound inputs whose value reaches a user of a switched draw
        seen, todo = {name}, [name]
        while todo:  # (not through a draw: an input that gives its shape does not decide it)
            for u in users.get(todo.pop(), []):
                if u not in seen and u not in names:
                    seen.add(u)
                    todo.append(u)
        if any(names & set(i.lstrip("^").split(":")[0] for i in before_node.input)
               for before_node in before.node if before_node.name in seen):
            deciding.append(name)
    return nodes, deciding


def inference_value(name: str, graph_def=None) -> str:
    """The value that turns a dropout off: a rate 0, a keep-prob 1. Read from how the graph uses
    the input when it says (a keep probability is subtracted from 1, or added to a uniform draw
    that is floored; a rate is compared with the draw), else guessed from the input's name."""
    if graph_def is not None:
        nodes = {n.name: n for n in graph_def.node}
        uses = []
        for n in graph_def.node:
            ins = [i.lstrip("^").split(":")[0] for i in n.input]
            if name in ins:
                uses.append((n.op, ins, [nodes.get(i) for i in ins if i != name]))
        if any(op in ("GreaterEqual", "Greater") and ins[-1] == name for op, ins, _ in uses):
            return "0"  # (draw >= rate: a rate)
        for op, ins, others in uses:
            if op == "Sub" and ins[-1] == name and others and others[0] is not None and others[0].op == "Const":
                return "1"  # (1 - keep_prob: the rate tf.compat.v1.nn.dropout computes)
            if op in ("Add", "AddV2") and any(o is not None and is_random(o.op) for o in others):
                return "1"  # (keep_prob + uniform, floored: TensorFlow 1's dropout)
    low = name.lower()
    return "0" if ("rate" in low or "drop" in low) and "keep" not in low else "1"


def random_nodes(graph_def, before=None) -> List[Tuple[str, str]]:
    """(node, op) of every stateful random op in the graph and the functions it keeps; with
    ``before`` (the graph before binding), not those a switch decides (``_switched``)."""
    switched = _switched(before)
    found = [(n.name, n.op) for n in graph_def.node
             if is_random(n.op) and is_stateful(n.op) and n.name not in switched]
    for func in graph_def.library.function:
        found += [("%s/%s" % (func.signature.name, n.name), n.op) for n in func.node_def
                  if is_random(n.op) and is_stateful(n.op)]
    return found


def listing(found: List[Tuple[str, str]]) -> str:
    return ", ".join("%s (%s)" % f for f in found[:5]) + (" ..." if len(found) > 5 else "")


def warning(graph_def, before=None) -> Optional[str]:
    """The warning for a graph whose outputs depend on random draws; None when they do not. A
    draw an input decides (a bool switch choosing a cond's branch, a rate a dropout reads) is
    named with that input and the --bind that turns it off."""
    found = random_nodes(graph_def, before)
    if found:
        deciding = _cond_switches(graph_def)
        if deciding:
            return ("the outputs depend on random op(s) %s, which the input(s) %s decide (a switch whose default "
                    "keeps them on): bind it to its inference value (%s) and they are off"
                    % (listing(found), ", ".join("%s (default %s)" % (n + ":0", d) for n, d, _ in deciding),
                       " ".join("options.bind %s=%s" % (n, v) for n, _, v in deciding)))
        return ("the outputs depend on random op(s) %s: they differ on every run. A dropout or noise layer left on "
                "in inference (tf.nn.dropout with no training switch) does this: rebuild the graph with it off "
                "(training=False, or rate 0) and save it with the checkpoint, or build it with a switch "
                "(tf.compat.v1.placeholder_with_default) that options.bind sets to its inference value"
                % listing(found))
    if before is None:
        return None
    switched, inputs = switching_inputs(graph_def, before)
    defaults = _defaults(graph_def)
    on = [(n, defaults[n]) for n in inputs if n in defaults and defaults[n] is not None
          and _number(defaults[n]) != _number(inference_value(n, before))]
    if switched and on:
        return ("the outputs depend on random op(s) %s unless the input(s) %s get the value that turns them off: "
                "the default leaves them on, so every run that does not feed it differs; bind it (%s)"
                % (listing(switched), ", ".join("%s (default %s)" % (n + ":0", d) for n, d in on),
                   " ".join("options.bind %s=%s" % (n, inference_value(n, before)) for n, _ in on)))
    required = [n for n in inputs if defaults.get(n) is None]
    if switched and required:  # (a keep probability with no default: every caller must feed it)
        return ("the input(s) %s decide the random draw of %s (a dropout's keep probability or rate): left an "
                "input every run must feed; bind it to turn the dropout off and freeze inference (%s)"
                % (", ".join(n + ":0" for n in required), listing(switched),
                   " ".join("options.bind %s=%s" % (n, inference_value(n, before)) for n in required)))
    return None


def _number(text) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _defaults(graph_def) -> dict:
    """placeholder_with_default name -> its default as text (a scalar constant), else None."""
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}
    out = {}
    for n in graph_def.node:
        if n.op != "PlaceholderWithDefault" or not n.input:
            continue
        src = by_name.get(n.input[0].split(":")[0])
        value = None
        if src is not None and src.op == "Const":
            array = tensor_util.MakeNdarray(src.attr["value"].tensor)
            if array.size == 1:
                value = str(array.item()).lower() if array.dtype == bool else "%g" % float(array.item())
        out[n.name] = value
    return out


def _cond_switches(graph_def) -> List[Tuple[str, str, str]]:
    """(input, its default, the value that turns the draw off) for each bool placeholder_with_default
    that decides which branch of a cond runs (through identities and logical_not)."""
    by_name = {n.name: n for n in graph_def.node}
    defaults = _defaults(graph_def)
    out = []
    for n in graph_def.node:
        if n.op not in ("If", "StatelessIf", "Switch") or not n.input:
            continue
        pred = n.input[0] if n.op != "Switch" else n.input[1]
        node, negated = by_name.get(pred.split(":")[0]), False
        while node is not None and node.op in ("Identity", "LogicalNot") and node.input:
            negated ^= node.op == "LogicalNot"
            node = by_name.get(node.input[0].split(":")[0])
        if node is None or node.op != "PlaceholderWithDefault" or defaults.get(node.name) not in ("true", "false"):
            continue
        off = "false" if (defaults[node.name] == "true") != negated else "true"
        if (node.name, defaults[node.name], off) not in out:
            out.append((node.name, defaults[node.name], off))
    return out
