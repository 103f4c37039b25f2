"""The API package: typed options from user strings, the manifest codec and its schema,
and the README's manifest section checked against that schema."""

import json
import os
import re

import jsonschema
import pytest
from google.protobuf import json_format

from tffreeze_api import manifest, options
from tffreeze_api.v1 import freeze_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_options_from_strings_and_dicts_are_the_same_message():
    a = options.freeze_options(outputs="probs, logits:0", bind=["is_training=false", "keep_prob=1.0", "rate="],
                               var_map=["dense/kernel=w"], target="tensorflowsharp", step=100,
                               include_variables="a,b")
    b = options.freeze_options(outputs=["probs", "logits:0"], bind={"is_training": False, "keep_prob": 1.0,
                                                                    "rate": None},
                               var_map={"dense/kernel": "w"}, target=freeze_pb2.TARGET_TENSORFLOWSHARP, step=100,
                               include_variables=["a", "b"])
    assert a == b
    assert list(a.outputs) == ["probs", "logits:0"] and a.step == 100
    assert a.bind["is_training"].WhichOneof("kind") == "bool_value" and a.bind["is_training"].bool_value is False
    assert a.bind["keep_prob"].number_value == 1.0 and a.bind["rate"].WhichOneof("kind") == "null_value"
    assert not options.freeze_options().HasField("step")


@pytest.mark.parametrize("kwargs, field", [
    ({"bind": ["oops"]}, "bind"),
    ({"bind": ["x=maybe"]}, "bind"),
    ({"var_map": ["w"]}, "var_map"),
    ({"var_map": ["w="]}, "var_map"),
    ({"target": "tensorflow1"}, "target"),
    ({"step": -1}, "step"),
])
def test_malformed_options_name_their_field(kwargs, field):
    with pytest.raises(options.OptionError) as err:
        options.freeze_options(**kwargs)
    assert err.value.field == field and err.value.reason == "ERROR_REASON_INVALID_OPTION"


def _result():
    r = freeze_pb2.FreezeResult(sha256="0" * 64, size_bytes=1184, node_count=15, variables_frozen=4,
                                source_kind=freeze_pb2.SOURCE_KIND_SAVER)
    x = r.inputs.add(name="x:0", dtype="float32", reason="placeholder the outputs depend on")
    x.shape.values.add().number_value = -1
    x.shape.values.add().number_value = 4
    r.outputs.add(name="probs:0", dtype="float32", reason="graph sink")  # unknown rank
    r.checkpoint.prefix = "model.ckpt"  # no step
    r.bindings.add(name="keep_prob:0", reason="inference value of a training switch").value.number_value = 1.0
    r.verification.add(name="probs:0", max_abs_diff=0.0)
    return r


def test_manifest_keeps_documented_spellings():
    text = manifest.to_json(_result())
    m = json.loads(text)
    assert m["inputs"][0]["shape"] == [-1, 4] and '"shape": [\n        -1,\n        4\n      ]' in text
    assert m["outputs"][0]["shape"] is None and m["checkpoint"]["step"] is None
    assert m["size_bytes"] == 1184 and isinstance(m["size_bytes"], int)  # a number, not proto3's "1184"
    assert m["signature"] is None and m["bindings"][0]["value"] == 1 and m["verification"][0]["max_abs_diff"] == 0.0
    assert m["source_kind"] == "SOURCE_KIND_SAVER" and m["target"] == "TARGET_UNSPECIFIED"
    assert text.endswith("}\n") and text.isascii()


def test_manifest_is_proto3_json_that_parses_back():
    r = _result()
    text = manifest.to_json(r)
    back = json_format.Parse(text, freeze_pb2.FreezeResult())
    assert manifest.to_json(back) == text
    assert back.size_bytes == 1184 and not back.checkpoint.HasField("step") and not back.outputs[0].HasField("shape")


def test_schema_describes_every_field_and_rejects_unknown_keys():
    schema = manifest.json_schema()
    jsonschema.validate(json.loads(manifest.to_json(_result())), schema)
    assert set(schema["properties"]) == {f.name for f in freeze_pb2.FreezeResult.DESCRIPTOR.fields}
    bad = json.loads(manifest.to_json(_result()))
    bad["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def _readme_block(heading: str, lang: str) -> str:
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    section = text[text.index(heading):]
    return re.search(r"```%s\n(.*?)```" % lang, section, re.S).group(1)


def test_readme_manifest_example_matches_the_schema():
    """The README's manifest example is a manifest (every key, nothing else), and parses as FreezeResult."""
    example = json.loads(_readme_block("### The manifest", "json"))
    jsonschema.validate(example, manifest.json_schema())
    json_format.ParseDict(example, freeze_pb2.FreezeResult())


def test_documented_schema_is_the_generated_one():
    """docs/manifest.schema.json (linked from the README) is what the proto defines today."""
    with open(os.path.join(ROOT, "docs", "manifest.schema.json")) as fh:
        assert json.load(fh) == manifest.json_schema(), "regenerate it: make docs"


def test_tensorflow_errors_are_described_by_node_op_and_message():
    import numpy as np
    import tensorflow as tf

    from tffreeze_api import tf_errors

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None], name="x")
        tf.identity(tf.matmul(x, tf.ones([3, 2]), name="mm"), name="out")
    with tf.compat.v1.Session(graph=g) as s:
        with pytest.raises(tf.errors.OpError) as err:
            s.run("out:0", {"x:0": np.ones((2, 4), np.float32)})
    text = tf_errors.describe(err.value)
    assert text.startswith("node mm (MatMul): ") and "Matrix size-incompatible" in text
    assert "Graph execution error" not in text and "\n" not in text


def test_function_body_errors_name_the_node_too():
    """A failure inside a loop body arrives as 'In {{node X}}', not '[[{{node X}}]]'."""
    from tffreeze_api import tf_errors

    exc = ValueError("Graph execution error:\n\ninput resource[0] expected type resource != float, the type of "
                     "embedding_lookup_decoder_embedding_0[0]\n\tIn {{node embedding_lookup}}")
    text = tf_errors.describe(exc)
    assert text == ("node embedding_lookup: input resource[0] expected type resource != float, the type of "
                    "embedding_lookup_decoder_embedding_0[0]")


def test_a_step_out_of_int64_range_is_an_option_error():
    """A step beyond int64 (typed on any client's command line) is INVALID_OPTION, never INTERNAL."""
    from tffreeze_api.v1 import freeze_pb2

    for step in ("99999999999999999999999", "-1", "seven"):
        with pytest.raises(options.OptionError) as err:
            options.from_text(freeze_pb2.OptionText(step=step))
        assert err.value.field == "step"
    with pytest.raises(options.OptionError):
        options.freeze_options(step=2 ** 63)
    assert options.from_text(freeze_pb2.OptionText(step=str(2 ** 63 - 1))).step == 2 ** 63 - 1


@pytest.mark.parametrize("typed,meant", [("stepp", "step"), ("output_file", "output_path"), ("emma", "ema"),
                                         ("input_shape", "input_shapes"), ("xyz", None)])
def test_an_unknown_library_option_is_named_with_the_one_meant(typed, meant):
    """The Python library's keyword options: a typo is named as typed, with the option meant
    (it said "to_text() got an unexpected keyword argument"). Nothing is contacted."""
    from tffreeze import FreezeClient

    with pytest.raises(TypeError) as err:
        FreezeClient("127.0.0.1:1").freeze(".", **{typed: 3})
    said = str(err.value)
    assert said.startswith("unknown freeze option %r" % typed) and "to_text" not in said, said
    assert ("did you mean %r?" % meant in said) if meant else "did you mean" not in said, said


def test_a_deadline_grpc_words_any_way_names_the_timeout_flag():
    """Trial 7 R3: a deadline hit while uploading reached the user as gRPC's own "Stream removed
    (Deadline Exceeded)". gRPC's deadline (no reason from the server) names --timeout however gRPC
    words it; the server's own DEADLINE answer (a reason, its message) is shown as it is."""
    import argparse

    from tffreeze import cli
    from tffreeze.errors import DeadlineExceededError

    args = argparse.Namespace(timeout=0.2)
    for text in ("Deadline Exceeded", "Stream removed (Deadline Exceeded)"):
        assert cli._message(DeadlineExceededError(text), args) == (
            "no answer within --timeout 0.2 seconds: give a larger --timeout (the default is 600)")
    server_said = DeadlineExceededError("the freeze outlived the server's --max-call-seconds 60 (Deadline Exceeded)",
                                        "ERROR_REASON_DEADLINE")
    assert "--max-call-seconds" in cli._message(server_said, args)


def test_what_commands_owe_a_stopping_server_does_not_pile_up():
    """Plans never followed by their freeze (a client that stopped, or one that only plans) and
    downloads never made are forgotten after OWED_SECONDS, not kept for the server's lifetime."""
    from tffreeze_server import status

    activity = status.Activity()
    for _ in range(1000):
        activity.planned()
        activity.download_owed("ab" * 32)
    assert len(activity._plans) == 1000 and activity.under_way() == (0, 1001)
    activity._plans = [t - status.OWED_SECONDS - 1 for t in activity._plans]
    activity._downloads = {k: t - status.OWED_SECONDS - 1 for k, t in activity._downloads.items()}
    activity.planned()
    assert len(activity._plans) == 1 and not activity._downloads
