"""Issue 34 finding 6, in every client: the server words its messages in request terms
(graph_path, SOURCE, options.X, a trailing "[outputs: ...]"); each command line rewords them
with the flags and the path the user typed. The rules are one table per client, each a copy of
`_WORDS` in client_py/tffreeze/cli.py (the reference). Each case below is a real server error
(or warning) that exercises one rule; the three clients print the same lines (their own
program names normalised, as in test_parity) and none of them leaves a request field behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import models
from test_parity import CPP, CS, PY, built, _run, _stderr  # noqa: F401  (built: the clients, made once)

_REQUEST_WORDS = re.compile(r"graph_path|\bSOURCE\b|\boptions\.|\[outputs:")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("wording")
    models.dense(str(base / "project" / "models"), True)
    models.dense(str(base / "two" / "a"), True)
    models.dense(str(base / "two" / "b"), True)
    several = models.dense(str(base / "several"), True, steps=[100, 200], mutate=True)
    models.saved_model_v1(str(base / "saved"))
    partial = models.partial_save(str(base / "partial"))
    models.saved_model_v2(str(base / "saved2"))
    train = models.training_graph(str(base / "train"), True, cf_v1=True)
    nometa = models.without_meta(str(base / "nometa" / "ckpt"), True, as_text=True, rename="dense")
    frozen = str(base / "frozen.pb")
    models.two_signatures(str(base / "nodefault"))
    models.edit_saved_model(str(base / "nodefault"), _rename_serving_default)
    models.saved_model_v1(str(base / "twotags"))
    models.edit_saved_model(str(base / "twotags"), _add_train_meta_graph)
    _erfinv_saved_model(str(base / "erfinv"))
    ema = models.ema_model(str(base / "ema"), True)
    _hard_dropout(str(base / "dropout"))
    os.makedirs(str(base / "novars"))  # a TF2 SavedModel copied without its variables/ folder
    shutil.copy(str(base / "saved2" / "saved_model.pb"), str(base / "novars"))
    from tffreeze import FreezeClient

    return {"nested": str(base / "project"), "two": str(base / "two"), "several": several.directory,
            "saved": str(base / "saved"), "savedfile": str(base / "saved" / "saved_model.pb"),
            "savedvars": str(base / "saved" / "variables"), "savedvars2": str(base / "saved2" / "variables"),
            "severalprefix": os.path.join(several.directory, "model.ckpt-200"), "train": train.directory,
            "partial": partial.directory, "nometa": nometa.directory, "graph": nometa.extra["graph"],
            "frozen": frozen, "_freeze": (FreezeClient, several.directory, frozen),
            "nodefault": str(base / "nodefault"), "twotags": str(base / "twotags"),
            "typo": str(base / "projct"), "typoprefix": os.path.join(several.directory, "model.ckpt-20"),
            "typostep": os.path.join(several.directory, "model.ckpt-10"),
            "nowhere": str(base / "zzzzzzzz"), "erfinv": str(base / "erfinv"),
            "novars": str(base / "novars"), "ema": ema.directory,
            "dropout": str(base / "dropout")}


def _hard_dropout(directory):
    """A dropout with no training switch (tf.nn.dropout, rate 0.5): its outputs differ on every run."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 10], name="x")
        w = tf1.get_variable("w", [10, 4])
        tf.nn.softmax(tf.nn.dropout(tf.matmul(x, w), rate=0.5), name="probs")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))


def _erfinv_saved_model(directory):
    """A TF2 SavedModel with two signatures; serving_default needs Erfinv, which TensorFlow 1.15 lacks."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="p")])
        def erfinv(self, p):
            return {"z": tf.math.erfinv(p * 0.5)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="p")])
        def double(self, p):
            return {"z": p * 2.0}

    module = Module()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.erfinv, "double": module.double})


def _rename_serving_default(saved_model):
    """Two signatures, neither of them serving_default."""
    signatures = saved_model.meta_graphs[0].signature_def
    signatures["probs"].CopyFrom(signatures["serving_default"])
    del signatures["serving_default"]


def _add_train_meta_graph(saved_model):
    """A second MetaGraph, tagged serve and train."""
    second = saved_model.meta_graphs.add()
    second.CopyFrom(saved_model.meta_graphs[0])
    second.meta_info_def.tags.append("train")


# (id, command, source, options, exit code, what the Python line says: the rule's rewording)
CASES = [
    ("nested-warning", "freeze", "nested", [], 0, "warning: {nested} holds no checkpoint itself"),
    ("no-meta", "freeze", "nometa", [], 1, "name it with --graph FILE"),
    ("two-folders", "freeze", "two", [], 1, "Give one of them instead, e.g. `PROGRAM freeze {two}/a`."),
    ("two-folders-inspect", "inspect", "two", [], 1, "Give one of them instead, e.g. `PROGRAM inspect {two}/a`."),
    ("input-shape", "freeze", "several", ["--input-shape", "x=1,3", "--input-shape", "nope=2"], 1,
     "--input-shape: nope is not an input of the frozen graph"),
    ("option-not-applying", "freeze", "saved", ["--step", "5"], 1, "--step does not apply to a SavedModel"),
    ("frozen-graph", "freeze", "frozen", [], 1, "{frozen} is a graph without variables (frozen already): use it as "
     "it is (the inspect command summarises it). To freeze a checkpoint, give `PROGRAM freeze` its folder"),
    # Parts of a SavedModel given as SOURCE: the fix is the SavedModel's folder.
    ("saved-model-file", "freeze", "savedfile", [], 1, "{savedfile} is the graph file of a SavedModel, which is "
     "frozen with its variables/ folder: give `PROGRAM freeze` its folder (INVALID_PATH)"),
    ("saved-model-file-inspect", "inspect", "savedfile", [], 1, "give `PROGRAM inspect` its folder (INVALID_PATH)"),
    # --step beside a SOURCE that names another checkpoint: refused, neither is guessed.
    ("step-and-prefix", "freeze", "severalprefix", ["--step", "100"], 1, "{severalprefix} is the checkpoint of step "
     "200, not the one of --step 100: give its folder with --step 100, or the checkpoint alone (INVALID_OPTION)"),
    # --var-map: each side is checked, with "did you mean"; a shape mismatch names the mapping.
    ("var-map-graph-side", "freeze", "several", ["--var-map", "wx=w"], 1,
     "--var-map wx=w: the graph has no variable wx; did you mean w? (NAME_NOT_IN_GRAPH)"),
    ("var-map-key-side", "freeze", "several", ["--var-map", "w=ww"], 1,
     "--var-map w=ww: the checkpoint has no key ww; did you mean w? (NAME_NOT_IN_GRAPH)"),
    ("var-map-shape", "freeze", "several", ["--var-map", "w=b"], 1, "--var-map: variable w has shape [3, 2] in the "
     "graph but [2] in checkpoint key b, which --var-map maps it to (VARIABLE_MISMATCH)"),
    # A --bind that selects the training branch names itself and the inference value.
    ("bind-training", "freeze", "train", ["--bind", "is_training=true"], 1, "Bind it to its inference value "
     "(--bind is_training=false), or leave it to the default (TRAINING_OP_NEEDED) [FAILED_PRECONDITION]"),
    # --inputs: case aside, then "did you mean"; nothing close: the placeholders (not the Saver's).
    ("inputs-case", "freeze", "several", ["--inputs", "X"], 1, "--inputs: 'X' is not in the graph; did you mean 'x'?"),
    ("inputs-none-close", "freeze", "several", ["--inputs", "zzz"], 1,
     "--inputs: 'zzz' is not in the graph; its placeholders: x. Inspect"),
    # The third trial: --inputs and --bind mistakes named as typed.
    ("inputs-not-read", "freeze", "train", ["--inputs", "labels"], 0,
     "warning: input labels:0 is not used by the outputs (or was bound); it is not in the frozen graph"),
    ("bind-an-input", "freeze", "train", ["--bind", "x=1"], 1, "--bind: x is an input of shape [-1, 6, 6, 2], not a "
     "switch: bind takes scalar switches (a training flag, a rate); feed x when the frozen graph runs"),
    ("bind-training-value", "freeze", "train", ["--bind", "keep_prob=0.5"], 0, "warning: --bind keep_prob=0.5: its "
     "inference value is 1.0; the frozen graph computes what the model does in training"),
    ("inputs-a-variable", "freeze", "several", ["--inputs", "w"], 1, "--inputs: 'w' is a variable: its value comes "
     "from the checkpoint. Name the tensor that reads it, or a placeholder (INVALID_OPTION)"),
    ("saved-model-v2-variables", "freeze", "savedvars2", [], 1, "{savedvars2} holds a checkpoint named "
     "'variables' and no graph, as the variables/ folder inside a SavedModel does: give the SavedModel's folder"),
    ("saved-model-variables", "freeze", "savedvars", [], 1, "{savedvars} holds a checkpoint named 'variables' and "
     "no graph, as the variables/ folder inside a SavedModel does: give the SavedModel's folder (the one holding "
     "saved_model.pb) instead (NO_GRAPH)"),
    ("graph-with-variables", "freeze", "graph", [], 1, "as {graph} and this file as --graph"),
    ("outputs-note", "freeze", "partial", [], 1,
     "[FAILED_PRECONDITION]\nthe outputs it chose (nothing was frozen): y:0 (graph sink: "),
    # SavedModel signatures and tag sets: named by their flags, with the ones the SavedModel has.
    ("signature-none-default", "freeze", "nodefault", [], 1, "--signature: the SavedModel has several signatures "
     "(embed, probs) and none is serving_default; choose one with --signature (e.g. --signature embed) "
     "(SIGNATURE_NOT_FOUND) [NOT_FOUND]"),
    ("tag-set-not-there", "freeze", "saved", ["--tag", "train"], 1, "--tag: the SavedModel has no tag set train; "
     "its tag sets: serve. Name one with --tag (e.g. --tag serve) (SIGNATURE_NOT_FOUND) [NOT_FOUND]"),
    ("tag-sets-several", "inspect", "twotags", [], 1, "--tag: saved_model.pb holds 2 MetaGraphs (tag sets: serve; "
     "serve,train); name the one to freeze with --tag (e.g. --tag serve) (SAVED_MODEL_AMBIGUOUS)"),
    # A SOURCE that does not exist says so, with the name beside it it most likely meant.
    ("source-typo", "inspect", "typo", [], 1, "{typo} does not exist; did you mean {nested}? (CHECKPOINT_NOT_FOUND) "
     "[NOT_FOUND]"),
    ("source-prefix-typo", "freeze", "typoprefix", [], 1, "{typoprefix} does not exist; did you mean "
     "{severalprefix}? (CHECKPOINT_NOT_FOUND) [NOT_FOUND]"),
    # (R12 of the sixth trial: of one prefix's checkpoints, the latest is meant, not the first in order)
    ("source-prefix-latest", "freeze", "typostep", [], 1, "{typostep} does not exist; did you mean "
     "{severalprefix}? (CHECKPOINT_NOT_FOUND) [NOT_FOUND]"),
    ("source-nothing-close", "freeze", "nowhere", [], 1, "{nowhere} does not exist (CHECKPOINT_NOT_FOUND) [NOT_FOUND]"),
    # An op's name after the article it takes.
    ("bind-an-op", "freeze", "several", ["--bind", "y=1"], 1, "--bind: y is an AddV2, not a placeholder; switches "
     "the outputs depend on: none (NAME_NOT_IN_GRAPH) [INVALID_ARGUMENT]"),
    # A value the user gave is quoted as typed, even one that reads like a request field
    # (a Keras SavedModel's input is named "inputs"): only the option's name becomes a flag.
    ("value-named-inputs", "freeze", "several", ["--input-shape", "inputs=a,10"], 1, "--input-shape: inputs=a,10: "
     "write NAME=D1,D2,... with dimensions as non-negative integers or -1 (unknown)"),
    ("bind-value-named-inputs", "freeze", "several", ["--bind", "inputs=maybe"], 1,
     "--bind: inputs=maybe: a binding is true, false, a number, or empty (leave it unbound) (INVALID_OPTION)"),
    ("var-map-value-named-outputs", "freeze", "several", ["--var-map", "outputs=w"], 1,
     "--var-map outputs=w: the graph has no variable outputs"),
    # A TF2 SavedModel's outputs are its signature's: the fix is another signature, not --outputs.
    ("outputs-note-signature", "freeze", "erfinv", ["--target", "tensorflowsharp"], 1,
     "[FAILED_PRECONDITION]\nthe outputs it chose (nothing was frozen): Identity:0 (signature_def 'serving_default' "
     "output 'z'); to freeze others, choose another signature with --signature (its others: double)"),
    # A SavedModel copied without its variables/ folder: the part to copy, not an engine failure.
    ("saved-model-no-variables", "freeze", "novars", [], 1, "{novars} holds saved_model.pb but no variables/ folder "
     "(variables/variables.index and its variables.data-* files), which loading a TF2 SavedModel needs: copy the "
     "whole folder tf.saved_model.save wrote (saved_model.pb, variables/, assets/), not saved_model.pb alone "
     "(CHECKPOINT_NOT_FOUND) [NOT_FOUND]"),
    ("saved-model-no-variables-inspect", "inspect", "novars", [], 1, "{novars} holds saved_model.pb but no "
     "variables/ folder"),
    # With --ema, a --var-map is checked as without it: its key's average, or the key itself.
    ("ema-var-map-shape", "freeze", "ema", ["--ema", "--var-map", "w=offset"], 1, "--var-map: variable w has "
     "shape [3, 2] in the graph but [2] in checkpoint key offset, which --var-map maps it to (VARIABLE_MISMATCH)"),
    ("ema-var-map-dtype", "freeze", "ema", ["--ema", "--var-map", "w=global_step"], 1, "--var-map: variable w is "
     "float32 in the graph but int64 in the checkpoint (key 'global_step', which --var-map maps it to) "
     "(VARIABLE_MISMATCH)"),
    # Outputs that depend on a random draw: a warning, and verify says they are random.
    ("random-outputs", "freeze", "dropout", [], 0, "warning: the outputs depend on random op(s) "
     "dropout/random_uniform/RandomUniform (RandomUniform): they differ on every run. A dropout or noise layer left "
     "on in inference (tf.nn.dropout with no training switch) does this: rebuild the graph with it off"),
    ("outputs-note-random-verify", "freeze", "dropout", ["--verify"], 1, "verify: the outputs are random: they depend "
     "on dropout/random_uniform/RandomUniform (RandomUniform), which draw new numbers on every run"),
    # A failure that blames another option names that option's fix, not other outputs.
    ("no-outputs-note", "freeze", "several", ["--bind", "nope=1"], 1,
     "--bind: nope is not among the nodes the outputs need; switches the outputs depend on: none (NAME_NOT_IN_GRAPH)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_client_words_a_server_message_for_its_command_line(web_server, sources, tmp_path, case):
    name, command, source, options, code, expect = case
    if source == "frozen" and not os.path.exists(sources["frozen"]):
        client_type, checkpoint, frozen = sources["_freeze"]
        with client_type(web_server.target) as client:
            client.freeze(checkpoint, output_path=frozen)
    runs = {c: _run(c, command, sources[source], options, str(tmp_path), web_server) for c in ("py", "cs", "cpp")}
    for client, run in runs.items():
        assert run.returncode == code, (client, run.stderr)
    lines = {client: _stderr(run.stderr) for client, run in runs.items()}
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"].strip(), "the case gives a message"
    assert not _REQUEST_WORDS.search(lines["py"]), lines["py"]
    assert expect.format(**{k: v for k, v in sources.items() if isinstance(v, str)}) in lines["py"], lines["py"]
    assert ("the outputs it chose" in lines["py"]) == name.startswith("outputs-note"), lines["py"]
    assert ("--outputs a,b" in lines["py"]) == (name.startswith("outputs-note") and "signature" not in name), lines["py"]
    assert "report it" not in lines["py"], lines["py"]


def test_a_deadline_names_the_timeout_flag_in_every_client(tmp_path):
    """A server that accepts the connection and never answers: each client's --timeout ends the
    call, and the message names the flag and its value (not gRPC's bare "Deadline Exceeded", nor
    "cannot reach the server" from C#'s HTTP timeout)."""
    import socket

    models.dense(str(tmp_path / "ckpt"), True)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        lines = {}
        for client, argv in (("py", [PY, "--server", "127.0.0.1:%d" % port]),
                             ("cs", [CS, "--server", "http://127.0.0.1:%d" % port]),
                             ("cpp", [CPP, "--server", "127.0.0.1:%d" % port])):
            run = subprocess.run([argv[0], "inspect", str(tmp_path / "ckpt"), "--timeout", "0.5"] + argv[1:],
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 1, (client, run.stderr)
            lines[client] = _stderr(run.stderr).strip()
    finally:
        silent.close()
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == "no answer within --timeout 0.5 seconds: give a larger --timeout (the default is 600) " \
                          "[DEADLINE_EXCEEDED]", lines["py"]
