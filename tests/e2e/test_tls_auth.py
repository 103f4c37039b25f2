"""TLS and bearer tokens on both ports, both clients (a CA and certificates made
in the test with openssl); an exposed address without them is refused."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

import models
import pki as pki_files
from conftest import BIN, start_server, stop_server
from tffreeze import FreezeClient, UnauthenticatedError, UnavailableError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
CPP = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")
TOKEN = "t0ken-" + "a1" * 16


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem; server.pem/server.key for 127.0.0.1 and localhost; client.pem/client.key; tokens."""
    d = pki_files.make(tmp_path_factory.mktemp("pki"))
    (d / "tokens").write_text("# one token per line\n%s\n" % TOKEN)
    return d


@pytest.fixture(scope="module")
def secure(pki, tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("tls-data")),
                       ["--web-port", "0", "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                        "--auth-token-file", str(pki / "tokens")])
    srv.web_url = next(re.search(r"gRPC-Web on (https://\S+?)\)", l).group(1) for l in srv.log if "gRPC-Web on" in l)
    yield srv
    assert stop_server(srv) == 0


def test_python_client_tls_and_token(secure, pki, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    with FreezeClient(secure.target, ca=str(pki / "ca.pem"), token=TOKEN) as c:
        assert [o["name"] for o in c.freeze(model.directory).manifest["outputs"]] == ["y:0"]
        assert c.health() == "SERVING"
    for token in ("wrong-" + "b2" * 16, None):
        with FreezeClient(secure.target, ca=str(pki / "ca.pem"), token=token) as c:
            with pytest.raises(UnauthenticatedError) as err:
                c.freeze(model.directory)
            assert "bearer token" in err.value.message
    with FreezeClient(secure.target) as c:  # plaintext to a TLS port
        with pytest.raises(UnavailableError):
            c.freeze(model.directory, timeout=20)


def test_python_cli_takes_tls_and_token_from_flags_and_environment(secure, pki, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    cli = os.path.join(BIN, "tffreeze")
    out = subprocess.run([cli, "freeze", model.directory, "--server", secure.target, "--ca", str(pki / "ca.pem"),
                          "--token", TOKEN, "-o", str(tmp_path / "a.pb")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    env = dict(os.environ, TFFREEZE_CA=str(pki / "ca.pem"), TFFREEZE_TOKEN="nope-" + "c3" * 16)
    out = subprocess.run([cli, "freeze", model.directory, "--server", secure.target, "-o", str(tmp_path / "b.pb")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr and not os.path.exists(tmp_path / "b.pb")


def test_csharp_client_tls_and_token(secure, pki, tmp_path):
    if not os.path.exists(CS):
        subprocess.run(["make", "-s", "-C", ROOT, "csharp"], check=True)
    model = models.dense(str(tmp_path / "m"), True)
    base = [CS, "freeze", model.directory, "--server", secure.web_url, "--ca", str(pki / "ca.pem")]
    ok = subprocess.run(base + ["--token", TOKEN, "-o", str(tmp_path / "ok.pb")], capture_output=True, text=True,
                        timeout=600)
    assert ok.returncode == 0, ok.stderr
    got = models.run_frozen((tmp_path / "ok.pb").read_bytes(), model.feeds, ["y:0"])[0]
    assert np.allclose(got, model.expected["y:0"])
    for extra, env in ((["--token", "wrong-" + "d4" * 16], None), ([], {"TFFREEZE_TOKEN": ""})):
        bad = subprocess.run(base + extra + ["-o", str(tmp_path / "bad.pb")], capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, **(env or {})))
        assert bad.returncode == 1 and "UNAUTHENTICATED" in bad.stderr, bad.stderr
        assert not os.path.exists(tmp_path / "bad.pb")
    other_ca = subprocess.run([CS, "freeze", model.directory, "--server", secure.web_url, "--tls", "--token", TOKEN,
                               "-o", str(tmp_path / "untrusted.pb")], capture_output=True, text=True, timeout=600)
    assert other_ca.returncode == 1 and not os.path.exists(tmp_path / "untrusted.pb")  # self-signed CA not trusted


def _cpp_or_skip():
    if not os.path.exists(CPP):
        why = "tffreeze-cpp not built (make cpp)"
        if os.environ.get("TFFREEZE_REQUIRE_CPP") == "1":
            pytest.fail(why + " -- TFFREEZE_REQUIRE_CPP=1 forbids skipping")
        print("SKIP: " + why)
        pytest.skip(why)


def test_cpp_client_tls_and_token(secure, pki, tmp_path):
    _cpp_or_skip()
    model = models.dense(str(tmp_path / "m"), True)

    def freeze(out, *extra, env=None):
        return subprocess.run([CPP, "freeze", model.directory, "--server", secure.target, "-o", str(tmp_path / out),
                               *extra], capture_output=True, text=True, timeout=600, env=env)

    ok = freeze("a.pb", "--ca", str(pki / "ca.pem"), "--token", TOKEN)
    assert ok.returncode == 0, ok.stderr
    with FreezeClient(secure.target, ca=str(pki / "ca.pem"), token=TOKEN) as c:
        assert (tmp_path / "a.pb").read_bytes() == c.freeze(model.directory).graph_bytes
    env = dict(os.environ, TFFREEZE_CA=str(pki / "ca.pem"), TFFREEZE_TOKEN=TOKEN)
    assert freeze("b.pb", env=env).returncode == 0  # from the environment
    bad = freeze("c.pb", "--ca", str(pki / "ca.pem"), "--token", "wrong-" + "b2" * 16)
    assert bad.returncode == 1 and bad.stderr.strip().endswith("[UNAUTHENTICATED]") and "bearer token" in bad.stderr
    # the fix for a named server: every client's flag, and its operator's --auth-token-file
    assert "tffreeze, tffreeze-cs and tffreeze-cpp: --token TOKEN or $TFFREEZE_TOKEN" in bad.stderr, bad.stderr
    assert "A server started with --auth-token-file accepts the tokens in that file" in bad.stderr, bad.stderr
    plain = freeze("d.pb", "--token", TOKEN, "--timeout", "20")  # plaintext to a TLS port
    assert plain.returncode == 1 and "[UNAVAILABLE]" in plain.stderr
    assert not (tmp_path / "c.pb").exists() and not (tmp_path / "d.pb").exists()


def test_mutual_tls(pki, tmp_path):
    srv = start_server(str(tmp_path / "data"), ["--tls-cert", str(pki / "server.pem"), "--tls-key",
                                                str(pki / "server.key"), "--tls-client-ca", str(pki / "ca.pem")])
    try:
        model = models.dense(str(tmp_path / "m"), True)
        with FreezeClient(srv.target, ca=str(pki / "ca.pem"), client_cert=str(pki / "client.pem"),
                          client_key=str(pki / "client.key")) as c:
            assert c.freeze(model.directory).manifest["outputs"][0]["name"] == "y:0"
        with FreezeClient(srv.target, ca=str(pki / "ca.pem")) as c:
            with pytest.raises(UnavailableError):
                c.freeze(model.directory, timeout=20)
        if os.path.exists(CPP):  # the C++ client's --client-cert/--client-key
            base = [CPP, "freeze", model.directory, "--server", srv.target, "--ca", str(pki / "ca.pem"), "--timeout", "20"]
            ok = subprocess.run(base + ["-o", str(tmp_path / "m.pb"), "--client-cert", str(pki / "client.pem"),
                                        "--client-key", str(pki / "client.key")], capture_output=True, text=True)
            assert ok.returncode == 0, ok.stderr
            anon = subprocess.run(base + ["-o", str(tmp_path / "n.pb")], capture_output=True, text=True)
            assert anon.returncode == 1 and "[UNAVAILABLE]" in anon.stderr
            # trial 8 M5: the advice names the client certificate (it said "add --tls and --ca", given already)
            py = subprocess.run([os.path.join(BIN, "tffreeze")] + base[1:] + ["-o", str(tmp_path / "p.pb")],
                                capture_output=True, text=True)
            for done in (anon, py):
                assert "add --client-cert and --client-key" in done.stderr, done.stderr
            for binary, words in ((CPP, "give the PEM certificate to --client-cert and its PEM private key to "
                                               "--client-key"),
                                  (os.path.join(BIN, "tffreeze"), "given the other way round")):
                swapped = subprocess.run([binary] + base[1:] + ["-o", str(tmp_path / "s.pb"), "--client-cert",
                                                                str(pki / "client.key"), "--client-key",
                                                                str(pki / "client.pem")], capture_output=True, text=True)
                assert swapped.returncode in (1, 2) and "drop --tls" not in swapped.stderr, swapped.stderr
                assert words in swapped.stderr, swapped.stderr
    finally:
        assert stop_server(srv) == 0


@pytest.mark.parametrize("extra", [[], ["--auth-token-file", "TOKENS"], ["--tls-cert", "CERT", "--tls-key", "KEY"]])
def test_exposed_address_needs_tls_and_token_unless_insecure(pki, tmp_path, extra):
    files = {"TOKENS": str(pki / "tokens"), "CERT": str(pki / "server.pem"), "KEY": str(pki / "server.key")}
    extra = [files.get(a, a) for a in extra]
    cmd = [os.path.join(BIN, "tffreeze"), "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir",
           str(tmp_path / "d"), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "refusing to listen on 0.0.0.0" in out.stderr and "--insecure" in out.stderr


def test_tls_mistakes_name_the_cause_and_the_flag_in_every_client(secure, pki, server, tmp_path):
    """A plaintext client against a TLS server, TLS without the CA that signed the server's
    certificate, and TLS against a plaintext server: each says what went wrong and which flag
    fixes it (was "cannot reach the server ... start one"), in all three clients, on one line."""
    _cpp_or_skip()
    model = models.dense(str(tmp_path / "m"), True)
    plain_web = start_server(str(tmp_path / "plain-data"), ["--web-port", "0"])
    try:
        plain_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", l).group(1) for l in plain_web.log
                         if "gRPC-Web on" in l)
        cases = {  # what the user did -> (words the message must hold)
            "plaintext to TLS": ([], secure, ("closed the connection", "add --tls and --ca")),
            "TLS without --ca": (["--tls"], secure, ("certificate is not trusted", "--ca CA.pem")),
            "TLS to plaintext": (["--tls"], plain_web, ("TLS handshake", "drop --tls")),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
        for case, (extra, srv, words) in cases.items():
            for binary in (os.path.join(BIN, "tffreeze"), CS, CPP):
                address = srv.target
                if binary == CS and srv is plain_web:
                    address = plain_url
                elif binary == CS:
                    address = srv.web_url.replace("https://", "http://") if not extra else srv.web_url
                out = subprocess.run([binary, "inspect", model.directory, "--server", address, "--token", TOKEN,
                                      "--timeout", "20", *extra], capture_output=True, text=True, timeout=600, env=env)
                lines = out.stderr.strip().splitlines()
                assert out.returncode == 1 and len(lines) == 1, (case, binary, out.stderr)
                assert lines[0].endswith("[UNAVAILABLE]") and all(w in lines[0] for w in words), (case, binary, lines)
    finally:
        assert stop_server(plain_web) == 0


def test_the_other_port_of_a_tls_server_is_named_in_every_client(secure, pki, tmp_path):
    """Trial 8 M4: on a TLS server, the gRPC-Web port given to tffreeze or tffreeze-cpp, or the gRPC
    port given to tffreeze-cs, was "cannot reach the server ... start one"."""
    _cpp_or_skip()
    model = models.dense(str(tmp_path / "m"), True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    web_port = secure.web_url.replace("https://", "")
    for binary, address, words in ((os.path.join(BIN, "tffreeze"), web_port, "it looks like the gRPC-Web port"),
                                   (CPP, web_port, "it looks like the gRPC-Web port"),
                                   (CS, "https://" + secure.target, "it looks like the gRPC port")):
        out = subprocess.run([binary, "inspect", model.directory, "--server", address, "--ca", str(pki / "ca.pem"),
                              "--token", TOKEN, "--timeout", "20"], capture_output=True, text=True, timeout=600,
                             env=env)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1, (binary, out.stderr)
        assert words in lines[0] and "Start" not in lines[0], (binary, lines[0])


def test_csharp_plain_http_to_a_tls_web_port_gets_the_tls_hint_whatever_mono_words_it(secure, tmp_path):
    """Mono words a plain call to a TLS port's closed connection in many ways, depending on the
    moment the server closes it ("The socket has been shut down", "ReceiveFailure", "Operation
    aborted", "Error writing headers"): the hint must not depend on them (tffreeze-cs asks the
    port whether it speaks TLS). Calls run side by side, so the moments vary."""
    if not os.path.exists(CS):
        pytest.skip("tffreeze-cs is not built (make csharp)")
    model = models.dense(str(tmp_path / "m"), True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    plain = secure.web_url.replace("https://", "http://")
    for _ in range(2):
        calls = [subprocess.Popen([CS, command, model.directory, "--server", plain, "--token", TOKEN]
                                  + (["-o", str(tmp_path / ("%d.pb" % i))] if command == "freeze" else []),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                 for i, command in enumerate(["freeze", "inspect"] * 4)]
        for call in calls:
            err = call.communicate(timeout=300)[1]
            lines = err.strip().splitlines()
            assert call.returncode == 1 and len(lines) == 1, err
            assert "closed the connection" in lines[0] and "add --tls and --ca CA.pem" in lines[0], lines[0]
            assert "tffreeze serve --web-port" not in lines[0] and lines[0].endswith("[UNAVAILABLE]"), lines[0]


def test_the_page_a_tls_web_port_serves_may_call_that_port(secure, pki):
    """Trial 8 B1: over TLS the page's own https:// origin was refused (HTTP 403), because the
    same-origin check took the WSGI server's "http" for the scheme. Its origin is the port's
    own: allowed, with or without a token check behind it; another origin still is not."""
    import http.client
    import ssl
    import struct
    import urllib.parse

    from tffreeze_api.v1 import blob_pb2

    msg = blob_pb2.FindMissingBlobsRequest(blobs=[blob_pb2.Digest(sha256="ab" * 32, size_bytes=3)]).SerializeToString()
    body = struct.pack(">BI", 0, len(msg)) + msg
    url = urllib.parse.urlparse(secure.web_url)
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def post(origin, host=url.hostname):
        conn = http.client.HTTPSConnection(host, url.port, timeout=30, context=context)
        conn.request("POST", "/tffreeze.v1.FreezeService/FindMissingBlobs", body,
                     {"Content-Type": "application/grpc-web+proto", "Origin": origin,
                      "Authorization": "Bearer " + TOKEN})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        conn.close()
        return resp.status, text

    for host in (url.hostname, "localhost"):  # (a browser's Origin and Host name the same)
        own = "https://%s:%d" % (host, url.port)
        assert post(own, host)[0] == 200, (own, post(own, host))
    status, text = post("https://evil.example")
    assert status == 403 and "is not allowed" in text
    assert post("http://%s:%d" % (url.hostname, url.port))[0] == 403  # not the page's scheme


def test_a_ca_file_that_is_no_certificate_is_named_on_one_line_in_every_client(secure, pki, tmp_path):
    """Trial 9 M3 and R1: `--ca tokens` (or the server's key) was "cannot reach the server ... start
    one" in C++, and a 25-line traceback in Python; C# named the file."""
    _cpp_or_skip()
    model = models.dense(str(tmp_path / "m"), True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    for wrong in (pki / "tokens", pki / "server.key"):
        for binary, address in ((os.path.join(BIN, "tffreeze"), secure.target), (CPP, secure.target),
                                (CS, secure.web_url)):
            out = subprocess.run([binary, "inspect", model.directory, "--server", address, "--ca", str(wrong),
                                  "--token", TOKEN], capture_output=True, text=True, timeout=300, env=env)
            lines = out.stderr.strip().splitlines()
            assert out.returncode in (1, 2) and len(lines) == 1, (binary, out.stderr)
            assert str(wrong) in lines[0] and "Start one" not in lines[0], (binary, lines[0])


def test_the_token_file_s_path_given_as_the_token_is_named_so_in_every_client(secure, pki, tmp_path):
    """Trial 9 R5: `--token ~/team/tokens` got the generic "missing or wrong bearer token"."""
    _cpp_or_skip()
    model = models.dense(str(tmp_path / "m"), True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") or k.startswith("TFFREEZE_REQ")}
    for binary, address in ((os.path.join(BIN, "tffreeze"), secure.target), (CPP, secure.target),
                            (CS, secure.web_url)):
        out = subprocess.run([binary, "inspect", model.directory, "--server", address, "--ca", str(pki / "ca.pem"),
                              "--token", str(pki / "tokens")], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr, (binary, out.stderr)
        assert "looks like a file's path" in out.stderr and "--token takes the token itself" in out.stderr, (
            binary, out.stderr)
        assert str(pki / "tokens") not in out.stderr  # (what was sent is never echoed)
