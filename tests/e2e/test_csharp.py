"""The C# client (Mono): protobuf wire code against Python's, freezing over gRPC-Web,
and running frozen graphs on the TF C API with the same results as Python."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import models
from tffreeze import FreezeClient
from google.protobuf import struct_pb2

from tffreeze_api.v1 import blob_pb2, freeze_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")


@pytest.fixture(scope="session", autouse=True)
def built():
    if not os.path.exists(CS):  # `make test` builds it; a bare pytest run builds it here
        subprocess.run(["make", "-s", "-C", ROOT, "csharp"], check=True)


def cs(*args, **kw):
    return subprocess.run([CS, *args], capture_output=True, text=True, timeout=600, **kw)


def _shape(*dims):
    shape = struct_pb2.ListValue()
    for d in dims:
        shape.values.add().number_value = d
    return shape


def _messages():
    digest = blob_pb2.Digest(sha256="ab" * 32, size_bytes=123456789012)
    info = freeze_pb2.TensorInfo(name="x:0", dtype="float32", shape=_shape(-1, 3, 0, 2 ** 40),
                                 reason="r\u00e9ason \U0001F600 \"q\" \\ \t\x01\x7f", has_default=True)
    info.default.list_value.values.add().number_value = 1.5
    info.default.list_value.values.add().string_value = "s"
    info.default.list_value.values.add().null_value = 0
    result = freeze_pb2.FreezeResult(sha256="ab" * 32, size_bytes=123456789012,
                                     inputs=[info, freeze_pb2.TensorInfo(name="k:0")], outputs=[info],
                                     checkpoint=freeze_pb2.CheckpointInfo(prefix="model.ckpt-0", step=0),
                                     warnings=["w1", ""], provenance=freeze_pb2.Provenance(tensorflow_version="2.21.0"),
                                     node_count=42, variables_frozen=-7, source_kind=freeze_pb2.SOURCE_KIND_SAVER,
                                     target=freeze_pb2.TARGET_TENSORFLOWSHARP,
                                     bindings=[freeze_pb2.Binding(name="is_training:0", reason="x")],
                                     verification=[freeze_pb2.OutputCheck(name=n, max_abs_diff=v) for n, v in (
                                         ("a", 1.25e-7), ("b", 1e16), ("c", 0.1), ("d", 123456789.123), ("e", -0.0),
                                         ("f", 1e-5), ("g", 0.0001), ("h", 5e-324), ("i", 1.7976931348623157e308),
                                         ("j", 2.0 / 3), ("k", 100.0), ("l", float("nan")), ("m", float("-inf")))],
                                     ema_variables=["w"])
    result.bindings[0].value.bool_value = False
    result.bindings.add(name="keep_prob:0", reason="y").value.number_value = 0.5
    result.signature.name = "serving_default"
    for key in ("b", "a", "aa", ""):
        result.signature.inputs[key].CopyFrom(freeze_pb2.SignatureTensor(name="x:0", dtype="float32",
                                                                         shape=_shape(-1)))
    result.signature.outputs["scores"].name = "y:0"
    options = freeze_pb2.FreezeOptions(outputs=["y", "z:1"], inputs=["x"], step=0, checkpoint_prefix="p", graph_path="g",
                                       signature="s", tags=["serve", "gpu"], ema=True,
                                       include_variables=["w"], exclude_variables=["v"], optimize=True, verify=True,
                                       target=freeze_pb2.TARGET_TENSORFLOWSHARP)
    options.bind["k"].number_value = 1.0
    options.bind["t"].bool_value = False
    options.bind["u"].null_value = 0
    options.var_map["a"] = "b"
    return {
        "Digest": digest,
        "FindMissingBlobsRequest": blob_pb2.FindMissingBlobsRequest(blobs=[digest, blob_pb2.Digest()]),
        "FindMissingBlobsResponse": blob_pb2.FindMissingBlobsResponse(missing=[digest]),
        "WriteBlobChunkRequest": blob_pb2.WriteBlobChunkRequest(digest=digest, offset=1 << 20, data=bytes(range(256)) * 5,
                                                                finish_write=True),
        "WriteBlobChunkResponse": blob_pb2.WriteBlobChunkResponse(committed_size=99, complete=True),
        "DownloadBlobRequest": blob_pb2.DownloadBlobRequest(digest=digest, offset=5),
        "DownloadBlobResponse": blob_pb2.DownloadBlobResponse(offset=7, data=b"\x00\xff" * 100),
        "FreezeRequest": freeze_pb2.FreezeRequest(files=[freeze_pb2.SourceFile(path="a/b.index", digest=digest)],
                                                  options=options),
        "FreezeOptions": freeze_pb2.FreezeOptions(),
        "FreezeResponse": freeze_pb2.FreezeResponse(result=result),
        "FreezeResult": result,
        "Progress": freeze_pb2.Progress(stage=freeze_pb2.STAGE_CONVERTING, message="m", fraction=0.65),
        "TensorInfo": freeze_pb2.TensorInfo(),
        "InspectResponse": freeze_pb2.InspectResponse(
            variables=[freeze_pb2.VariableInfo(checkpoint_key="w", dtype="float32", shape=_shape(2, 3))],
            switches=[freeze_pb2.SwitchInfo(name="is_training:0", dtype="bool")],
            source_kind=freeze_pb2.SOURCE_KIND_CHECKPOINT_ONLY),
    }


def test_wire_encoding_matches_python_protobuf(tmp_path):
    progress_event = freeze_pb2.FreezeResponse(progress=freeze_pb2.Progress(stage=freeze_pb2.STAGE_QUEUED, fraction=0.0))
    cases = dict(_messages(), FreezeResponse_progress=progress_event)
    for name, msg in cases.items():
        data = msg.SerializeToString(deterministic=True)
        src, dst = tmp_path / (name + ".py.bin"), tmp_path / (name + ".cs.bin")
        src.write_bytes(data)
        out = cs("wire-roundtrip", name.split("_")[0], str(src), str(dst))
        assert out.returncode == 0, out.stderr
        assert dst.read_bytes() == data, name
        assert type(msg).FromString(dst.read_bytes()) == msg


@pytest.mark.parametrize("kind", ["dense", "conv_bn", "while_loop"])
def test_csharp_freeze_over_grpc_web_and_run(web_server, tmp_path, kind):
    build = {"dense": lambda d: models.dense(d, True),
             "conv_bn": lambda d: models.training_graph(d, True, fused=True),
             "while_loop": lambda d: models.loop_and_cond(d, True, False)}[kind]
    model = build(str(tmp_path / "ckpt"))
    pb, man = tmp_path / "cs.pb", tmp_path / "cs.json"
    out = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(pb), "--manifest", str(man))
    assert out.returncode == 0, out.stderr
    with FreezeClient(web_server.target) as native:
        native_outcome = native.freeze(model.directory)
    assert pb.read_bytes() == native_outcome.graph_bytes  # byte for byte
    # The manifest files the two clients write for the same freeze are the same bytes.
    assert man.read_text() == native_outcome.manifest_json()
    py_cli = tmp_path / "py.json"
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "tffreeze"), "freeze", model.directory,
                    "--server", web_server.target, "-o", str(tmp_path / "py.pb"), "--manifest", str(py_cli),
                    "--quiet"], check=True)
    assert man.read_bytes() == py_cli.read_bytes()
    feeds = []
    for name, value in model.feeds.items():
        path = tmp_path / (name.replace(":", "_") + ".npy")
        np.save(path, value)
        feeds += ["--input", "%s=%s" % (name.split(":")[0], path)]
    fetches = []
    for name in model.expected:
        fetches += ["--output", "%s=%s" % (name, tmp_path / (name.replace(":", "_") + ".out.npy"))]
    run = cs("run", str(pb), "--manifest", str(man), *feeds, *fetches)
    assert run.returncode == 0, run.stderr
    python = models.run_frozen(pb.read_bytes(), model.feeds, list(model.expected))
    for (name, want), py in zip(model.expected.items(), python):
        got = np.load(tmp_path / (name.replace(":", "_") + ".out.npy"))
        np.testing.assert_allclose(got, py, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_csharp_runs_multiple_inputs_of_different_dtypes(server, tmp_path):
    model = models.saved_model_v2(str(tmp_path / "sm"))
    with FreezeClient(server.target) as client:
        outcome = client.freeze(model.directory, output_path=str(tmp_path / "m.pb"))
    (tmp_path / "m.json").write_text(outcome.manifest_json())
    np.save(tmp_path / "x.npy", model.feeds["x"])
    np.save(tmp_path / "steps.npy", model.feeds["steps"])
    run = cs("run", str(tmp_path / "m.pb"), "--manifest", str(tmp_path / "m.json"),
             "--input", "x=%s" % (tmp_path / "x.npy"), "--input", "steps=%s" % (tmp_path / "steps.npy"),
             "--output", "logits=%s" % (tmp_path / "logits.npy"), "--output", "count=%s" % (tmp_path / "count.npy"))
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), model.expected["logits"], rtol=1e-5, atol=1e-6)
    count = np.load(tmp_path / "count.npy")
    assert count.dtype == np.int32 and count == model.expected["count"]
    # A dtype the manifest does not expect is refused before running.
    np.save(tmp_path / "steps64.npy", model.feeds["steps"].astype(np.int64))
    bad = cs("run", str(tmp_path / "m.pb"), "--manifest", str(tmp_path / "m.json"),
             "--input", "x=%s" % (tmp_path / "x.npy"), "--input", "steps=%s" % (tmp_path / "steps64.npy"),
             "--output", "logits=%s" % (tmp_path / "l.npy"))
    assert bad.returncode == 1 and "input steps takes int32 but the .npy holds int64" in bad.stderr


def test_csharp_uint8_and_bool_inputs_and_deduplicated_upload(web_server, tmp_path):
    def build():
        image = models.tf1.placeholder(models.tf.uint8, [None, 4], name="image")
        flip = models.tf1.placeholder(models.tf.bool, [None], name="flip")
        w = models._variable("w", np.array([0.5, 1.0, 1.5, 2.0], np.float32), True)
        scaled = models.tf.cast(image, models.tf.float32) * w
        models.tf.where(flip, -scaled[:, 0], scaled[:, 1], name="picked")
        models.tf.logical_not(flip, name="negated")

    feeds = {"image:0": np.array([[1, 2, 3, 4], [250, 0, 9, 7]], np.uint8), "flip:0": np.array([True, False])}
    model = models._save(str(tmp_path / "ckpt"), build, feeds, ["picked:0", "negated:0"])
    pb, man = tmp_path / "m.pb", tmp_path / "m.json"
    first = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(pb), "--manifest", str(man))
    assert first.returncode == 0, first.stderr
    again = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(pb))
    assert "uploaded 0 of 3 file(s), 0 bytes" in again.stdout  # content-addressed: nothing re-sent
    np.save(tmp_path / "image.npy", feeds["image:0"])
    np.save(tmp_path / "flip.npy", feeds["flip:0"])
    run = cs("run", str(pb), "--manifest", str(man), "--input", "image=%s" % (tmp_path / "image.npy"),
             "--input", "flip:0=%s" % (tmp_path / "flip.npy"), "--output", "picked=%s" % (tmp_path / "p.npy"),
             "--output", "negated=%s" % (tmp_path / "n.npy"))
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.expected["picked:0"])
    negated = np.load(tmp_path / "n.npy")
    assert negated.dtype == np.bool_ and negated.tolist() == model.expected["negated:0"].tolist()


def test_example_binds_by_manifest(server, tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    with FreezeClient(server.target) as client:
        outcome = client.freeze(model.directory, output_path=str(tmp_path / "m.pb"))
    (tmp_path / "m.json").write_text(outcome.manifest_json())
    lib = next(p for p in subprocess.run(["bash", "-c", "ls -d %s/.venv/lib/python3*/site-packages/tensorflow" % ROOT],
                                         capture_output=True, text=True).stdout.split())
    out = subprocess.run(["mono", os.path.join(ROOT, "client_csharp", "bin", "BindByManifest.exe"), str(tmp_path / "m.pb"),
                          str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TFFREEZE_LIBTENSORFLOW=lib))
    assert out.returncode == 0, out.stderr
    want = models.run_frozen((tmp_path / "m.pb").read_bytes(), {"x:0": np.ones((1, 3), np.float32)}, ["y:0"])[0]
    import re
    m = re.match(r"y:0: shape \[1, 2\] first \[([-0-9.eE]+), ([-0-9.eE]+)\]", out.stdout)
    assert m, out.stdout
    np.testing.assert_allclose([float(m.group(1)), float(m.group(2))], want[0], rtol=1e-5)
    # the tenth trial: without the variable, the README's example died with a Mono stack trace; the
    # binding finds this checkout's TensorFlow as tffreeze-cs does
    bare = {k: v for k, v in os.environ.items() if k not in ("TFFREEZE_LIBTENSORFLOW", "TFFREEZE_DEFAULT_LIB")}
    out = subprocess.run(["mono", os.path.join(ROOT, "client_csharp", "bin", "BindByManifest.exe"), str(tmp_path / "m.pb"),
                          str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120, env=bare)
    assert out.returncode == 0 and out.stdout.startswith("y:0: shape [1, 2]"), out.stderr
    # and a library that is not there is one line, no stack trace
    out = subprocess.run(["mono", os.path.join(ROOT, "client_csharp", "bin", "BindByManifest.exe"), str(tmp_path / "m.pb"),
                          str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120,
                         env=dict(bare, TFFREEZE_LIBTENSORFLOW=str(tmp_path / "no-such-lib")))
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("BindByManifest: no TensorFlow C library at ") and " at TfFreeze" not in out.stderr, \
        out.stderr


def test_csharp_errors_and_exit_codes(web_server, tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    out = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(tmp_path / "x.pb"), "--outputs", "yy")
    assert out.returncode == 1
    assert "--outputs: 'yy' is not in the graph; did you mean 'y'?" in out.stderr and "[INVALID_ARGUMENT]" in out.stderr
    assert not (tmp_path / "x.pb").exists() and not (tmp_path / "x.pb.part").exists()
    out = cs("freeze", model.directory, "--server", "http://127.0.0.1:1", "-o", str(tmp_path / "x.pb"))
    assert out.returncode == 1 and "[UNAVAILABLE]" in out.stderr and "--web-port" in out.stderr
    assert "--server http://HOST:W" in out.stderr, out.stderr
    # the tenth trial: a TLS user was advised an http:// address
    out = cs("freeze", model.directory, "--server", "https://127.0.0.1:1", "-o", str(tmp_path / "x.pb"))
    assert out.returncode == 1 and "--server https://HOST:W" in out.stderr and "http://" not in out.stderr, out.stderr
    assert cs("freeze", model.directory).returncode == 2
    assert cs("frobnicate").returncode == 2
    assert cs("run", "m.pb", "--input", "x=x.npy").returncode == 2
    assert "freeze SOURCE -o OUT.pb" in cs("--help").stdout
    for args, usage in ((["freeze", "--help"], "freeze SOURCE -o OUT.pb"), (["run", "-h"], "run MODEL.pb")):
        helped = cs(*args)  # every command's help exits 0, and is that command's
        assert helped.returncode == 0 and usage in helped.stdout.splitlines()[0], (args, helped.stdout[:200])
    bad = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(tmp_path / "x.pb"), "--timeout", "soon")
    assert bad.returncode == 2 and "--timeout takes seconds" in bad.stderr, bad.stderr


def test_csharp_uploads_only_the_chosen_checkpoint(web_server, tmp_path):
    model = models.dense(str(tmp_path / "run"), True, steps=[100, 200], mutate=True)
    state = os.path.join(model.directory, "checkpoint")
    with open(state) as fh:
        text = fh.read()
    with open(state, "w") as fh:  # as written on a Windows training machine (escaped backslashes)
        fh.write(re.sub(r'"[^"]*/(model\.ckpt-\d+)"', lambda m: '"C:\\\\train\\\\%s"' % m.group(1), text))
    assert "C:\\\\train\\\\model.ckpt-200" in open(state).read()
    out = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(tmp_path / "a.pb"),
             "--manifest", str(tmp_path / "a.json"))
    assert out.returncode == 0, out.stderr
    assert re.search(r"uploaded \d of 3 file\(s\)", out.stdout), out.stdout  # index, data, meta of model.ckpt-200 only
    assert json.loads((tmp_path / "a.json").read_text())["checkpoint"]["step"] == 200
    out = cs("freeze", model.directory, "--server", web_server.web_url, "-o", str(tmp_path / "b.pb"),
             "--manifest", str(tmp_path / "b.json"), "--step", "100")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "b.json").read_text())["checkpoint"]["step"] == 100
    with FreezeClient(web_server.target) as native:
        assert native.freeze(model.directory, step=100).graph_bytes == (tmp_path / "b.pb").read_bytes()


def test_csharp_finds_the_only_checkpoint_folder_below_source(web_server, tmp_path):
    """Seed 003's layout: saver.save(sess, 'models/model_name'); the user points at the project."""
    project = tmp_path / "project"
    model = models.dense(str(project / "models"), True)
    out = cs("freeze", str(project), "--server", web_server.web_url, "-o", str(tmp_path / "a.pb"))
    assert out.returncode == 0, out.stderr
    assert "holds no checkpoint itself; using models/, the only folder below it that does" in out.stderr
    with FreezeClient(web_server.target) as native:
        assert native.freeze(model.directory).graph_bytes == (tmp_path / "a.pb").read_bytes()
    models.dense(str(project / "other"), True)
    out = cs("freeze", str(project), "--server", web_server.web_url, "-o", str(tmp_path / "b.pb"))
    assert out.returncode == 1 and "2 folders below it do: models/, other/" in out.stderr
    assert "[NOT_FOUND]" in out.stderr and not (tmp_path / "b.pb").exists()
