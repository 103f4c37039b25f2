"""The C# binding is a subset of the real TensorFlowSharp's API, signature for signature,
and every C# example, the helper library and every C# block of the README compile
against both libraries (tests/tfsharp.py builds TensorFlowSharp from its sources)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import models
import tfsharp

ROOT = tfsharp.ROOT
BINDING_SRC = os.path.join(ROOT, "client_csharp", "binding", "TensorFlow.cs")
EXAMPLES = os.path.join(ROOT, "client_csharp", "examples")


@pytest.fixture(scope="module")
def real():
    return tfsharp.build(need_runtime=False)


@pytest.fixture(scope="module")
def surface(tmp_path_factory):
    exe = tmp_path_factory.mktemp("surface") / "Surface.exe"
    proc = subprocess.run(tfsharp.MCS + ["-out:" + str(exe), os.path.join(ROOT, "tests", "tensorflowsharp", "Surface.cs")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    return lambda *args: subprocess.run(["mono", str(exe), *map(str, args)], capture_output=True, text=True)


def _check(surface, binding, real, tmp_path):
    """(compare's output and exit code, the usage file's compile against TensorFlowSharp)."""
    compared = surface("compare", binding, real)
    use = tmp_path / "use.cs"
    assert surface("usage", binding, use).returncode == 0
    compiled = tfsharp.csc([use], tmp_path / "use.dll", "tensorflowsharp", real, target="library")
    return compared, compiled


def test_every_public_member_of_the_binding_exists_in_tensorflowsharp(surface, real, tmp_path):
    compared, compiled = _check(surface, tfsharp.BINDING, real, tmp_path)
    assert compared.returncode == 0, compared.stdout
    m = re.search(r"(\d+) of (\d+) public types and members have a TensorFlowSharp counterpart", compared.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 100, compared.stdout
    # ... and a file using every one of them (named arguments, exact delegate types) compiles against it.
    assert compiled.returncode == 0, compiled.stdout
    uses = (tmp_path / "use.cs").read_text()
    for member in ("TFGraph o) { o.Import(@buffer:", "TFSession.Runner o) { o.Fetch(", "TFTensor.FromBuffer(@shape:",
                   "TFTensor o) { o.GetValue(@jagged:", "TFStatus o) { o.Raise()", "new global::TensorFlow.TFShape("):
        assert member in uses, member


def test_the_check_fails_on_a_member_tensorflowsharp_does_not_have(surface, real, tmp_path):
    """What the binding used to have (graph.Output(name), new TFTensor(long[], Array)) is caught by both checks."""
    with open(BINDING_SRC) as fh:
        source = fh.read()
    source = source.replace("        public TFGraph() : base(", "        public TFOutput Output(string name) { return this[name][0]; }\n"
                            "        public TFGraph() : base(", 1)
    source = source.replace("        public TFTensor(bool[] data)", "        public TFTensor(long[] shape, Array data) : this(data) { }\n"
                            "        public TFTensor(bool[] data)", 1)
    (tmp_path / "TensorFlow.cs").write_text(source)
    dll = tmp_path / "TfFreeze.TensorFlow.dll"
    proc = subprocess.run(tfsharp.MCS + ["-target:library", "-out:" + str(dll), str(tmp_path / "TensorFlow.cs")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    compared, compiled = _check(surface, dll, real, tmp_path)
    assert compared.returncode == 1
    assert "TensorFlow.TFGraph :: public TensorFlow.TFOutput Output(System.String name)" in compared.stdout
    assert "TensorFlow.TFTensor :: public .ctor(System.Int64[] shape, System.Array data)" in compared.stdout
    assert compiled.returncode != 0 and "Output" in compiled.stdout


def _both(tmp_path, real, files, refs_extra=()):
    """Compile files (+ the helper library) against the binding and against TensorFlowSharp;
    {library: the folder holding the programs}."""
    built = {}
    for library in ("binding", "tensorflowsharp"):
        out = tmp_path / library
        out.mkdir(exist_ok=True)
        helpers = tfsharp.helpers(out, library, real)
        for f in files:
            proc = tfsharp.csc([f], out / (os.path.basename(str(f))[:-3] + ".exe"), library, real, refs=[helpers])
            assert proc.returncode == 0, "%s against %s:\n%s" % (f, library, proc.stdout)
        built[library] = out
    return built


def test_examples_and_helpers_compile_against_both_libraries(real, tmp_path):
    examples = sorted(os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES) if f.endswith(".cs"))
    assert examples
    _both(tmp_path, real, examples)


def _readme_blocks():
    with open(os.path.join(ROOT, "README.md")) as fh:
        return [textwrap.dedent(b) for b in re.findall(r"```csharp\n(.*?)```", fh.read(), re.S)]


@pytest.fixture(scope="module")
def readme_programs(real, tmp_path_factory):
    """{library: folder}: every C# block of the README, compiled against each library."""
    tmp_path = tmp_path_factory.mktemp("readme")
    blocks = _readme_blocks()
    assert len(blocks) >= 3
    files = []
    for i, block in enumerate(blocks):
        # A block is written for one library ("using TensorFlow;" or "using TfFreeze.TensorFlow;");
        # the other library's namespace is swapped in for the other build.
        assert re.search(r"^using (TfFreeze\.)?TensorFlow;", block, re.M), block
        generic = re.sub(r"^using (TfFreeze\.)?TensorFlow;.*$",
                         "#if TENSORFLOWSHARP\nusing TensorFlow;\n#else\nusing TfFreeze.TensorFlow;\n#endif", block,
                         flags=re.M)
        path = tmp_path / ("Readme%d.cs" % i)
        path.write_text(generic)
        files.append(path)
    return _both(tmp_path, real, files), len(blocks)


def test_every_csharp_block_of_the_readme_compiles_against_both_libraries(readme_programs):
    built, count = readme_programs
    for folder in built.values():
        assert len([f for f in os.listdir(folder) if f.startswith("Readme") and f.endswith(".exe")]) == count


def test_the_readme_csharp_blocks_run_on_tf115_with_both_libraries(client, readme_programs, tmp_path):
    """The README's code runs as written: mnist.pb/mnist.json (x [?, 4] -> probs [?, 2], frozen with
    --target tensorflowsharp) in the working folder, on TF 1.15's C API, the same output either way."""
    if not os.path.exists(tfsharp.TF115_LIB):
        tfsharp.absent("TF 1.15 runtime absent (%s): run `make tf115`" % tfsharp.TF115_LIB)
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_sample_checkpoint.py"), str(tmp_path)],
                   check=True, capture_output=True)
    outcome = client.freeze(str(tmp_path / "ckpt"), str(tmp_path / "mnist.pb"), target="tensorflowsharp")
    (tmp_path / "mnist.json").write_text(outcome.manifest_json())
    want = models.run_frozen((tmp_path / "mnist.pb").read_bytes(), {"x:0": np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)},
                             ["probs:0"])[0]
    built, count = readme_programs
    env = tfsharp.tf115_env()
    for i in range(count):
        outs = []
        for library, mono_path in (("binding", tfsharp.CS_BIN), ("tensorflowsharp", tfsharp.OUT)):
            run = subprocess.run(["mono", str(built[library] / ("Readme%d.exe" % i))], cwd=str(tmp_path), env=dict(
                env, MONO_PATH=mono_path + ":" + str(built[library])), capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, "README block %d (%s): %s" % (i, library, run.stderr)
            outs.append(run.stdout.strip())
        assert outs[0] == outs[1] and outs[0], outs
        last = outs[0].split()[-1]
        assert last == "2" or abs(float(last) - want[0, 1]) < 1e-4, (outs[0], want)
