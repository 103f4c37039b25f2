"""Freezing real checkpoints through the real server (port 0), checking the
frozen graph's outputs against the original model's."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import models
from tffreeze import FreezeClient, NotFoundError

KINDS = [pytest.param(False, id="ref"), pytest.param(True, id="resource")]


def _freeze_and_compare(client, model, **kwargs):
    outcome = client.freeze(model.directory, **kwargs)
    fetches = list(model.expected)
    got = models.run_frozen(outcome.graph_bytes, model.feeds, fetches)
    for name, value in zip(fetches, got):
        np.testing.assert_allclose(value, model.expected[name], rtol=1e-6, atol=1e-6)
    return outcome


@pytest.mark.parametrize("resource", KINDS)
def test_seed_v1_plus_v2_without_inputs(client, tmp_path, resource):
    model = models.seed_v1_v2(str(tmp_path), resource)
    assert models.variable_ops(model.directory) == (["VarHandleOp"] if resource else ["VariableV2"])
    outcome = _freeze_and_compare(client, model)
    m = outcome.manifest
    assert [o["name"] for o in m["outputs"]] == ["add:0"]
    assert m["outputs"][0]["reason"].startswith("graph sink")
    assert m["outputs"][0]["dtype"] == "float32" and m["outputs"][0]["shape"] == [1]
    assert models.documented(m["inputs"]) == []
    assert m["variables_frozen"] == 2
    ops = models.graph_ops(outcome.graph_bytes)
    assert not {"VariableV2", "VarHandleOp", "Assign", "AssignVariableOp", "RestoreV2", "SaveV2"} & set(ops)


@pytest.mark.parametrize("resource", KINDS)
def test_placeholders_and_variable_at_global_step(client, tmp_path, resource):
    model = models.placeholders_global_step(str(tmp_path), resource)
    outcome = _freeze_and_compare(client, model)
    m = outcome.manifest
    assert m["checkpoint"]["prefix"] == "my_test_model-1000" and m["checkpoint"]["step"] == 1000
    assert [i["name"] for i in m["inputs"]] == ["w1:0", "w2:0"]
    assert all(i["shape"] is None and i["dtype"] == "float32" for i in m["inputs"])  # unknown rank -> null
    assert [o["name"] for o in m["outputs"]] == ["op_to_restore:0"]


@pytest.mark.parametrize("resource", KINDS)
def test_latest_of_several_checkpoints_and_step(client, tmp_path, resource):
    model = models.several_steps(str(tmp_path), resource)
    # The state file names paths on the training machine: matched by basename, never followed.
    state = os.path.join(model.directory, "checkpoint")
    with open(state) as fh:
        text = fh.read()
    with open(state, "w") as fh:
        fh.write(re.sub(r'"[^"]*/(model\.ckpt-\d+)"', r'"/home/trainer/runs/exp7/\1"', text))
    assert '"/home/trainer/runs/exp7/model.ckpt-3"' in open(state).read()
    outcome = _freeze_and_compare(client, model)
    assert outcome.manifest["checkpoint"]["step"] == 3
    x = model.feeds["x:0"]
    (y3,) = models.run_frozen(outcome.graph_bytes, model.feeds, ["y:0"])
    bias = y3 - x @ np.full((3, 2), 2.0, np.float32)  # step 3 saved w = 2
    step2 = client.freeze(model.directory, step=2)
    assert step2.manifest["checkpoint"] == {"prefix": "model.ckpt-2", "step": 2, "meta_graph": "model.ckpt-2.meta"}
    (y2,) = models.run_frozen(step2.graph_bytes, model.feeds, ["y:0"])
    np.testing.assert_allclose(y2, x @ np.ones((3, 2), np.float32) + bias, rtol=1e-5, atol=1e-5)
    # A prefix given directly wins over the state file.
    step1 = client.freeze(os.path.join(model.directory, "model.ckpt-1"))
    assert step1.manifest["checkpoint"]["step"] == 1
    assert step1.upload.files == 3  # only that checkpoint's index, data and meta


@pytest.mark.parametrize("resource", KINDS)
def test_renamed_saver_keys(client, tmp_path, resource):
    model = models.dense(str(tmp_path), resource, saver_keys=True)
    _freeze_and_compare(client, model)
    info = client.inspect(model.directory)
    mapped = {v.checkpoint_key: v.graph_variable for v in info.variables}
    assert mapped["renamed/weights"] == "w" and mapped["renamed/bias"] == "b"


@pytest.mark.parametrize("resource", KINDS)
def test_output_registered_in_collection(client, tmp_path, resource):
    model = models.dense(str(tmp_path), resource, collection="pred_network")
    outcome = _freeze_and_compare(client, model)
    m = outcome.manifest
    assert [o["name"] for o in m["outputs"]] == ["y:0"]
    assert m["outputs"][0]["reason"] == "collection 'pred_network'"
    assert models.documented(m["inputs"]) == [{"name": "x:0", "dtype": "float32", "shape": [-1, 3],
                            "reason": "placeholder the outputs depend on"}]


@pytest.mark.parametrize("resource", KINDS)
def test_while_loop_reading_a_variable(client, tmp_path, resource):
    model = models.while_loop(str(tmp_path), resource)
    first = _freeze_and_compare(client, model)
    second = client.freeze(model.directory)
    assert first.graph_bytes == second.graph_bytes


def test_auto_resolution_matches_explicit_names_and_x_vs_x0(client, tmp_path):
    model = models.dense(str(tmp_path), True)
    auto = client.freeze(model.directory)
    by_node = client.freeze(model.directory, outputs=["y"], inputs=["x"])
    by_tensor = client.freeze(model.directory, outputs=["y:0"], inputs=["x:0"])
    assert auto.graph_bytes == by_node.graph_bytes == by_tensor.graph_bytes
    assert by_node.manifest["outputs"][0]["name"] == "y:0"
    assert by_node.manifest["outputs"][0]["reason"] == "explicit outputs"
    assert by_node.manifest["inputs"][0]["reason"] == "explicit inputs"


def test_identical_bytes_and_refreeze_uploads_nothing(client, tmp_path):
    from conftest import start_server, stop_server

    model = models.while_loop(str(tmp_path / "ckpt"), True)
    fresh = start_server(str(tmp_path / "fresh-data"))  # a server that has seen nothing
    try:
        with FreezeClient(fresh.target) as other:
            first = other.freeze(model.directory)
            second = other.freeze(model.directory)
    finally:
        assert stop_server(fresh) == 0
    assert first.upload.uploaded_bytes > 0 and first.upload.uploaded_files == 3
    assert second.upload.uploaded_bytes == 0 and second.upload.uploaded_files == 0
    assert first.graph_bytes == second.graph_bytes
    # Another server process (other function-name counters, other worker) gives the same bytes.
    third = client.freeze(model.directory)
    assert third.graph_bytes == first.graph_bytes and third.manifest["sha256"] == first.manifest["sha256"]


def test_output_written_to_path(client, tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("TFFREEZE_CACHE_DIR", str(tmp_path / "client-cache"))  # no graph received before
    model = models.dense(str(tmp_path / "ckpt"), True)
    out = tmp_path / "model.pb"
    outcome = client.freeze(model.directory, output_path=str(out))
    assert outcome.graph_bytes is None and out.stat().st_size == outcome.manifest["size_bytes"] and outcome.downloaded
    assert hashlib.sha256(out.read_bytes()).hexdigest() == outcome.manifest["sha256"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    # A re-freeze into the same file (an incremental build) skips the download but refreshes mtime.
    os.utime(out, (1000, 1000))
    again = client.freeze(model.directory, output_path=str(out))
    assert not again.downloaded and out.stat().st_mtime > 1000
    out.write_bytes(b"stale")  # the results cache keeps its own copy: the graph comes from there
    fresh = client.freeze(model.directory, output_path=str(out))
    assert fresh.linked and hashlib.sha256(out.read_bytes()).hexdigest() == outcome.manifest["sha256"]
    out.write_bytes(b"stale")
    monkeypatch.setenv("TFFREEZE_CACHE_DIR", "off")  # no caches: downloaded
    fresh = client.freeze(model.directory, output_path=str(out))
    assert fresh.downloaded and hashlib.sha256(out.read_bytes()).hexdigest() == outcome.manifest["sha256"]


def test_restore_op_with_file_writing_dependency_is_not_run(client, tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), False)
    victim = tmp_path / "written-by-restore.txt"

    def booby_trap(meta):
        node = meta.graph_def.node.add()
        node.name, node.op = "pwn/filename", "Const"
        node.attr["dtype"].type = 7  # DT_STRING
        node.attr["value"].tensor.dtype = 7
        node.attr["value"].tensor.string_val.append(str(victim).encode())
        node = meta.graph_def.node.add()
        node.name, node.op = "pwn/contents", "Const"
        node.attr["dtype"].type = 7
        node.attr["value"].tensor.dtype = 7
        node.attr["value"].tensor.string_val.append(b"the graph ran")
        node = meta.graph_def.node.add()
        node.name, node.op = "pwn", "WriteFile"
        node.input.extend(["pwn/filename", "pwn/contents"])
        restore = next(n for n in meta.graph_def.node if n.name == meta.saver_def.restore_op_name.split(":")[0])
        restore.input.append("^pwn")

    models.edit_meta(model.directory, booby_trap)
    outcome = _freeze_and_compare(client, model)
    client.inspect(model.directory)
    assert not victim.exists(), "freezing executed the uploaded graph's restore op"
    assert "WriteFile" not in models.graph_ops(outcome.graph_bytes)


def test_second_client_reuses_server_blobs(server, tmp_path):
    model = models.seed_v1_v2(str(tmp_path), True)
    with FreezeClient(server.target) as a:
        a.freeze(model.directory)
    with FreezeClient(server.target) as b:
        again = b.freeze(model.directory)
    assert again.upload.uploaded_bytes == 0


def test_blob_evicted_between_upload_and_freeze_is_uploaded_again(server, tmp_path):
    """The server says ERROR_REASON_BLOBS_MISSING; the client branches on that reason and retries once."""
    model = models.seed_v1_v2(str(tmp_path), True)
    with FreezeClient(server.target) as client:
        real_upload, calls = client.upload, []

        def upload_then_evict(files, *args):
            stats = real_upload(files, *args)
            calls.append(stats)
            if len(calls) == 1:  # evict everything just uploaded, as the LRU cap would
                for f in files:
                    os.unlink(os.path.join(server.data_dir, "blobs", f.sha256[:2], f.sha256))
            return stats

        client.upload = upload_then_evict
        outcome = client.freeze(model.directory)
    assert len(calls) == 2 and calls[1].uploaded_files == calls[1].files  # every evicted file re-sent
    assert models.run_frozen(outcome.graph_bytes, {}, ["add:0"])[0] == pytest.approx([3.0])


def test_missing_blobs_come_back_as_one_violation_each(server, tmp_path):
    """A freeze naming files the server lacks: FAILED_PRECONDITION / BLOBS_MISSING with a
    google.rpc.PreconditionFailure holding one violation per missing blob (its digest as the
    subject, its path in the description), unpacked by the shared registry."""
    from tffreeze import FailedPreconditionError
    from tffreeze_api.v1 import blob_pb2, freeze_pb2

    model = models.seed_v1_v2(str(tmp_path), True)
    with FreezeClient(server.target) as client:
        files, plan = client.plan(model.directory)
        fake = [freeze_pb2.SourceFile(path="extra/%d.bin" % i, digest=blob_pb2.Digest(sha256="%064x" % (i + 1),
                                                                                      size_bytes=i))
                for i in range(60)]
        real = [freeze_pb2.SourceFile(path=f.path, digest=blob_pb2.Digest(sha256=f.sha256, size_bytes=f.size))
                for f in files]
        client.upload(files)
        with pytest.raises(FailedPreconditionError) as err:
            client._call(client._stub.Freeze(freeze_pb2.FreezeRequest(files=real + fake, options=plan.options))
                         .__iter__().__next__)
    exc = err.value
    assert exc.reason == "ERROR_REASON_BLOBS_MISSING" and "60 file(s) are not uploaded" in exc.message
    # as many as fit the trailers (kept under the 8 KiB clients accept); the count names them all
    assert 10 <= len(exc.violations) < 60 and exc.metadata["violations"] == "60"
    assert exc.violations[0] == ("MISSING", "blobs/%064x/0" % 1, "extra/0.bin is not uploaded")
    assert all(v.subject.startswith("blobs/") for v in exc.violations)


def test_project_folder_with_one_checkpoint_folder_below_it(client, tmp_path):
    """Seed 003's layout: saver.save(sess, 'models/model_name'), and the user names the project folder."""
    project = tmp_path / "project"
    model = models.seed_v1_v2(str(project / "models"), True)
    (project / "train.py").write_text("# the training script\n")
    outcome = client.freeze(str(project))
    assert outcome.result.checkpoint.prefix == "model.ckpt"
    assert "using models/, the only folder below it that does" in outcome.result.warnings[0]
    assert models.run_frozen(outcome.graph_bytes, {}, ["add:0"])[0] == pytest.approx(model.expected["add:0"])
    models.seed_v1_v2(str(project / "other"), False)
    with pytest.raises(NotFoundError) as err:
        client.freeze(str(project))
    assert "models/, other/" in err.value.message and err.value.reason == "ERROR_REASON_CHECKPOINT_NOT_FOUND"


def test_placeholder_with_default_stays_an_input(client, tmp_path):
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 2], name="x")
        scale = models.tf1.placeholder_with_default(models.tf.constant(1.5), [], name="scale")
        w = models._variable("w", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), True)
        models.tf.multiply(models.tf.matmul(x, w), scale, name="scaled")

    model = models._save(str(tmp_path), build, {"x:0": np.eye(2, dtype=np.float32)}, ["scaled:0"])
    outcome = _freeze_and_compare(client, model)
    inputs = {i["name"]: i for i in outcome.manifest["inputs"]}
    assert set(inputs) == {"x:0", "scale:0"}
    assert inputs["scale:0"]["has_default"] is True and inputs["scale:0"]["default"] == 1.5
    assert inputs["scale:0"]["shape"] == [] and inputs["x:0"]["has_default"] is False
    (fed,) = models.run_frozen(outcome.graph_bytes, {"x:0": np.eye(2, dtype=np.float32), "scale:0": 2.0}, ["scaled:0"])
    np.testing.assert_allclose(fed, [[2.0, 4.0], [6.0, 8.0]])


def test_signature_def_outranks_collections_and_sinks(client, tmp_path):
    model = models.dense(str(tmp_path), True, collection="pred_network")

    def add_signature(meta):
        sig = meta.signature_def["serving_default"]
        sig.inputs["features"].name = "x:0"
        sig.outputs["scores"].name = "y:0"
        sig.method_name = "tensorflow/serving/predict"

    models.edit_meta(model.directory, add_signature)
    m = _freeze_and_compare(client, model).manifest
    assert m["outputs"][0]["reason"] == "signature_def 'serving_default' output 'scores'"
    assert m["inputs"][0]["reason"] == "signature_def 'serving_default' input 'features'"
    info = client.inspect(model.directory)
    assert list(info.signatures) == ["serving_default"] and list(info.collections) == ["pred_network"]


def test_explicit_non_placeholder_input_cuts_the_graph(client, tmp_path):
    model = models.dense(str(tmp_path), True)
    outcome = client.freeze(model.directory, inputs=["MatMul"], outputs=["y"])
    m = outcome.manifest
    assert m["inputs"][0]["name"] == "MatMul:0" and m["inputs"][0]["shape"] == [-1, 2]
    assert any("cut there" in w for w in m["warnings"])
    ops = models.graph_ops(outcome.graph_bytes)
    assert "MatMul" not in ops and ops.count("Placeholder") == 1
    (y,) = models.run_frozen(outcome.graph_bytes, {"MatMul:0": np.zeros((1, 2), np.float32)}, ["y:0"])
    assert y.shape == (1, 2)


def test_health_and_reflection(server):
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"tffreeze.v1.FreezeService", "grpc.health.v1.Health"} <= services
