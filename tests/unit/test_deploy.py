"""The deployment files (Dockerfile, deploy/k8s/) checked without a cluster or a registry:
the image cannot be built here (no Docker Hub) and no cluster runs here, so what can be
checked is checked — the manifests against Kubernetes' schemas (strict), the server flags
they and the image pass against the server's own argument parser, the files the
Dockerfile copies, and that the image runs as the user the Deployment expects."""

from __future__ import annotations

import glob
import os
import shlex

import kubernetes_validate
import pytest
import yaml

from tffreeze_server.cli import build_parser, settings_from

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml")))


def _documents():
    for path in MANIFESTS:
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc:
                    yield path, doc


def _dockerfile():
    """(instruction, argument text) pairs, continuation lines joined, comments dropped."""
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        text = fh.read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_manifests_pass_kubernetes_schemas_strictly():
    kinds = []
    for path, doc in _documents():
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        kinds.append(doc["kind"])
    assert sorted(set(kinds)) == ["Deployment", "Secret", "Service"]


def test_deployment_runs_replicas_the_server_accepts():
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings = settings_from(build_parser().parse_args(container["args"]))  # every flag exists
    assert settings.store and settings.store.startswith("s3://") and settings.metrics_port == 9100
    assert settings.auth_token_file, "an exposed replica requires a token"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"] == 50051
    assert container["livenessProbe"]["grpc"]["port"] == 50051
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"  # not the store-following health
    assert "service" not in container["readinessProbe"]["grpc"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    service = next(d for _, d in _documents() if d["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "None"  # clients balance per call over every replica (dns:///)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    secret_names = {d["metadata"]["name"] for _, d in _documents() if d["kind"] == "Secret"}
    used = {e["secretRef"]["name"] for e in container["envFrom"]} | {
        v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert used <= secret_names


def test_dockerfile_copies_what_exists_runs_non_root_with_the_sandbox():
    steps = _dockerfile()
    words = [w for w, _ in steps]
    assert words[0] == "FROM" and "HEALTHCHECK" in words
    for word, rest in steps:
        if word == "COPY":
            for src in shlex.split(rest)[:-1]:
                assert os.path.exists(os.path.join(ROOT, src)), "COPY %s: no such file in the repository" % src
    assert any(w == "RUN" and "bubblewrap" in r for w, r in steps)
    # the data folder exists and belongs to the image's user; only runtime requirements go in
    assert any(w == "RUN" and "mkdir -p /var/lib/tffreeze" in r and "chown 10001:10001 /var/lib/tffreeze" in r
               for w, r in steps)
    assert not any("requirements-dev" in r for _, r in steps)
    user = next(r for w, r in steps if w == "USER")
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment")
    assert user.isdigit() and int(user) != 0
    assert int(user) == deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    entry = yaml.safe_load(next(r for w, r in steps if w == "ENTRYPOINT"))
    cmd = yaml.safe_load(next(r for w, r in steps if w == "CMD"))
    assert entry[0] == "tffreeze-server"
    settings = settings_from(build_parser().parse_args(entry[1:] + cmd))
    assert settings.host == "0.0.0.0" and settings.port == 50051


@pytest.mark.parametrize("path", MANIFESTS, ids=os.path.basename)
def test_manifests_are_plain_yaml(path):
    with open(path) as fh:
        assert all(isinstance(doc, dict) for doc in yaml.safe_load_all(fh) if doc is not None)
