"""The library corpus (tests/libcorpus.py, issue 33): models that model libraries others
wrote built (keras-bert, keras-transformer, deepctr, efficientnet, segmentation-models,
image-classifiers, spektral, tensorflow-recommenders, keras-tcn, tf-slim in TF 2.21;
bert-tensorflow and tflearn in TF 1.15), frozen by the real server through the Python
client. Asserted: every model builds; no freeze crashes (INTERNAL, GRAPH_UNSUPPORTED);
given the outputs, every frozen graph runs and equals the checkpoint's values (1e-5);
without names, never a wrong answer with exit 0 (right, or a refusal listing the right
outputs). What fails today is in OPEN, as strict xfails that flip when fixed.

Needs `make libcorpus-env` (a prerequisite of `make test`); the TF1 models also `make
tf115`. Without them these tests skip, saying so, unless TFFREEZE_REQUIRE_LIBCORPUS=1.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

import libcorpus

# (check, model) -> diagnosis: cases that fail today. Strict: each flips to a failure once fixed.
OPEN: dict = {}
# OPEN cases that crash today (not a named refusal or a wrong value): the no-crash test xfails them too.
CRASHING: set = set()  # none today: tflearn's training-mode variable was one (fixed, see rewrite.py)

REQUIRE = os.environ.get("TFFREEZE_REQUIRE_LIBCORPUS") == "1"


def _params(check):
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=OPEN[(check, name)]))
            if (check, name) in OPEN else name for name in libcorpus.MODELS]


@pytest.fixture(scope="module")
def library_models():
    envs = libcorpus.available_envs()
    names = [n for n in libcorpus.MODELS if libcorpus.MODELS[n][0] in envs]
    started = time.time()
    built = libcorpus.build_all(libcorpus.default_root(), names)
    sys.stderr.write("library corpus ready in %.1f s\n" % (time.time() - started))
    return built


@pytest.fixture()
def model(library_models, request):
    name = request.node.callspec.params["name"]
    if name not in library_models:
        env = libcorpus.MODELS[name][0]
        why = "%s: environment %s missing (make libcorpus-env%s)" % (name, env, " and make tf115" if env == "tf1"
                                                                       else "")
        if REQUIRE:
            pytest.fail(why)
        pytest.skip(why)
    info = library_models[name]
    assert "error" not in info, "%s did not build:\n%s" % (name, info["error"])
    return info


@pytest.fixture(scope="module")
def lib_client(server):
    from tffreeze import FreezeClient
    with FreezeClient(server.target, timeout=300) as c:
        yield c


@pytest.mark.parametrize("name", _params("named"))
def test_named_outputs_freeze_run_and_match(lib_client, model, tmp_path, name):
    verdict, detail = libcorpus.grade_with_names(lib_client, model, str(tmp_path / "m.pb"))
    assert verdict == "match", "%s: %s" % (verdict, detail)


_AUTO = {}  # name -> the verdict without names, graded once for both tests below


def _auto(client, info, tmp_path, name):
    if name not in _AUTO:
        _AUTO[name] = libcorpus.grade_without_names(client, info, str(tmp_path / "m.pb"))
    return _AUTO[name]


@pytest.mark.parametrize("name", _params("auto"))
def test_without_names_right_or_a_refusal_listing_them(lib_client, model, tmp_path, name):
    verdict, detail = _auto(lib_client, model, tmp_path, name)
    assert verdict in ("right", "helpful refusal"), "%s: %s" % (verdict, detail)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=OPEN[("auto", n)])) if n in CRASHING else n
    for n in libcorpus.MODELS])
def test_no_model_crashes_without_names(lib_client, model, tmp_path, name):
    """Without names every model is answered or refused by name, never a crash (INTERNAL,
    GRAPH_UNSUPPORTED), except those in CRASHING (a case still OPEN)."""
    verdict, detail = _auto(lib_client, model, tmp_path, name)
    assert verdict != "crash", detail
