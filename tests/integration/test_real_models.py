"""Real architectures (tests/corpus.py: tf-slim nets, Keras applications, a TF1
LSTM, a seq2seq with greedy decoding) through the real server: the names found
automatically are the model's head and its data inputs, named outputs and
the optimize option work too, and every frozen graph runs and equals the
original model on the same inputs."""

from __future__ import annotations

import random

import numpy as np
import pytest

import corpus
import models
from conftest import run_returned_graph
from tffreeze_api import manifest
from tffreeze_api.v1 import freeze_pb2
from tffreeze_server.core import engine
from tffreeze_server.core.errors import FreezeError
from tffreeze_server.core.spec import FreezeSpec

# What the README promises for the optimize option (folded batch norms and
# constants reorder float arithmetic): |optimized - original| <= ATOL + RTOL * |original|.
OPTIMIZE_RTOL, OPTIMIZE_ATOL = 1e-4, 1e-4


def _assert_equal_to_original(outcome, info, rtol=1e-5, atol=1e-6):
    """Equal within float noise. The expected values come from the corpus' own process,
    where oneDNN may split sums differently: a small entry next to large ones (Inception
    v3 logits: -0.41 beside -30.5) then differs by ~1e-5, so the absolute part scales
    with the output's largest magnitude."""
    with open(outcome.path, "rb") as fh:
        got = models.run_frozen(fh.read(), info["feeds"], info["outputs"])
    for name, value in zip(info["outputs"], got):
        expected = np.asarray(info["expected"][name])
        scale = float(np.max(np.abs(expected))) if expected.size and expected.dtype.kind == "f" else 0.0
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol + rtol * scale, err_msg=name)


def automatic_verdict(client, info, out_path) -> str:
    """What a freeze without names gives on one corpus model: "right" (exactly the
    model's outputs and data inputs, equal to the original on the same inputs),
    "refused" (not sure, and the listed candidates include every right output) or
    "wrong: ..." (anything else, a refusal without the right candidates included)."""
    from tffreeze import TffreezeError

    try:
        outcome = client.freeze(info["dir"], out_path)
    except TffreezeError as exc:
        listed = exc.metadata.get("candidates", "").split(",")
        missing = [o for o in info["outputs"] if o not in listed]
        if exc.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS" and not missing:
            return "refused"
        return "wrong: %s %s (right outputs not listed: %s)" % (exc.reason, exc, missing)
    m = outcome.manifest
    got = sorted(o["name"] for o in m["outputs"])
    if got != sorted(info["outputs"]) or sorted(i["name"] for i in m["inputs"]) != sorted(info["inputs"]):
        return "wrong: outputs %s inputs %s" % (got, [i["name"] for i in m["inputs"]])
    for o in m["outputs"]:
        assert o["dtype"] not in ("variant", "resource")
        assert not o["reason"].startswith("graph sink"), o  # evidence, not "nothing reads it"
    _assert_equal_to_original(outcome, info)
    return "right"


@pytest.mark.parametrize("name", corpus.MODELS)
def test_automatic_names_are_right_or_a_refusal_listing_them(client, real_models, tmp_path, name):
    """Never a wrong answer: the model's own outputs, or "not sure" with them among the candidates."""
    verdict = automatic_verdict(client, real_models[name], str(tmp_path / "model.pb"))
    assert verdict in ("right", "refused"), verdict
    assert verdict == "right" or name in corpus.UNDECIDABLE, "%s was refused; it used to be found" % name


@pytest.mark.parametrize("name", corpus.MODELS)
def test_named_outputs_freeze_and_run(client, real_models, tmp_path, name):
    info = real_models[name]
    outcome = client.freeze(info["dir"], str(tmp_path / "model.pb"), outputs=info["outputs"])
    assert [o["name"] for o in outcome.manifest["outputs"]] == info["outputs"]
    assert sorted(i["name"] for i in outcome.manifest["inputs"]) == sorted(info["inputs"])
    _assert_equal_to_original(outcome, info)


@pytest.mark.parametrize("name", corpus.MODELS)
def test_optimize_stays_within_the_documented_tolerance(client, real_models, tmp_path, name):
    info = real_models[name]
    named = info["outputs"] if name in corpus.UNDECIDABLE else ()  # the graph does not decide them
    outcome = client.freeze(info["dir"], str(tmp_path / "model.pb"), optimize=True, outputs=named)
    _assert_equal_to_original(outcome, info, rtol=OPTIMIZE_RTOL, atol=OPTIMIZE_ATOL)


def test_inception_auxiliary_head_is_left_out_and_said(real_models, tmp_path):
    info = real_models["slim_inception_v3"]
    result = engine.freeze(info["dir"], FreezeSpec(), str(tmp_path / "m.pb"))
    assert "InceptionV3/AuxLogits/SpatialSqueeze:0" not in [o.name for o in result.outputs]
    assert any("auxiliary head left out: InceptionV3/AuxLogits/SpatialSqueeze:0" in w for w in result.warnings)


def test_seq2seq_embedding_lookup_inside_the_loop_reads_a_constant(real_models, tmp_path):
    """The variable read inside the greedy loop body (ResourceGather on a captured
    handle) must become a plain gather of the constant, or the graph fails at run time."""
    from tensorflow.core.framework import graph_pb2

    info = real_models["seq2seq_greedy"]
    out = tmp_path / "m.pb"
    engine.freeze(info["dir"], FreezeSpec(), str(out))
    graph_def = graph_pb2.GraphDef.FromString(out.read_bytes())
    body_ops = [n.op for f in graph_def.library.function for n in f.node_def]
    assert "GatherV2" in body_ops
    assert not {"ResourceGather", "ReadVariableOp", "VarHandleOp"} & set(body_ops)


def _random_options(rng: random.Random, info: dict, meta_nodes):
    """Option combinations a user (or a fuzzer) might send."""
    opts = freeze_pb2.FreezeOptions()
    pick = rng.random()
    if pick < 0.3:
        opts.outputs.extend(rng.sample(info["outputs"], rng.randint(1, len(info["outputs"]))))
    elif pick < 0.6:  # any node at all: gradients, optimizer slots, loop internals, summaries...
        opts.outputs.extend(rng.sample(meta_nodes, 2))
    if rng.random() < 0.3:
        opts.inputs.extend(rng.sample(meta_nodes, 1) if rng.random() < 0.5 else info["inputs"])
    if rng.random() < 0.3:
        opts.bind[rng.choice(["is_training", "keep_prob", "keras_learning_phase", "phase_train"])].bool_value = \
            rng.random() < 0.5
    opts.optimize = rng.random() < 0.3
    if rng.random() < 0.25:
        opts.target = freeze_pb2.TARGET_TENSORFLOWSHARP
    if rng.random() < 0.2:
        opts.step = rng.choice([2, 3])
    return opts


@pytest.mark.parametrize("name", corpus.MODELS)
def test_random_option_combinations_never_hit_the_safety_net(real_models, tmp_path, name):
    """No option combination on a real model reaches INTERNAL, nor the engine's
    safety net for unexpected failures (GRAPH_UNSUPPORTED): every refusal is a
    named error, and every success runs."""
    from tensorflow.core.protobuf import meta_graph_pb2

    info = real_models[name]
    meta = meta_graph_pb2.MetaGraphDef.FromString(open("%s/%s.meta" % (info["dir"], info["prefix"]), "rb").read())
    nodes = sorted(n.name for n in meta.graph_def.node)
    rng = random.Random("%s-fuzz" % name)
    seen = {"ok": 0}
    for i in range(6):
        opts = _random_options(rng, info, nodes)
        try:
            spec = FreezeSpec.from_options(opts)
            result = engine.freeze(info["dir"], spec, str(tmp_path / ("m%d.pb" % i)))
            # a success is a graph that runs: fed the model's inputs, or generated ones where
            # their shape is known (a cut inside the model may leave sizes only data decides)
            m = manifest.to_dict(result)
            if all(t["name"] in info["feeds"] or (t["shape"] is not None and all(d >= 0 for d in t["shape"][1:]))
                   for t in m["inputs"]):
                run_returned_graph((tmp_path / ("m%d.pb" % i)).read_bytes(), m,
                                   {k: v for k, v in info["feeds"].items() if k in {t["name"] for t in m["inputs"]}})
            seen["ok"] += 1
        except FreezeError as exc:
            assert exc.code != "INTERNAL" and exc.reason != "ERROR_REASON_GRAPH_UNSUPPORTED", \
                "%s with %s: %s" % (name, opts, exc.message)
            seen[exc.reason] = seen.get(exc.reason, 0) + 1
    assert sum(seen.values()) == 6


def test_grouped_convolutions_are_split_for_the_tensorflowsharp_target(client, real_models, tmp_path):
    """RegNet's grouped convolutions (Keras groups=) run in TF 2.21 but in no TF 1.15 on CPU:
    the default manifest says the graph does not load there; the tensorflowsharp target
    splits each into one convolution per group, with the same values."""
    info = real_models["keras_regnet"]
    plain = client.freeze(info["dir"], str(tmp_path / "plain.pb"))
    assert plain.manifest["loads_in_tensorflowsharp"] is False
    target = client.freeze(info["dir"], str(tmp_path / "t.pb"), target="tensorflowsharp")
    assert target.manifest["loads_in_tensorflowsharp"] is True
    assert any("grouped convolution" in n for n in target.manifest["notes"])  # what --target did
    _assert_equal_to_original(target, info)
