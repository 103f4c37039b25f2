"""The C++ client (client_cpp/, `make cpp`): `tffreeze-cpp freeze` through the real server
(port 0) gives the Python client's bytes and manifest, `tffreeze-cpp run` gives Python's
outputs, a CMake project freezes its model at build time (and a second build does no freeze
work), and bad input exits 1 with one line.

Where the C++ toolchain is absent these tests skip and say why; CI sets
TFFREEZE_REQUIRE_CPP=1 (and `make test` builds it first), which makes that a failure."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

import models
from tffreeze import FreezeClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPP = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")
CPP_BUILD = os.path.join(ROOT, "client_cpp", "build")
TF_LIB = next(iter(glob.glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages", "tensorflow"))), "")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.path.exists(CPP):
        if shutil.which("cmake") is None or shutil.which("g++") is None:
            why = "the C++ toolchain is absent (cmake, g++): run `make cpp`"
            if os.environ.get("TFFREEZE_REQUIRE_CPP") == "1":
                pytest.fail(why + " -- TFFREEZE_REQUIRE_CPP=1 forbids skipping")
            print("SKIP: " + why)
            pytest.skip(why)
        subprocess.run(["make", "-s", "-C", ROOT, "cpp"], check=True, capture_output=True)


def cpp(*args, **kw):
    return subprocess.run([CPP, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


CASES = {
    "dense": lambda d: models.dense(d, True),
    "conv_bn": lambda d: models.training_graph(d, True, cf_v1=False, fused=True),
    "while_loop": lambda d: models.loop_and_cond(d, True, False),
    "two_dtypes_saved_model": lambda d: models.saved_model_v2(d),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_cpp_freeze_and_run_match_python(server, tmp_path, kind):
    model = CASES[kind](str(tmp_path / "model"))
    with FreezeClient(server.target, timeout=300) as client:
        py = client.freeze(model.directory, output_path=str(tmp_path / "py.pb"))
    out = cpp("freeze", model.directory, "-o", tmp_path / "cpp.pb", "--manifest", tmp_path / "cpp.json",
              "--server", server.target)
    assert out.returncode == 0, out.stderr
    assert "wrote %s (%d bytes" % (tmp_path / "cpp.pb", py.result.size_bytes) in out.stdout
    assert (tmp_path / "cpp.pb").read_bytes() == (tmp_path / "py.pb").read_bytes()
    assert (tmp_path / "cpp.json").read_text() == py.manifest_json()  # the manifest, byte for byte
    # Run it: feeds by the names (or signature aliases) the test model uses, outputs by the manifest.
    args = ["run", tmp_path / "cpp.pb", "--manifest", tmp_path / "cpp.json", "--libtensorflow", TF_LIB]
    for i, (name, value) in enumerate(model.feeds.items()):
        np.save(tmp_path / ("in%d.npy" % i), np.asarray(value))
        args += ["--input", "%s=%s" % (name, tmp_path / ("in%d.npy" % i))]
    fetches = list(model.expected)
    for i, name in enumerate(fetches):
        args += ["--output", "%s=%s" % (name, tmp_path / ("out%d.npy" % i))]
    ran = cpp(*args)
    assert ran.returncode == 0, ran.stderr
    assert "(TensorFlow " in ran.stderr
    for i, name in enumerate(fetches):
        got, want = np.load(tmp_path / ("out%d.npy" % i)), np.asarray(model.expected[name])
        assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_unchanged_refreeze_does_not_download_and_selection_follows_the_state_file(server, tmp_path):
    model = models.dense(str(tmp_path / "run"), True, steps=[100, 200], mutate=True)
    first = cpp("freeze", model.directory, "-o", tmp_path / "m.pb", "--server", server.target)
    assert first.returncode == 0, first.stderr
    assert "from %s (step 200)" % model.prefix in first.stdout
    again = cpp("freeze", model.directory, "-o", tmp_path / "m.pb", "--server", server.target)
    assert "uploaded 0 of 3 file(s), 0 bytes; %s already held this graph (not downloaded)" % (tmp_path / "m.pb") \
        in again.stdout
    older = cpp("freeze", model.directory, "-o", tmp_path / "old.pb", "--step", 100, "--server", server.target)
    assert older.returncode == 0 and "(step 100)" in older.stdout
    with FreezeClient(server.target) as client:
        want = client.freeze(model.directory, step=100).graph_bytes
    assert (tmp_path / "old.pb").read_bytes() == want


def test_bad_input_is_one_line_and_exit_1(server, tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    cases = [
        (["freeze", tmp_path / "nope", "-o", tmp_path / "x.pb", "--server", server.target], "[NOT_FOUND]",
         "nope does not exist"),
        (["freeze", model.directory, "-o", tmp_path / "x.pb", "--server", server.target, "--outputs", "yy"],
         "[INVALID_ARGUMENT]", "--outputs: 'yy' is not in the graph; did you mean 'y'?"),
        (["freeze", model.directory, "-o", tmp_path / "x.pb", "--server", "127.0.0.1:1", "--timeout", "20"],
         "[UNAVAILABLE]", "cannot reach the tffreeze server at 127.0.0.1:1"),
        (["run", tmp_path / "missing.pb", "--input", "x=a.npy", "--output", "y=b.npy", "--libtensorflow", TF_LIB],
         "[NOT_FOUND]", "missing.pb"),
    ]
    for args, status, message in cases:
        out = cpp(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1, out.stderr
        assert len(lines) == 1 and lines[0].endswith(status) and message in lines[0], out.stderr
    assert not (tmp_path / "x.pb").exists() and not list(tmp_path.glob(".x.pb*"))
    assert cpp("freeze", model.directory).returncode == 2  # no -o
    assert cpp("frobnicate").returncode == 2
    assert "freeze SOURCE -o OUT.pb" in cpp("--help").stdout
    for args, usage in ((["freeze", "--help"], "freeze SOURCE -o OUT.pb"), (["run", "-h"], "run MODEL.pb")):
        helped = cpp(*args)  # every command's help exits 0, and is that command's
        assert helped.returncode == 0 and usage in helped.stdout.splitlines()[0], (args, helped.stdout[:200])


def test_cpp_run_checks_the_manifest(server, tmp_path):
    model = models.saved_model_v2(str(tmp_path / "sm"))
    assert cpp("freeze", model.directory, "-o", tmp_path / "m.pb", "--manifest", tmp_path / "m.json",
               "--server", server.target).returncode == 0
    np.save(tmp_path / "x.npy", model.feeds["x"])
    np.save(tmp_path / "steps64.npy", model.feeds["steps"].astype(np.int64))
    out = cpp("run", tmp_path / "m.pb", "--manifest", tmp_path / "m.json", "--libtensorflow", TF_LIB,
              "--input", "x=%s" % (tmp_path / "x.npy"), "--input", "steps=%s" % (tmp_path / "steps64.npy"),
              "--output", "logits=%s" % (tmp_path / "l.npy"))
    assert out.returncode == 1 and "takes int32 but the .npy holds int64: save it as int32 (numpy: a.astype('int32')) [INVALID_ARGUMENT]" in out.stderr
    out = cpp("run", tmp_path / "m.pb", "--manifest", tmp_path / "m.json", "--libtensorflow", TF_LIB,
              "--input", "x=%s" % (tmp_path / "x.npy"), "--output", "logit=%s" % (tmp_path / "l.npy"))
    assert out.returncode == 1 and "'logit' is not among the manifest's outputs" in out.stderr
    assert not (tmp_path / "l.npy").exists()


def _build(build_dir, env):
    return subprocess.run(["cmake", "--build", str(build_dir)], capture_output=True, text=True, env=env, timeout=600)


def test_cmake_project_freezes_at_build_time_and_only_when_something_changed(server, tmp_path):
    """client_cpp/examples/app, configured and built in a temporary folder: the build freezes
    the checkpoint (tffreeze_freeze), the app runs the model by the manifest's names; a second
    build does no freeze work; changed options re-freeze."""
    model = models.dense(str(tmp_path / "ckpt"), True, steps=[1, 2], mutate=True)
    build = tmp_path / "build"
    env = dict(os.environ, TFFREEZE_SERVER=server.target)
    cfg = subprocess.run(["cmake", "-S", os.path.join(ROOT, "client_cpp", "examples", "app"), "-B", str(build),
                          "-Dtffreeze_DIR=" + CPP_BUILD, "-DCHECKPOINT=" + model.directory],
                         capture_output=True, text=True, env=env, timeout=600)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    first = _build(build, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tffreeze: freezing" in first.stdout
    with FreezeClient(server.target) as client:
        want = client.freeze(model.directory)
    assert (build / "model.pb").read_bytes() == want.graph_bytes
    assert (build / "model.json").read_text() == want.manifest_json()
    ran = subprocess.run([str(build / "classify"), TF_LIB], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    y = models.run_frozen(want.graph_bytes, {"x:0": np.ones((1, 3), np.float32)}, ["y:0"])[0]
    printed = ran.stdout.split()
    assert printed[:4] == ["y:0:", "float32", "[1,", "2]"], ran.stdout
    np.testing.assert_allclose([float(v) for v in printed[4:6]], y[0], rtol=1e-5)
    # A second build: nothing to do (no freeze command, the graph untouched).
    stamp = os.stat(build / "model.pb").st_mtime_ns
    second = _build(build, env)
    assert second.returncode == 0 and "tffreeze: freezing" not in second.stdout, second.stdout
    assert os.stat(build / "model.pb").st_mtime_ns == stamp
    # Trial 11, finding 4: the newest checkpoint deleted re-freezes (the build kept its graph), and an
    # older copy restored over it does too.
    saved = {}
    for name in os.listdir(model.directory):
        if name.startswith("model.ckpt-2."):
            saved[name] = (tmp_path / "ckpt" / name).read_bytes()
            os.unlink(os.path.join(model.directory, name))
    rolled = _build(build, env)
    assert rolled.returncode == 0 and "tffreeze: freezing" in rolled.stdout, rolled.stdout + rolled.stderr
    with FreezeClient(server.target) as client:
        assert (build / "model.pb").read_bytes() == client.freeze(model.directory).graph_bytes != want.graph_bytes
    for name, data in saved.items():  # an older copy put back (its old mtime, as cp -p / tar keep it)
        (tmp_path / "ckpt" / name).write_bytes(data)
        os.utime(tmp_path / "ckpt" / name, (1_000_000_000, 1_000_000_000))
    restored = _build(build, env)
    assert restored.returncode == 0 and "tffreeze: freezing" in restored.stdout, restored.stdout + restored.stderr
    assert (build / "model.pb").read_bytes() == want.graph_bytes
    # Changed options re-freeze.
    subprocess.run(["cmake", "-S", os.path.join(ROOT, "client_cpp", "examples", "app"), "-B", str(build),
                    "-DFREEZE_OPTIONS=--outputs;y"], check=True, capture_output=True, env=env)
    third = _build(build, env)
    assert third.returncode == 0 and "tffreeze: freezing" in third.stdout, third.stdout
