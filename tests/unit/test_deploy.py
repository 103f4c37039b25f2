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
        if word == "COPY" and not rest.startswith("--from="):  # --from: another stage's file
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


def _stage(steps, name):
    """The instructions of build stage ``name`` (FROM ... AS name up to the next FROM)."""
    out, inside = [], False
    for word, rest in steps:
        if word == "FROM":
            inside = rest.lower().endswith(" as " + name)
            continue
        if inside:
            out.append((word, rest))
    return out


def test_the_image_builds_the_page_and_serves_grpc_web_on_8080():
    """Issue 34, finding 11: a Node stage builds app.js from web/package-lock.json (npm ci) and
    the server package ships it; the entry point, EXPOSE, the Deployment and the Service give
    gRPC-Web (the C# client, the page) port 8080."""
    steps = _dockerfile()
    froms = [r for w, r in steps if w == "FROM"]
    assert len(froms) == 2 and froms[0].lower().endswith(" as web") and froms[0].startswith("node:")
    web = _stage(steps, "web")
    assert any(w == "COPY" and "web/package-lock.json" in r for w, r in web)
    runs = " ".join(r for w, r in web if w == "RUN")
    assert "npm ci" in runs and "npm install" not in runs
    assert "buf generate" in runs and "tsc --noEmit" in runs and "esbuild src/app.ts" in runs
    built = runs.split("--outfile=", 1)[1].split()[0]
    copies = [(i, shlex.split(r)) for i, (w, r) in enumerate(steps) if w == "COPY" and r.startswith("--from=web")]
    assert [c[1:] for _, c in copies] == [[built, "server/tffreeze_server/web/app.js"]]
    install = next(i for i, (w, r) in enumerate(steps) if w == "RUN" and "./server" in r)
    assert copies[0][0] < install, "app.js must be in place before the server package is installed"
    assert "8080" in next(r for w, r in steps if w == "EXPOSE").split()
    entry = yaml.safe_load(next(r for w, r in steps if w == "ENTRYPOINT"))
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(build_parser().parse_args(entry[1:] + container["args"]))
    assert settings.web_port == 8080
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["web"] == 8080
    service = next(d for _, d in _documents() if d["kind"] == "Service")
    assert {"name": "web", "port": 8080, "targetPort": "web", "appProtocol": "http"} in service["spec"]["ports"]


def test_prometheus_scrapes_the_metrics_with_its_own_token():
    """Issue 34, finding 11: the replicas' metrics need a token (--auth-token-file), so no
    annotation invites a token-less scrape (401); the documented scrape job sends a token read
    from the Secret that the example makes for Prometheus, whose value is one of the server's."""
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    settings = settings_from(build_parser().parse_args(container["args"]))
    assert settings.auth_token_file and settings.metrics_port == 9100 and settings.metrics_host == "0.0.0.0"
    annotations = template["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") != "true"
    with open(os.path.join(ROOT, "deploy", "prometheus", "scrape-config.yaml")) as fh:
        job = yaml.safe_load(fh)["scrape_configs"][0]
    assert job["authorization"]["type"] == "Bearer"
    path = job["authorization"]["credentials_file"]
    secrets = {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == "Secret"}
    prefix = "/etc/prometheus/secrets/"
    name, key = path[len(prefix):].split("/")
    assert path.startswith(prefix) and name in secrets
    token = secrets[name]["stringData"][key]
    assert token in secrets["tffreeze-tokens"]["stringData"]["tokens"].split()
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert keep["regex"] == "%s;metrics" % deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
    assert {"name": "metrics", "containerPort": 9100} in container["ports"]
