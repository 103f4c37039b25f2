"""README examples run as written (issue 24's first-hour findings): the Python library
example against the sample checkpoint `make demo` writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _block(heading: str, language: str) -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index(heading):]
    return re.search(r"```%s\n(.*?)```" % language, section, re.S).group(1)


def test_the_python_library_example_runs_as_written(server, tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_sample_checkpoint.py"),
                    str(tmp_path / "demo-out")], check=True, capture_output=True, timeout=600)
    code = _block("## Python library", "python")
    assert "127.0.0.1:50051" in code  # the address the README tells users; the test's server instead
    run = subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:50051", server.target)], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "model.pb").stat().st_size > 0 and (tmp_path / "model.json").stat().st_size > 0
    assert '"prefix": "model.ckpt-100"' in (tmp_path / "model.json").read_text()
