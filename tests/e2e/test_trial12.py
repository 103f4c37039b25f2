"""Findings of the twelfth first-week trial (issue 34), each reproduced in every client it
concerns. (Findings 2 to 4 are the server's: tests/integration/test_sources.py and
tests/unit/test_collection_trained_past.py; finding 7 is the page's: test_web_page.py.)"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import models
from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)


def _tflite(path: str, batch):
    """A TFLite model of x[batch, 3] -> y = 2x + 1, converted by TensorFlow's own converter:
    ``batch`` None leaves the batch free (shape_signature -1), a number pins it."""
    tf = models.tf

    @tf.function(input_signature=[tf.TensorSpec([batch, 3], tf.float32, name="x")])
    def model(x):
        return {"y": tf.identity(x * 2.0 + 1.0, name="y")}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    with open(path, "wb") as fh:
        fh.write(converter.convert())


def test_a_pinned_batch_is_not_resized_to_another_batch(tmp_path):
    """Finding 1 (MISLEAD): `tffreeze run` of a TFLite model converted with its batch pinned
    (--format tflite --input-shape x=4,3) resized the input to the batch fed, and the graph's own
    pinned shapes broadcast it: exit 0, a wrong output. A size the model pins is now checked."""
    pinned, free = str(tmp_path / "pinned.tflite"), str(tmp_path / "free.tflite")
    _tflite(pinned, 4)
    _tflite(free, None)
    np.save(tmp_path / "one.npy", np.ones((1, 3), np.float32))
    np.save(tmp_path / "four.npy", np.ones((4, 3), np.float32))

    def run(model, feed):
        return subprocess.run([PY, "run", model, "--input", "x=%s" % (tmp_path / feed), "--output",
                               "Identity=%s" % (tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)

    refused = run(pinned, "one.npy")
    assert refused.returncode == 1 and "takes shape [4, 3]" in refused.stderr and "[1, 3]" in refused.stderr, \
        refused.stderr
    assert "Traceback" not in refused.stderr
    for model, feed, rows in ((pinned, "four.npy", 4), (free, "one.npy", 1), (free, "four.npy", 4)):
        ran = run(model, feed)
        assert ran.returncode == 0, ran.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.full((rows, 3), 3.0, np.float32))


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
@pytest.mark.parametrize("target", ["-", "/dev/stdout", "fifo"])
def test_standard_output_and_devices_are_refused_with_a_fix_that_works(tmp_path, client, target):
    """Finding 8 (MISLEAD): `-o -` wrote a file named "-", and `-o /dev/stdout` was refused with
    a fix that could not work (a folder it may not write, /proc/self/fd). Outputs are written
    whole or not at all, through a temporary file renamed over the name: only a file takes
    that. Both are refused before anything is read, with a fix that works."""
    model = models.dense(str(tmp_path / "ckpt"), True)
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
    binary = {"py": PY, "cs": CS, "cpp": CPP}[client]
    for flag in ("-o", "--manifest"):
        argv = [binary, "freeze", model.directory, "-o", target if flag == "-o" else "ok.pb", "--server",
                "127.0.0.1:9"] + (["--manifest", target] if flag == "--manifest" else [])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path)
        what = "the graph" if flag == "-o" else "the manifest"
        assert out.returncode != 0, (argv, out.stdout[:300])
        assert "%s %s is %s" % (flag, target, "standard output" if target == "-" else "not a regular file") \
            in out.stderr, out.stderr
        assert "tffreeze writes %s to files only" % what in out.stderr and "[INVALID_ARGUMENT]" in out.stderr, \
            out.stderr
        assert out.stdout == "", out.stdout
        assert sorted(os.listdir(tmp_path)) == sorted(["ckpt"] + (["fifo"] if target == "fifo" else [])), \
            os.listdir(tmp_path)
