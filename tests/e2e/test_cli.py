"""The `tffreeze` command as other teams' scripts call it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import models

TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")


def cli(*args, env=None, **kw):
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("TFFREEZE_SERVER", None) if env is None else None
    return subprocess.run([TFFREEZE, *args], capture_output=True, text=True, env=full_env, timeout=300, **kw)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("cli") / "run"), True, steps=[100, 200], mutate=True)


def test_help_lists_every_command():
    out = cli("--help")
    assert out.returncode == 0
    for verb in ("serve", "freeze", "inspect", "run"):
        assert verb in out.stdout
    assert "exit codes" in out.stdout and "TFFREEZE_SERVER" in out.stdout


def test_freeze_manifest_and_run_round_trip(server, ckpt, tmp_path):
    pb, man = tmp_path / "model.pb", tmp_path / "model.json"
    out = cli("freeze", ckpt.directory, "-o", str(pb), "--server", server.target, "--manifest", str(man))
    assert out.returncode == 0, out.stderr
    assert "wrote %s" % pb in out.stdout
    m = json.loads(man.read_text())
    assert models.documented(m["inputs"]) == [{"name": "x:0", "dtype": "float32", "shape": [-1, 3],
                            "reason": "placeholder the outputs depend on"}]
    assert m["outputs"][0]["name"] == "y:0" and m["outputs"][0]["shape"] == [-1, 2]
    assert m["checkpoint"]["prefix"] == "model.ckpt-200" and m["checkpoint"]["step"] == 200
    assert m["size_bytes"] == pb.stat().st_size and len(m["sha256"]) == 64
    assert isinstance(m["warnings"], list) and m["provenance"]["tensorflow_version"]

    np.save(tmp_path / "x.npy", ckpt.feeds["x:0"])
    run = cli("run", str(pb), "--input", "x=%s" % (tmp_path / "x.npy"), "--output", "y:0=%s" % (tmp_path / "y.npy"))
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ckpt.expected["y:0"], rtol=1e-6)


def test_server_from_environment_and_step(server, ckpt, tmp_path):
    pb = tmp_path / "m.pb"
    out = cli("freeze", ckpt.directory, "-o", str(pb), "--step", "100", "--outputs", "y", "--inputs", "x:0",
              env={"TFFREEZE_SERVER": server.target})
    assert out.returncode == 0, out.stderr
    assert "model.ckpt-100 (step 100)" in out.stdout


def test_inspect_json(server, ckpt):
    out = cli("inspect", ckpt.directory, "--server", server.target, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["available_checkpoints"] == ["model.ckpt-100", "model.ckpt-200"]
    assert {v["checkpoint_key"] for v in info["variables"]} == {"w", "b", "global_step"}
    assert info["outputs"][0]["name"] == "y:0" and info["outputs"][0]["reason"].startswith("graph sink")
    text = cli("inspect", ckpt.directory, "--server", server.target)
    assert text.returncode == 0 and "variables (3):" in text.stdout


@pytest.mark.parametrize("args,needle", [
    (["--outputs", "logitz"], "--outputs: 'logitz' is not in the graph"),
    (["--step", "5"], "no checkpoint at global step 5"),
])
def test_errors_exit_1_with_one_line_and_keep_existing_output(server, ckpt, tmp_path, args, needle):
    pb = tmp_path / "keep.pb"
    pb.write_bytes(b"previous good graph")
    out = cli("freeze", ckpt.directory, "-o", str(pb), "--server", server.target, *args)
    assert out.returncode == 1
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert pb.read_bytes() == b"previous good graph"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pb"]


def test_missing_source_and_unreachable_server(tmp_path, ckpt):
    out = cli("freeze", str(tmp_path / "nope"), "-o", str(tmp_path / "o.pb"), "--server", "127.0.0.1:1")
    assert out.returncode == 1 and "%s does not exist (CHECKPOINT_NOT_FOUND)" % (tmp_path / "nope") in out.stderr
    out = cli("freeze", ckpt.directory, "-o", str(tmp_path / "o.pb"), "--server", "127.0.0.1:1", "--timeout", "5")
    assert out.returncode == 1 and "cannot reach the tffreeze server at 127.0.0.1:1" in out.stderr
    assert "Traceback" not in out.stderr


def test_usage_errors_exit_2(tmp_path):
    assert cli("freeze", str(tmp_path)).returncode == 2  # no -o
    assert cli("frobnicate").returncode == 2
    assert cli("freeze", str(tmp_path), "-o", "x.pb", "--step", "many").returncode == 2


def test_run_reports_bad_tensor_names(server, ckpt, tmp_path):
    pb = tmp_path / "model.pb"
    assert cli("freeze", ckpt.directory, "-o", str(pb), "--server", server.target).returncode == 0
    np.save(tmp_path / "x.npy", ckpt.feeds["x:0"])
    out = cli("run", str(pb), "--input", "nope=%s" % (tmp_path / "x.npy"), "--output", "y=%s" % (tmp_path / "y.npy"))
    assert out.returncode == 1 and "tensor 'nope' is not in the graph; its placeholders: x [NOT_FOUND]" in out.stderr


def test_freeze_and_inspect_do_not_import_tensorflow(server, ckpt, tmp_path):
    code = (
        "import sys\n"
        "from tffreeze.cli import main\n"
        "assert main(['freeze', %r, '-o', %r, '--server', %r, '--quiet']) == 0\n"
        "assert main(['inspect', %r, '--server', %r, '--json']) == 0\n"
        "print('TF_IMPORTED' if any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules) else 'NO_TF')\n"
    ) % (ckpt.directory, str(tmp_path / "m.pb"), server.target, ckpt.directory, server.target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO_TF"


@pytest.fixture()
def empty_server(tmp_path):
    """A server of this test's own: the session server may already hold this checkpoint's
    blobs (other tests freeze the same model), and then there is no upload to show."""
    from conftest import start_server, stop_server

    srv = start_server(str(tmp_path / "own-data"))
    yield srv
    assert stop_server(srv) == 0


def test_progress_bar_on_a_tty_only(empty_server, tmp_path):
    from conftest import on_a_terminal

    server = empty_server
    model = models.seed_v1_v2(str(tmp_path / "ckpt"), True)
    shown = on_a_terminal([TFFREEZE, "freeze", model.directory, "-o", str(tmp_path / "m.pb"), "--server",
                           server.target], timeout=120)
    upload = [ln for ln in shown.split("\r") if ln.startswith("upload ")]
    # MiB, rate and time left, as tffreeze-cs and tffreeze-cpp say it (trial 10, finding 14: MB here, MiB there)
    assert upload and re.search(r"100%\|.*\| [\d.]+/[\d.]+ MiB, [\d.]+ MiB/s, \d+ (s|min) left", upload[-1]), upload
    stages = [ln for ln in shown.split("\r") if ln.startswith("freeze ")]
    assert stages and all("_" not in ln.split(", ", 1)[1].split("(")[0] for ln in stages if ", " in ln)  # by name
    assert shown.count("\r") < 60  # redrawn at most ten times a second
    piped = cli("freeze", model.directory, "-o", str(tmp_path / "m2.pb"), "--server", server.target)
    assert piped.returncode == 0 and piped.stderr == ""


def test_source_options_on_the_command_line(server, tmp_path):
    model = models.training_graph(str(tmp_path / "train"), True)
    man = tmp_path / "m.json"
    out = cli("freeze", model.directory, "-o", str(tmp_path / "m.pb"), "--server", server.target, "--manifest",
              str(man), "--bind", "keep_prob=", "--optimize", "--verify")
    assert out.returncode == 0, out.stderr
    m = json.loads(man.read_text())
    assert [b["name"] for b in m["bindings"]] == ["is_training:0"]
    assert [i["name"] for i in m["inputs"]] == ["x:0", "keep_prob:0"]
    assert m["verification"][0]["max_abs_diff"] < 1e-5 and "bound   is_training:0 = false" in out.stdout
    text = cli("inspect", model.directory, "--server", server.target)
    assert "bound:      is_training:0 = false" in text.stdout and "source:     saver" in text.stdout
    nometa = models.without_meta(str(tmp_path / "nm" / "ckpt"), True, True, rename="weights")
    out = cli("freeze", nometa.directory, "-o", str(tmp_path / "n.pb"), "--server", server.target,
              "--graph", nometa.extra["graph"], "--var-map", "weights=w")
    assert out.returncode == 0, out.stderr
    bad = cli("freeze", nometa.directory, "-o", str(tmp_path / "n.pb"), "--server", server.target,
              "--graph", nometa.extra["graph"], "--bind", "oops")
    assert bad.returncode == 1 and "--bind: 'oops': write NAME=VALUE" in bad.stderr


def test_serve_refuses_a_port_in_use(server, tmp_path):
    port = server.target.rsplit(":", 1)[1]
    out = subprocess.run([TFFREEZE, "serve", "--port", port, "--data-dir", str(tmp_path / "d")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "cannot listen on 127.0.0.1:%s" % port in out.stderr


def test_run_takes_the_manifest_s_names_and_aliases_and_prints_without_files(server, tmp_path):
    """`tffreeze run --manifest`: inputs and outputs by signature alias or tensor name, inputs
    checked against the manifest's dtypes and shapes; without an output file each output's
    dtype, shape and first values are printed (every output of the manifest by default)."""
    model = models.saved_model_v1(str(tmp_path / "sm"))
    pb, man = tmp_path / "m.pb", tmp_path / "m.json"
    out = cli("freeze", model.directory, "-o", str(pb), "--manifest", str(man), "--server", server.target)
    assert out.returncode == 0, out.stderr
    np.save(tmp_path / "x.npy", model.feeds["features:0"])
    expected = model.expected["scores:0"]
    printed = cli("run", str(pb), "--manifest", str(man), "--input", "x=%s" % (tmp_path / "x.npy"))
    assert printed.returncode == 0, printed.stderr
    name = json.loads(man.read_text())["outputs"][0]["name"]
    assert printed.stdout.startswith("%s float32 %s [" % (name, list(expected.shape))), printed.stdout
    assert "%.6g" % expected.reshape(-1)[0] in printed.stdout
    to_file = cli("run", str(pb), "--manifest", str(man), "--input", "x=%s" % (tmp_path / "x.npy"),
                  "--output", "probabilities=%s" % (tmp_path / "p.npy"))
    assert to_file.returncode == 0, to_file.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-6)
    np.save(tmp_path / "wrong.npy", np.ones((3, 5), np.float32))
    bad = cli("run", str(pb), "--manifest", str(man), "--input", "x=%s" % (tmp_path / "wrong.npy"))
    assert bad.returncode == 1 and "input x takes shape [-1, 3] (-1: any size) but the .npy holds [3, 5]" in bad.stderr, bad.stderr
    unknown = cli("run", str(pb), "--manifest", str(man), "--input", "nope=%s" % (tmp_path / "x.npy"))
    assert unknown.returncode == 1 and "'nope' is not among the manifest's inputs" in unknown.stderr and "[NOT_FOUND]" in unknown.stderr
    assert cli("run", str(pb), "--input", "features=%s" % (tmp_path / "x.npy")).returncode == 2  # no outputs named
