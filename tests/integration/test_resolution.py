"""How outputs are found on models that are not classifiers, through the public API
(the real server, the Python client and CLI), one test per finding of the second wave:
metric learning, generative models, refusals that help, inspect agreeing with freeze."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import corpus
import models
from tffreeze import TffreezeError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")


def _names(tensors):
    return sorted(t.name for t in tensors)


def test_metric_learning_outputs_are_the_embeddings_not_loss_terms(client, real_models, tmp_path):
    """Finding 3: a siamese pair under a contrastive loss whose float label weights the
    terms gives each tower's embedding, never the squared distance or hinge inside the loss."""
    outcome = client.freeze(real_models["siamese_contrastive"]["dir"], str(tmp_path / "m.pb"))
    outputs = outcome.manifest["outputs"]
    assert sorted(o["name"] for o in outputs) == ["embedding_left:0", "embedding_right:0"]
    assert all("copies of a network" in o["reason"] for o in outputs), outputs
    triplet = client.freeze(real_models["triplet_embedding"]["dir"], str(tmp_path / "t.pb")).manifest
    assert len(triplet["outputs"]) == 3 and len(triplet["inputs"]) == 3


def test_vae_outputs_and_inspect_candidates(client, real_models):
    """Finding 4: the VAE's reconstruction and latent parameters (what its loss reads from
    the model); inspect lists the same outputs and always has candidates."""
    info = real_models["vae"]
    response = client.inspect(info["dir"])
    assert _names(response.outputs) == sorted(info["outputs"])
    assert response.candidates, "inspect always lists candidates"
    assert set(info["outputs"]) <= {c.name for c in response.candidates}
    assert all(c.dtype == "float32" and c.reason for c in response.candidates)


def test_gan_without_sampler_deploys_the_generator_its_critic_left_out(client, real_models, tmp_path):
    """Findings 4 and 5, then issue 33's critic principle: two networks trained by two optimizers,
    the discriminator computing its scores from the generator's samples (which compute nothing from
    it): the discriminator is the generator's critic, so the generator's output is deployed, with a
    warning that says what was left out; no batch-norm advice."""
    result = client.freeze(real_models["gan_plain"]["dir"], str(tmp_path / "m.pb"))
    m = result.manifest
    assert [o["name"] for o in m["outputs"]] == ["generator/Tanh:0"]
    assert [i["name"] for i in m["inputs"]] == ["z:0"]
    assert any("network trained apart" in w and "discriminator/" in w for w in m["warnings"]), m["warnings"]
    assert not any("is_training" in w for w in m["warnings"])


def test_gan_with_a_sampler_deploys_the_sampler(client, real_models, tmp_path):
    """Finding 4: the sampler tower (batch norm in inference mode) is the output; the
    training tower's batch norm is never needed, so there is nothing to rebuild."""
    m = client.freeze(real_models["gan_with_sampler"]["dir"], str(tmp_path / "m.pb")).manifest
    assert [o["name"] for o in m["outputs"]] == ["generator_1/Tanh:0"]
    assert m["outputs"][0]["reason"].startswith("inference branch")
    assert [i["name"] for i in m["inputs"]] == ["z:0"]


def test_outputs_after_the_head_and_the_right_copy(client, real_models, tmp_path):
    """Finding 5: detection post-processing and CTC decoding are followed to where they end;
    of data-parallel replicas the first tower is the model; a teacher and a fixed feature
    network are never where outputs come from."""
    cases = {"detector_nms": "end of the inference computation", "ctc_decoder": "end of the inference computation",
             "replicas": "prediction", "distillation": "", "fixed_feature_loss": ""}
    for name, reason in cases.items():
        info = real_models[name]
        m = client.freeze(info["dir"], str(tmp_path / (name + ".pb"))).manifest
        assert sorted(o["name"] for o in m["outputs"]) == sorted(info["outputs"]), name
        assert all(o["reason"].startswith(reason) for o in m["outputs"]), m["outputs"]
        assert not any(o["name"].startswith(("teacher/", "feature_net", "tower_1/")) for o in m["outputs"])
    replicas = client.freeze(real_models["replicas"]["dir"], str(tmp_path / "r.pb"))
    assert any("replica left out: tower_1/" in w for w in replicas.manifest["warnings"])


def test_no_outputs_found_has_its_own_reason_and_candidates(client, tmp_path):
    """A graph whose every computation ends in an assignment: no output is inferred, the
    reason says so (not NAME_NOT_IN_GRAPH), and the computation is listed as a candidate."""
    src = models.assign_only(str(tmp_path / "ck"))
    with pytest.raises(TffreezeError) as err:
        client.freeze(src.directory, str(tmp_path / "m.pb"))
    assert err.value.reason == "ERROR_REASON_NO_OUTPUTS_FOUND"
    assert err.value.metadata["candidates"].split(",")[0] == "product:0"
    response = client.inspect(src.directory)
    assert [c.name for c in response.candidates][:1] == ["product:0"]
    assert any("could not infer any output" in w for w in response.warnings)


def test_cli_refusal_prints_a_ready_to_paste_outputs_line(server, real_models, tmp_path):
    model = models.alternating_heads(str(tmp_path / "heads"))  # the graph leaves the outputs open
    proc = subprocess.run([TFFREEZE, "freeze", model.directory, "-o", str(tmp_path / "m.pb"),
                           "--server", server.target],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1
    assert re.search(r"--outputs (head_a_logits:0|value:0)", proc.stderr), proc.stderr
    inspect = subprocess.run([TFFREEZE, "inspect", real_models["vae"]["dir"], "--server", server.target],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
    assert inspect.returncode == 0 and "candidates (" in inspect.stdout, inspect.stdout


@pytest.mark.parametrize("name", ["vae", "dataset_fed", "text_vocab_table", "two_heads"])
def test_inspect_shows_what_freeze_produces(client, real_models, tmp_path, name):
    """Inspect and freeze take one code path: the same outputs, inputs and shapes."""
    info = real_models[name]
    response = client.inspect(info["dir"])
    m = client.freeze(info["dir"], str(tmp_path / "m.pb")).manifest
    assert [(t.name, t.dtype) for t in response.outputs] == [(o["name"], o["dtype"]) for o in m["outputs"]]
    assert [t.name for t in response.inputs] == [i["name"] for i in m["inputs"]]
    assert sorted(corpus.load(info["dir"])["outputs"]) == sorted(o["name"] for o in m["outputs"])


def test_optimizers_sharing_a_trunk_train_one_network(client, tmp_path):
    """Two optimizers whose variables overlap (heads trained by turns on one trunk) are one
    network, not a GAN's disjoint pair: the graph leaves open only whether the classifier
    logits (no probabilities computed from them) are deployed beside the value head, and
    the refusal says that and lists both."""
    model = models.alternating_heads(str(tmp_path / "m"))
    with pytest.raises(TffreezeError) as err:
        client.freeze(model.directory, str(tmp_path / "m.pb"))
    assert err.value.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS"
    assert "classifier's logits" in err.value.message and "different optimizers" not in err.value.message
    assert set(err.value.metadata["candidates"].split(",")[:2]) == {"head_a_logits:0", "value:0"}
    m = client.freeze(model.directory, str(tmp_path / "m.pb"), outputs=["head_a_logits:0", "value:0"]).manifest
    assert sorted(o["name"] for o in m["outputs"]) == ["head_a_logits:0", "value:0"]


def test_inspect_carries_the_evidence_for_and_against_each_candidate(client, server, real_models):
    """Issue 33: inspect lists the records the rules made about each output and candidate
    (tensor, claim, weight, rule, why, nodes): for a GAN, what each loss reads from the
    model and that the discriminator is the generator's critic; for replicas, the copy left out."""
    gan = client.inspect(real_models["gan_plain"]["dir"])
    records = {(e.tensor, e.claim, e.rule) for e in gan.evidence}
    assert ("generator/Tanh:0", "loss_input", "scored-by-fixed-network") in records, records
    assert any(t.startswith("discriminator/") and c == "critic" and r == "critic-networks" for t, c, r in records), records
    listed = {t.name for t in gan.outputs} | {t.name for t in gan.candidates}
    assert {e.tensor for e in gan.evidence} <= listed
    assert all(e.why and e.rule and e.nodes for e in gan.evidence)
    replicas = client.inspect(real_models["replicas"]["dir"])
    against = [e for e in replicas.evidence if e.weight < 0]
    assert [(e.claim, e.rule) for e in against] == [("replica", "replicas")] and against[0].tensor.startswith("tower_1/")
    proc = subprocess.run([TFFREEZE, "inspect", real_models["replicas"]["dir"], "--json", "--server", server.target],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["evidence"]
    assert {"tensor", "claim", "weight", "rule", "why", "nodes"} == set(shown[0])
    assert any(e["claim"] == "replica" for e in shown)
