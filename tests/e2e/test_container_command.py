"""The container image's documented command lines, run as the image would run them but
outside a container (no registry or Docker here): ENTRYPOINT + the arguments of each
documented `docker run` line (data folder, ports and bucket pointed at this test's), then
the image's HEALTHCHECK command against it — plaintext and with TLS and a token. A
placeholder token (the example Secret's) stops the server at start."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

import s3moto
from conftest import start_server, stop_server
from s3moto import BUCKET, Moto

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = "/var/lib/tffreeze"


def _dockerfile():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        return fh.read()


def _instruction(word: str) -> str:
    text = _dockerfile().replace("\\\n", " ")
    return next(line.split(" ", 1)[1].strip() for line in text.splitlines() if line.startswith(word + " "))


def documented_runs():
    """The argument lists after the image name of every `docker run` line in the Dockerfile."""
    comment = "\n".join(line[1:].strip() for line in _dockerfile().splitlines() if line.startswith("#"))
    runs = []
    for line in comment.replace("\\\n", " ").splitlines():
        if "docker run " not in line:
            continue
        words = shlex.split(line.split("docker run ", 1)[1])
        image = next(i for i, w in enumerate(words) if w.startswith("tffreeze-server:"))
        runs.append((words[image], words[image + 1:]))
    return runs


def _as_here(argv, tmp_path, moto_url):
    """The image's paths, ports and bucket pointed at this test's."""
    out = []
    for a in argv:
        a = a.replace(DATA, str(tmp_path / "data"))
        a = a.replace("s3://BUCKET/", "s3://%s/" % BUCKET)
        out.append(a)
    for flag in ("--port", "--metrics-port", "--web-port"):
        if flag in out:
            out[out.index(flag) + 1] = "0"
    if any(a.startswith("s3://") for a in out):
        out += ["--s3-endpoint", moto_url]
    return out


def _without(argv, flags):
    """argv less the given flags and their values (start_server sets them)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def _healthcheck(tmp_path):
    command = yaml.safe_load(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert command[:3] == ["python", "-m", "tffreeze_server.healthcheck"]
    argv = [sys.executable] + [a.replace(DATA, str(tmp_path / "data")) for a in command[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _serve_and_check_health(argv, tmp_path) -> None:
    """Run the image's server command ``argv`` (its data folder made, as the image makes it),
    then the image's HEALTHCHECK command against it, which must pass."""
    os.makedirs(tmp_path / "data")
    srv = start_server(str(tmp_path / "data"), _without(argv, ("--port", "--data-dir")))
    try:
        check = _healthcheck(tmp_path)
        assert check.returncode == 0, check.stderr
    finally:
        assert stop_server(srv) == 0


@pytest.fixture(scope="module")
def moto():
    s3moto.credentials()
    m = Moto().start()
    m.s3().create_bucket(Bucket=BUCKET)
    yield m
    m.stop()


def test_one_image_tag_everywhere():
    from tffreeze_server import __version__

    tags = {image for image, _ in documented_runs()}
    with open(os.path.join(ROOT, "deploy", "k8s", "deployment.yaml")) as fh:
        tags.add(yaml.safe_load(fh)["spec"]["template"]["spec"]["containers"][0]["image"])
    with open(os.path.join(ROOT, "README.md")) as fh:
        tags |= set(re.findall(r"docker build -t (\S+) \.", fh.read()))
    tags |= set(re.findall(r"docker build -t (\S+) \.", _dockerfile()))
    assert tags == {"tffreeze-server:%s" % __version__}


@pytest.mark.parametrize("run", range(len(documented_runs())))
def test_documented_docker_run_lines_start_and_pass_the_health_check(tmp_path, moto, run):
    entry = yaml.safe_load(_instruction("ENTRYPOINT"))
    cmd = yaml.safe_load(_instruction("CMD"))
    _, args = documented_runs()[run]
    _serve_and_check_health(_as_here(entry[1:] + (args or cmd), tmp_path, moto.url), tmp_path)


def test_the_health_check_works_with_tls_and_a_token(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    (tmp_path / "tokens").write_text(os.urandom(16).hex() + "\n")
    entry = yaml.safe_load(_instruction("ENTRYPOINT"))
    _serve_and_check_health(_as_here(entry[1:] + ["--tls-cert", str(tmp_path / "c.pem"), "--tls-key",
                                                  str(tmp_path / "k.pem"), "--auth-token-file",
                                                  str(tmp_path / "tokens")], tmp_path, ""), tmp_path)


def test_the_example_secrets_placeholder_token_is_refused(tmp_path):
    with open(os.path.join(ROOT, "deploy", "k8s", "secret-example.yaml")) as fh:
        secret = next(d for d in yaml.safe_load_all(fh) if d and d["metadata"]["name"] == "tffreeze-tokens")
    (tmp_path / "tokens").write_text(secret["stringData"]["tokens"])
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tffreeze-server"), "--port", "0",
                          "--data-dir", str(tmp_path / "d"), "--auth-token-file", str(tmp_path / "tokens")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "placeholder" in out.stderr and "openssl rand" in out.stderr


def _web_stage():
    """(instruction, arguments) of the Dockerfile's web stage (FROM ... AS web to the next FROM)."""
    text = _dockerfile().replace("\\\n", " ")
    out, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            inside = rest.strip().lower().endswith(" as web")
        elif inside:
            out.append((word, rest.strip()))
    return out


@pytest.mark.skipif(shutil.which("npm") is None, reason="no npm here (make node)")
def test_the_images_web_stage_builds_the_page(tmp_path):
    """The web stage's COPY and RUN lines, run outside a container with the image's paths
    re-rooted under tmp_path (npm ci from web/package-lock.json, as the image does): they
    build an app.js that hides the page's not-loaded notice."""
    root = str(tmp_path)
    cwd = root
    stage = _web_stage()
    assert stage, "the Dockerfile has no web stage"
    for word, rest in stage:
        if word == "WORKDIR":
            cwd = root + rest
            os.makedirs(cwd, exist_ok=True)
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            dest = root + dest if dest.startswith("/") else os.path.join(cwd, dest)
            for src in sources:
                path = os.path.join(ROOT, src)
                if os.path.isdir(path):
                    shutil.copytree(path, dest, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("node_modules", "gen"))  # as .dockerignore
                else:
                    os.makedirs(dest, exist_ok=True)
                    shutil.copy(path, dest)
        elif word == "RUN":
            command = re.sub(r"(?<=[\s=])/src\b", root + "/src", rest)
            run = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, "RUN %s:\n%s%s" % (rest, run.stdout[-2000:], run.stderr[-2000:])
    copied = re.search(r"COPY --from=web (\S+) server/tffreeze_server/web/app\.js", _dockerfile())
    assert copied, "the server stage does not copy the built app.js"
    built = root + copied.group(1)
    with open(built) as fh:
        script = fh.read()
    assert len(script) > 10000 and "not-loaded" in script
