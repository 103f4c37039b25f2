"""Issue 34, the seventh new-user trial: what it found misleading, reproduced in every client it
concerns. D1: an output the graph names with tf.identity is frozen by that name. D2/D5: a random
draw an input with a default decides is warned of with the --bind that turns it off. D3: a flag
that takes one value, given twice, is a usage error (not the last one silently)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest

from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
_PROGRAM = re.compile(r"^tffreeze(-cs|-cpp)? \w+: ", re.M)


def _save(folder, build, feed):
    g = tf.Graph()
    with g.as_default():
        train = build()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, feed(g))
            tf1.train.Saver().save(sess, os.path.join(folder, "model.ckpt"))
    return folder


def _named_regressor():
    x = tf1.placeholder(tf.float32, [None, 3], name="input")
    y = tf1.placeholder(tf.float32, [None, 1], name="target")
    pred = tf.matmul(tf.nn.relu(tf.matmul(x, tf1.get_variable("w1", [3, 8]))), tf1.get_variable("w2", [8, 1]))
    tf.identity(pred, name="output")  # the name the app fetches
    return tf1.train.AdamOptimizer().minimize(tf.reduce_mean(tf.square(pred - y)))


def _switched_dropout(kind):
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        y = tf1.placeholder(tf.int32, [None], name="y")
        h = tf.nn.relu(tf.matmul(x, tf1.get_variable("w1", [6, 8])))
        if kind == "rate":
            h = tf.nn.dropout(h, rate=tf1.placeholder_with_default(0.5, [], name="drop_prob"))
        else:
            mode = tf1.placeholder_with_default(True, [], name="mode")
            h = tf.cond(mode, lambda: tf.nn.dropout(h, rate=0.5), lambda: h)
        logits = tf.matmul(h, tf1.get_variable("w2", [8, 3]))
        tf.nn.softmax(logits, name="probs")
        return tf1.train.AdamOptimizer().minimize(tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
    return build


def _printing_classifier():
    """A classifier with a tf.print of its probabilities attached by a control dependency (the
    print runs whenever the probabilities are fetched): TF1 debugging left in."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    logits = tf.matmul(x, tf1.get_variable("w", [4, 3]))
    shown = tf.nn.softmax(logits)
    with tf.control_dependencies([tf.print(tf.strings.format("probs={}", shown))]):
        tf.identity(shown, name="probs")
    return tf1.train.AdamOptimizer().minimize(tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("trial7")
    rng = np.random.default_rng(7)
    out = {"base": str(base)}
    out["named"] = _save(str(base / "named"), _named_regressor, lambda g: {
        "input:0": rng.random((4, 3)), "target:0": rng.random((4, 1))})
    for kind in ("rate", "mode"):
        out[kind] = _save(str(base / kind), _switched_dropout(kind), lambda g: {
            "x:0": rng.random((4, 6)), "y:0": rng.integers(0, 3, 4)})
    out["printing"] = _save(str(base / "printing"), _printing_classifier, lambda g: {
        "x:0": rng.random((4, 4)), "y:0": rng.integers(0, 3, 4)})
    np.save(str(base / "x3.npy"), rng.random((2, 3)).astype(np.float32))
    np.save(str(base / "x4.npy"), rng.random((2, 4)).astype(np.float32))
    return out


def test_a_graph_that_prints_runs_in_every_client(made, server):
    """B1: tffreeze-cpp run (and programs linking the C++ library) died of SIGSEGV in PrintV2's
    Compute: TensorFlow, loaded with RTLD_DEEPBIND, wrote to an unconstructed std::cerr."""
    pb = os.path.join(made["base"], "printing.pb")
    done = subprocess.run([PY, "freeze", made["printing"], "-o", pb, "--server", server.target, "--outputs", "probs"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    firsts = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        run = subprocess.run([program, "run", pb, "--input", "x=%s/x4.npy" % made["base"], "--output", "probs"],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (client, run.returncode, run.stderr)
        firsts[client] = re.findall(r"-?\d+\.\d+", run.stdout)[:3]
    assert firsts["cs"] == firsts["py"] and firsts["cpp"] == firsts["py"] and len(firsts["py"]) == 3, firsts


def test_an_output_the_graph_names_with_an_identity_is_frozen_by_that_name(made, server):
    """D1: tf.identity(pred, name="output") for the app: the freeze said MatMul_1:0 and the
    frozen graph had no node `output`, so `run --output output` failed in every client."""
    pb, manifest = os.path.join(made["base"], "named.pb"), os.path.join(made["base"], "named.json")
    done = subprocess.run([PY, "freeze", made["named"], "-o", pb, "--manifest", manifest, "--server", server.target],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [o["name"] for o in json.load(open(manifest))["outputs"]] == ["output:0"]
    values = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        run = subprocess.run([program, "run", pb, "--input", "input=%s/x3.npy" % made["base"], "--output", "output"],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (client, run.stderr)
        values[client] = run.stdout.split()[:3]
    assert values["cs"][:2] == values["py"][:2] and values["cpp"][:2] == values["py"][:2], values


@pytest.mark.parametrize("kind,flag", [("rate", "--bind drop_prob=0"), ("mode", "--bind mode=false")])
def test_a_random_draw_an_input_with_a_default_decides_is_warned_of_with_its_bind(made, server, kind, flag):
    """D2: a dropout rate placeholder_with_default(0.5) under its own name froze with no word (every
    run differs). D5: a bool switch with default true choosing a cond's dropout branch was told to
    rebuild the graph, although --bind mode=false turns it off."""
    pb = os.path.join(made["base"], kind + ".pb")
    done = subprocess.run([PY, "freeze", made[kind], "-o", pb, "--server", server.target], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    warned = [l for l in done.stderr.splitlines() if "random op" in l]
    assert warned and flag in warned[0] and "rebuild the graph" not in warned[0], done.stderr
    bound = subprocess.run([PY, "freeze", made[kind], "-o", pb, "--server", server.target, "--verify"]
                           + flag.split(), capture_output=True, text=True, timeout=600)
    assert bound.returncode == 0 and "random op" not in bound.stderr, bound.stderr


@pytest.mark.parametrize("args,line", [
    (["--outputs", "a", "--outputs", "b"], "--outputs is given more than once: give it once"),
    (["--manifest", "a.json", "--manifest=b.json"], "--manifest is given more than once: give it once"),
    (["--bind", "kp=1", "--bind", "kp=0.5"], "--bind kp is given more than once: give it once"),
    (["--step", "1", "--step=2"], "--step is given more than once: give it once"),
])
def test_a_flag_that_takes_one_value_given_twice_is_a_usage_error_in_every_client(made, args, line):
    """D3: `--outputs probs --outputs cls` froze only cls, `--manifest a --manifest b` never wrote
    a, `--bind kp=1 --bind kp=0.5` left dropout on: all with exit 0."""
    lines = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "freeze", made["named"], "-o", os.path.join(made["base"], "never.pb")] + args,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (client, done.stderr)
        lines[client] = _PROGRAM.sub("", done.stderr.splitlines()[0])
    assert lines == {"py": line, "cs": line, "cpp": line}, lines
    assert not os.path.exists(os.path.join(made["base"], "never.pb"))


def _dataset_fed(folder):
    """Features and labels from a tf.data iterator; the features behind a placeholder_with_default."""
    g = tf.Graph()
    with g.as_default():
        rng = np.random.default_rng(3)
        data = tf1.data.Dataset.from_tensor_slices((rng.random((8, 4)).astype(np.float32),
                                                    rng.integers(0, 3, 8).astype(np.int32))).batch(4).repeat()
        features, labels = tf1.data.make_one_shot_iterator(data).get_next()
        x = tf1.placeholder_with_default(features, [None, 4], name="x")
        logits = tf.matmul(x, tf1.get_variable("w", [4, 3]))
        tf.nn.softmax(logits, name="probs")
        train = tf1.train.AdamOptimizer().minimize(tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train)
            tf1.train.Saver().save(sess, os.path.join(folder, "model.ckpt"))
    return folder


def test_the_dataset_warning_names_only_what_the_frozen_graph_takes(tmp_path, server):
    """D6: the warning said to feed IteratorGetNext_1:0 (the labels, pruned from the frozen graph)
    and not that x:0 is the input to feed."""
    folder = _dataset_fed(str(tmp_path / "ckpt"))
    manifest = str(tmp_path / "m.json")
    done = subprocess.run([PY, "freeze", folder, "-o", str(tmp_path / "m.pb"), "--manifest", manifest, "--server",
                           server.target], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    said = [w for w in json.load(open(manifest))["warnings"] if "tf.data" in w]
    assert said and "IteratorGetNext_1" not in said[0] and "feed x:0" in said[0], said


@pytest.mark.parametrize("args,line", [
    (["-o", " "], "freeze needs -o OUT.pb"),
    (["-o", "x.pb", "--outputs", ","], "--outputs names nothing: give names (--outputs a,b), or leave it out"),
    (["-o", "x.pb", "--outputs="], "--outputs names nothing: give names (--outputs a,b), or leave it out"),
    (["-o", "x.pb", "--inputs", " "], "--inputs names nothing: give names (--inputs a,b), or leave it out"),
])
def test_a_blank_value_is_a_usage_error_in_every_client(made, args, line):
    """R4 and R9: `-o ' '` wrote a file named " " (Python, C++) or failed in .NET's words (C#);
    `--outputs ''` (an empty variable in a build script) silently meant "choose for me"."""
    lines = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "freeze", made["named"]] + args, capture_output=True, text=True, timeout=300,
                              cwd=made["base"])
        assert done.returncode == 2, (client, done.stderr)
        lines[client] = _PROGRAM.sub("", done.stderr.splitlines()[0])
    assert lines == {"py": line, "cs": line, "cpp": line}, lines
    assert not os.path.exists(os.path.join(made["base"], " "))


def test_the_csharp_client_runs_through_a_symbolic_link(tmp_path):
    """R1: a link to tffreeze-cs in ~/bin failed: "Cannot open assembly .../tffreeze-cs.exe"."""
    link = tmp_path / "tffreeze-cs"
    link.symlink_to(CS)
    done = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("tffreeze-cs "), done.stderr


def test_a_new_command_on_a_stopping_server_is_told_so_in_every_client(made, tmp_path):
    """D8: SIGTERM to a shared `tffreeze serve` while a freeze runs. The freeze finishes; a new
    command is refused with SERVER_STOPPING, in the server's words, in every client (they used
    to say "cannot reach the server ... start one", C# a TLS hint)."""
    import signal
    import threading
    import time

    import attacks
    from conftest import start_server
    from tffreeze import FreezeClient

    srv = start_server(str(tmp_path / "data"), ["--web-port", "0", "--drain-seconds", "90"])
    web = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
    slow = attacks.slow_loop(str(tmp_path / "slow"), iterations=1_500_000)
    outcome = {}

    def under_way():
        try:
            with FreezeClient(srv.target, timeout=300) as c:
                outcome["manifest"] = c.freeze(slow, outputs=["out"], verify=True).manifest
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    t = threading.Thread(target=under_way)
    t.start()
    time.sleep(3.0)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    said = {}
    for client, program, server in (("py", PY, srv.target), ("cs", CS, web), ("cpp", CPP, srv.target)):
        done = subprocess.run([program, "freeze", made["named"], "-o", str(tmp_path / ("%s.pb" % client)),
                               "--server", server], capture_output=True, text=True, timeout=120)
        said[client] = (done.returncode, done.stderr)
    t.join(300)
    assert "manifest" in outcome, outcome.get("error")
    assert srv.proc.wait(60) == 0
    for client, (code, err) in said.items():
        assert code == 1 and "the tffreeze server is stopping" in err and "SERVER_STOPPING" in err, (client, err)
        assert "Start one" not in err and "TLS" not in err, (client, err)


def _xlog1py_regressor():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 1], name="y")
    w = tf1.get_variable("w", [3, 1])
    pred = tf.identity(tf.math.xlog1py(tf.nn.sigmoid(tf.matmul(x, w)), 1.0 + tf.abs(x[:, :1])), name="pred")
    return tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(pred - y)))


def test_the_csharp_client_says_when_tensorflowsharp_cannot_load_the_graph(made, tmp_path, web_server):
    """R13: a graph with an op TF 1.15 lacks was written by tffreeze-cs without a word on the
    terminal (only the manifest's loads_in_tensorflowsharp said so)."""
    rng = np.random.default_rng(3)
    folder = _save(str(tmp_path / "xlog"), _xlog1py_regressor, lambda g: {
        "x:0": rng.random((4, 3)), "y:0": rng.random((4, 1))})
    new_op = subprocess.run([CS, "freeze", folder, "-o", str(tmp_path / "x.pb"), "--server", web_server.web_url],
                            capture_output=True, text=True, timeout=600)
    assert new_op.returncode == 0, new_op.stderr
    assert "TensorFlowSharp (libtensorflow 1.15) cannot load this graph" in new_op.stderr, new_op.stderr
    assert "Xlog1py" in new_op.stderr and "--target tensorflowsharp" in new_op.stderr, new_op.stderr
    loads = subprocess.run([CS, "freeze", made["named"], "-o", str(tmp_path / "n.pb"), "--server",
                            web_server.web_url], capture_output=True, text=True, timeout=600)
    assert loads.returncode == 0 and "cannot load this graph" not in loads.stderr, loads.stderr


def test_an_output_path_ending_in_a_slash_for_no_folder_is_named_so_in_every_client(made, tmp_path):
    """R11: `-o nod/` for a folder that does not exist was told "-o nod/ is a folder"."""
    lines = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "freeze", made["named"], "-o", "nod/"], capture_output=True, text=True,
                              timeout=300, cwd=str(tmp_path))
        assert done.returncode == 1, (client, done.stderr)
        lines[client] = _PROGRAM.sub("", done.stderr.strip().splitlines()[-1])
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert "there is no folder nod: create it" in lines["py"] and "nod/model.pb" in lines["py"], lines
    assert not os.path.exists(str(tmp_path / "nod"))


def test_every_client_s_help_lists_the_exit_codes_of_a_signal():
    """R11: the C# and C++ top-level help listed 0, 1, 2 only."""
    for program in (PY, CS, CPP):
        shown = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0
        text = " ".join(shown.stdout.split())
        assert "130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP" in text, (program, text[-300:])
