"""The web page is part of the install (issue 34, finding 2): `make setup` and `make demo`
build its script (app.js); a server whose page folder lacks it warns at start, naming
`make web`, and its page says so in visible text (not only a 404 for app.js); with the
script, GET / and GET /app.js are 200.

The page folder without app.js is a copy made here, named to the server by
TFFREEZE_WEB_DIR (a test-only override), so the checkout's app.js is never touched."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from conftest import start_server, stop_server
from tffreeze_server import webguard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = webguard.PAGE_DIR


def _web_url(srv) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(srv.log):
            m = re.search(r"gRPC-Web on (http://\S+?)[;)]", line)
            if m:
                return m.group(1)
        time.sleep(0.05)
    raise AssertionError("no gRPC-Web line in the server's log:\n" + "".join(srv.log))


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class _Visible(HTMLParser):
    """The text of the body a browser shows with JavaScript on and before any script runs:
    no <noscript>, <script>, <style>, nor elements marked hidden."""

    VOID = {"meta", "link", "input", "br", "img", "hr", "source", "col", "area", "base", "wbr", "embed", "track"}

    def __init__(self):
        super().__init__()
        self.stack, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        names = {k for k, _ in attrs}
        self.stack.append(tag in ("noscript", "script", "style", "head") or "hidden" in names)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not any(self.stack):
            self.text.append(data)


def _visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return " ".join(" ".join(parser.text).split())


def _env(folder=None):
    env = dict(os.environ)
    env.pop(webguard.PAGE_DIR_ENV, None)
    if folder is not None:
        env[webguard.PAGE_DIR_ENV] = str(folder)
    return env


def test_a_server_without_the_script_warns_at_start_and_its_page_says_so(tmp_path):
    folder = tmp_path / "page"
    folder.mkdir()
    shutil.copy(os.path.join(PAGE, "index.html"), folder / "index.html")  # the HTML, no app.js
    srv = start_server(str(tmp_path / "data"), ["--web-port", "0"], env=_env(folder))
    try:
        url = _web_url(srv)
        start = "".join(srv.log)
        assert "app.js is not built" in start and "make web" in start and str(folder) in start
        assert "WARNING" in start
        status, html = _get(url + "/")
        assert status == 200
        shown = _visible_text(html)
        assert "script (app.js) has not loaded" in shown and "make web" in shown, shown
        status, body = _get(url + "/app.js")
        assert status == 404 and "make web" in body
    finally:
        assert stop_server(srv) == 0


def test_app_js_hides_the_notice_once_it_runs():
    with open(os.path.join(PAGE, "index.html")) as fh:
        assert 'id="not-loaded"' in fh.read()
    with open(os.path.join(ROOT, "web", "src", "app.ts")) as fh:
        assert '$("not-loaded").hidden = true' in fh.read()


@pytest.mark.skipif(not os.path.isfile(os.path.join(PAGE, "app.js")), reason="the page is not built (make web)")
def test_a_server_with_the_script_serves_the_page_and_does_not_warn(tmp_path):
    srv = start_server(str(tmp_path / "data"), ["--web-port", "0"], env=_env())
    try:
        url = _web_url(srv)
        assert "not built" not in "".join(srv.log)
        status, html = _get(url + "/")
        assert status == 200 and '<script src="app.js">' in html
        status, script = _get(url + "/app.js")
        assert status == 200 and "not-loaded" in script  # the built script hides the notice
    finally:
        assert stop_server(srv) == 0


def _dry(target: str) -> str:
    """`make -n -B TARGET`: what it runs on a fresh clone (nothing executed)."""
    return subprocess.run(["make", "-n", "-B", "-C", ROOT, target], capture_output=True, text=True, check=True,
                          timeout=60).stdout


@pytest.mark.parametrize("target", ["setup", "demo"])
def test_setup_and_demo_build_the_page(target):
    text = _dry(target)
    assert "npm ci" in text and "buf generate" in text
    assert re.search(r"esbuild web/src/app\.ts .*--outfile=server/tffreeze_server/web/app\.js", text.replace("\\\n", ""))


def test_the_server_names_its_process_whatever_started_it(tmp_path):
    """Issue 34, finding 11: the local server is started as `python -c ...`; `ps -e`, `top` and
    `pgrep tffreeze-server` show it as tffreeze-server (the kernel's comm)."""
    code = "import sys; from tffreeze_server.cli import main; sys.exit(main())"
    srv = start_server(str(tmp_path / "data"), command=[sys.executable, "-c", code], env=_env())
    try:
        with open("/proc/%d/comm" % srv.proc.pid) as fh:
            assert fh.read().strip() == "tffreeze-server"
    finally:
        assert stop_server(srv) == 0
