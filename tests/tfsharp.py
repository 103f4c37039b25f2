"""The real TensorFlowSharp (NuGet 1.15.3's sources, third-party, outside this
repository: ../shared/third_party/TensorFlowSharp, or TFFREEZE_TENSORFLOWSHARP_SRC) and
TF 1.15.0's C API, for the tests that compile and run C# against both libraries.

``build()`` compiles TensorFlowSharp.dll into build/tensorflowsharp/ (once per session)
with a Mono dllmap to TF 1.15's library; ``csc()`` compiles C# against the built-in
binding or against TensorFlowSharp. Where the sources or TF 1.15 are absent the callers
skip and say why; CI sets TFFREEZE_REQUIRE_TF115=1, which makes that a failure."""

from __future__ import annotations

import functools
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF115 = os.environ.get("TFFREEZE_TF115", os.path.join(ROOT, ".tf115"))
TF115_LIB = os.path.join(TF115, "lib", "python3.7", "site-packages", "tensorflow_core", "python",
                         "_pywrap_tensorflow_internal.so")
OUT = os.path.join(ROOT, "build", "tensorflowsharp")
CS_BIN = os.path.join(ROOT, "client_csharp", "bin")
BINDING = os.path.join(CS_BIN, "TfFreeze.TensorFlow.dll")
HELPERS = os.path.join(ROOT, "client_csharp", "helpers")
MCS = ["mcs", "-nologo", "-warnaserror", "-r:System.dll", "-r:System.Core.dll"]


def sources():
    candidates = [os.environ.get("TFFREEZE_TENSORFLOWSHARP_SRC", ""),
                  os.path.join(ROOT, "..", "shared", "third_party", "TensorFlowSharp"),
                  "/work/shared/third_party/TensorFlowSharp"]
    return next((os.path.abspath(c) for c in candidates if c and os.path.exists(os.path.join(c, "Tensor.cs"))), None)


def absent(why):
    if os.environ.get("TFFREEZE_REQUIRE_TF115") == "1":
        pytest.fail(why + " -- TFFREEZE_REQUIRE_TF115=1 forbids skipping")
    print("SKIP: " + why)
    pytest.skip(why)


def ensure_csharp():
    if not os.path.exists(os.path.join(CS_BIN, "tffreeze-cs")):  # `make test` builds it first
        subprocess.run(["make", "-s", "-C", ROOT, "csharp"], check=True)


@functools.lru_cache(maxsize=None)
def build_dll(src):
    """TensorFlowSharp.dll compiled from the sources at src (once per process), with its dllmap."""
    os.makedirs(OUT, exist_ok=True)
    dll = os.path.join(OUT, "TensorFlowSharp.dll")
    files = sorted(os.path.join(d, f) for d in (src, os.path.join(src, "Ops")) if os.path.isdir(d)
                   for f in os.listdir(d) if f.endswith(".cs"))
    subprocess.run(["mcs", "-nologo", "-target:library", "-unsafe", "-nowarn:618,649,169,414,219,1591,3021",
                    "-r:System.dll", "-r:System.Core.dll", "-r:System.Numerics.dll", "-out:" + dll, *files],
                   check=True, capture_output=True)
    with open(dll + ".config", "w") as fh:  # TensorFlowSharp P/Invokes "libtensorflow"
        fh.write('<configuration><dllmap dll="libtensorflow" target="%s"/></configuration>\n' % TF115_LIB)
    return dll


def build(need_runtime=True):
    """The path of TensorFlowSharp.dll (built from its sources, mapped to TF 1.15's library)."""
    src = sources()
    if src is None:
        absent("TensorFlowSharp sources not found (set TFFREEZE_TENSORFLOWSHARP_SRC)")
    if need_runtime and not os.path.exists(TF115_LIB):
        absent("TF 1.15 runtime absent (%s): run `make tf115`" % TF115_LIB)
    ensure_csharp()
    return build_dll(src)


def tf115_env():
    """The environment Mono needs to load TF 1.15's library (libpython3.7m preloaded)."""
    with open(os.path.join(TF115, "pyvenv.cfg")) as fh:
        home = next(line.split("=", 1)[1].strip() for line in fh if line.startswith("home"))
    return dict(os.environ, LD_PRELOAD=os.path.join(home, "..", "lib", "libpython3.7m.so.1.0"),
                TFFREEZE_LIBTENSORFLOW=TF115_LIB)


def csc(sources_, out, library, tfsharp_dll=None, target="exe", refs=()):
    """Compile C# files against ``library``: "binding" (tffreeze's, namespace TfFreeze.TensorFlow)
    or "tensorflowsharp" (the real one, -define:TENSORFLOWSHARP). Returns the CompletedProcess."""
    args = MCS + ["-target:" + target, "-out:" + str(out)]
    if library == "tensorflowsharp":
        args += ["-define:TENSORFLOWSHARP", "-r:System.Numerics.dll", "-r:" + tfsharp_dll]
    else:
        args += ["-r:" + BINDING]
    args += ["-r:" + str(r) for r in refs] + [str(s) for s in sources_]
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def helpers(out_dir, library, tfsharp_dll=None):
    """The helper library (client_csharp/helpers) compiled against ``library`` into out_dir."""
    name = "TfFreeze.TensorFlowSharp.dll" if library == "tensorflowsharp" else "TfFreeze.dll"
    out = os.path.join(str(out_dir), name)
    files = sorted(os.path.join(HELPERS, f) for f in os.listdir(HELPERS) if f.endswith(".cs"))
    proc = csc(files, out, library, tfsharp_dll, target="library")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
