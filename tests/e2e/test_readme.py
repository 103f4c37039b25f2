"""README examples run as written (issue 24's first-hour findings): the Python library
example against the sample checkpoint `make demo` writes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

import tfsharp

from test_parity import built  # noqa: F401 - the C# and C++ clients, or a skip that says why

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _block(heading: str, language: str) -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index(heading):]
    return re.search(r"```%s\n(.*?)```" % language, section, re.S).group(1)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A folder holding what `make demo` leaves: demo-out/ckpt and demo-out/x.npy, and .venv."""
    root = tmp_path_factory.mktemp("readme")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_sample_checkpoint.py"),
                    str(root / "demo-out")], check=True, capture_output=True, timeout=600)
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), root / ".venv")
    return root


def _no_server_named() -> dict:
    """This environment as a user's shell with .venv activated, naming no server."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("TFFREEZE_SERVER", None)
    return env


def test_the_python_library_example_runs_as_written(demo_dir):
    code = _block("## Python library", "python")
    run = subprocess.run([sys.executable, "-c", code], cwd=str(demo_dir), env=_no_server_named(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (demo_dir / "model.pb").stat().st_size > 0 and (demo_dir / "model.json").stat().st_size > 0
    assert '"prefix": "model.ckpt-100"' in (demo_dir / "model.json").read_text()


def test_the_quick_start_runs_as_written_with_no_server_started(demo_dir):
    """Every line after `make demo` (whose outputs the fixture made), literally, in bash -e;
    no server is started first: the clients use the local server."""
    lines = _block("## Quick start", "sh").splitlines()
    assert lines[0].startswith("make demo")
    script = "set -euo pipefail\n" + "\n".join(lines[1:]) + "\n"
    run = subprocess.run(["bash", "-c", script], cwd=str(demo_dir), env=_no_server_named(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "outputs:" in run.stdout and "probs:0" in run.stdout  # inspect's report
    assert (demo_dir / "probs.npy").exists() and (demo_dir / "model.json").exists()
    assert run.stderr == ""  # no TensorFlow, absl, gRPC or CUDA lines


def test_the_tls_recipe_runs_as_written(demo_dir, tmp_path):
    """The openssl recipe of "TLS and tokens", line by line in a folder beside demo-out: the
    certificate lines in bash, the `tffreeze serve ... &` line started here (on a free port
    instead of 50443) and waited for, then the client line, which must freeze over TLS."""
    from conftest import start_server, stop_server

    block = _block("**TLS and tokens.**", "sh")
    lines = [ln for ln in block.splitlines() if ln.strip()]
    serve = next(i for i, ln in enumerate(lines) if ln.startswith("tffreeze serve "))
    work = tmp_path / "tls"
    work.mkdir()
    os.symlink(demo_dir / "demo-out", work / "demo-out")
    setup = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(lines[:serve]) + "\n"], cwd=str(work),
                           capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    words = shlex.split(lines[serve].split("#")[0].rstrip(" &"))
    assert words[:2] == ["tffreeze", "serve"] and "50443" in words
    extra = [str(work / w) if os.path.exists(work / w) else w for w in words[2:]]
    extra = [w for w in extra if w not in ("--port", "50443")]
    srv = start_server(str(work / "data"), extra)
    try:
        client = "\n".join(lines[serve + 1:]).replace("50443", srv.target.rsplit(":", 1)[1])  # the port it took
        run = subprocess.run(["bash", "-c", "set -euo pipefail\n" + client + "\n"], cwd=str(work),
                             env=_no_server_named(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert (work / "tls.pb").stat().st_size > 0 and "wrote tls.pb" in run.stdout
        # TLS without the recipe's CA says the certificate is not trusted and names the flag
        bad = subprocess.run(["bash", "-c", client.replace(" --ca ca.pem", " --tls")], cwd=str(work),
                             env=_no_server_named(), capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and "not trusted" in bad.stderr and "--ca" in bad.stderr, bad.stderr
    finally:
        assert stop_server(srv) == 0


def _lines(block: str):
    """The block's commands, continuation lines joined, comments dropped."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


@pytest.mark.parametrize("heading", ["### Freeze from C# (gRPC-Web)", "### Run from the command line",
                                     "## C++ and CMake"])
def test_the_csharp_and_cpp_snippets_run_as_written(demo_dir, tmp_path, heading, built):
    """Each command of the C# and C++ sections in a folder holding what `make demo` leaves
    (`make` lines: built by the test run; a `tffreeze serve ... &` line: started here on free
    ports, which the later lines then name)."""
    from conftest import start_server, stop_server

    work = tmp_path / "w"
    work.mkdir()
    for name in ("demo-out", ".venv"):
        os.symlink(os.path.realpath(demo_dir / name), work / name)
    for name in ("client_csharp", "client_cpp", ".tf115"):
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.join(ROOT, name), work / name)
    if heading == "### Run from the command line":  # the freeze of the section before writes mnist.pb
        subprocess.run([os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs"), "freeze", "demo-out/ckpt", "-o",
                        "mnist.pb", "--manifest", "mnist.json"], cwd=str(work), env=_no_server_named(), check=True,
                       capture_output=True, timeout=300)
    servers, ports = [], {}
    try:
        for line in _lines(_block(heading, "sh")):
            if line.startswith("make "):
                continue
            if line.startswith("tffreeze serve "):
                words = shlex.split(line.rstrip(" &"))[2:]
                asked = {w: words[i + 1] for i, w in enumerate(words) if w in ("--port", "--web-port")}
                extra = [w for i, w in enumerate(words) if w != "--port" and (i == 0 or words[i - 1] != "--port")]
                extra = ["0" if i and extra[i - 1] == "--web-port" else w for i, w in enumerate(extra)]
                srv = start_server(str(work / "data"), extra)
                servers.append(srv)
                ports[asked["--port"]] = srv.target.rsplit(":", 1)[1]
                if "--web-port" in asked:
                    web = re.search(r"gRPC-Web on http://[^:]+:(\d+)", "".join(srv.log)).group(1)
                    ports[asked["--web-port"]] = web
                continue
            for asked, real in ports.items():
                line = line.replace(":" + asked, ":" + real)
            if "--runtime tf115" in line and not os.path.exists(tfsharp.TF115_LIB):
                tfsharp.absent("the README's `%s` needs the TF 1.15 runtime (make tf115), absent here" % line[:80])
            run = subprocess.run(["bash", "-c", line], cwd=str(work), env=_no_server_named(), capture_output=True,
                                 text=True, timeout=300)
            assert run.returncode == 0, (line, run.stdout, run.stderr)
            assert not re.search(r"cuda|absl|^[IWE]\d{4} |tensorflow/core|ssl_transport", run.stderr, re.I | re.M), (
                line, run.stderr)  # no TensorFlow, absl, gRPC or CUDA lines
    finally:
        for srv in servers:
            assert stop_server(srv) == 0


def test_the_manifest_example_is_what_the_quick_start_writes(demo_dir):
    """The README's manifest example (### The manifest) against the one Quick start's freeze
    wrote: the same keys in the same order and the same values, but for the graph's digest and
    size (TensorFlow's serialization of the sample's weights)."""
    import json

    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("### The manifest"):]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    written = demo_dir / "model.json"
    if not written.exists():  # Quick start's test writes it; alone, freeze the sample here
        run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tffreeze"), "freeze",
                              "demo-out/ckpt", "-o", "model.pb", "--manifest", "model.json"], cwd=str(demo_dir),
                             env=_no_server_named(), capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
    actual = json.loads(written.read_text())
    assert list(example) == list(actual)
    for key in actual:
        if key not in ("sha256", "size_bytes"):
            assert example[key] == actual[key], (key, example[key], actual[key])
