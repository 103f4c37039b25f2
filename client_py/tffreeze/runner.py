"""Run a frozen graph locally (``tffreeze run``). The only module that imports TensorFlow."""

from __future__ import annotations

import contextlib
import os
from typing import Dict, List, Tuple

from tffreeze_api import tf_errors

from .errors import InvalidArgumentError, NotFoundError, TffreezeError


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def verbose() -> bool:
    """TensorFlow's own log lines are shown only with --verbose or $TFFREEZE_VERBOSE=1."""
    return os.environ.get("TFFREEZE_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow's C++ log lines (absl's start-up warning, CUDA probing on a CPU machine,
    CPU features) go to fd 2 whatever its log level says; keep them off the user's terminal
    while TensorFlow works, unless verbose. Our own errors are raised after fd 2 is back."""
    if verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_graph(model_path: str, feeds: Dict[str, object], fetches: List[str]) -> List[object]:
    """Import a frozen GraphDef and evaluate ``fetches`` given ``feeds`` (name -> array)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_silenced():
        return _run_graph(model_path, feeds, fetches)


def _run_graph(model_path: str, feeds: Dict[str, object], fetches: List[str]) -> List[object]:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    graph_def = tf.compat.v1.GraphDef()
    try:
        with open(model_path, "rb") as fh:
            graph_def.ParseFromString(fh.read())
    except FileNotFoundError:
        raise NotFoundError("%s does not exist" % model_path) from None
    except Exception as exc:  # DecodeError
        raise InvalidArgumentError("%s is not a binary GraphDef (%s)" % (model_path, exc)) from None
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise InvalidArgumentError("cannot import %s: %s" % (model_path, str(exc).splitlines()[0])) from None

    def lookup(name):
        try:
            return graph.get_tensor_by_name(_tensor_name(name))
        except (KeyError, ValueError):
            ops = sorted(op.name for op in graph.get_operations() if op.type == "Placeholder")
            raise NotFoundError("tensor %r is not in %s (placeholders: %s)"
                                % (name, model_path, ", ".join(ops) or "none")) from None

    feed_dict = {lookup(k): v for k, v in feeds.items()}
    fetch_list = [lookup(f) for f in fetches]
    with tf.compat.v1.Session(graph=graph) as sess:
        try:
            return sess.run(fetch_list, feed_dict=feed_dict)
        except tf.errors.OpError as exc:
            raise TffreezeError("running %s failed: %s" % (model_path, tf_errors.describe(exc))) from None
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError("cannot feed %s: %s" % (model_path, exc)) from None


class Manifest:
    """A manifest's names for ``run``: a tensor name ('x' or 'x:0') or a signature alias, and
    the dtype and shape each input must have (as the C# and C++ runners check them)."""

    def __init__(self, path: str):
        import json

        try:
            with open(path, "r", encoding="utf-8") as fh:
                self.data = json.load(fh)
        except FileNotFoundError:
            raise NotFoundError("manifest %s does not exist" % path) from None
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError("manifest %s cannot be read: %s" % (path, exc)) from None
        self.path = path

    def _find(self, kind: str, name: str) -> dict:
        tensors = {t["name"]: t for t in self.data.get(kind) or []}
        signature = (self.data.get("signature") or {}).get(kind) or {}
        for candidate in (name, _tensor_name(name)):
            if candidate in tensors:
                return tensors[candidate]
        if name in signature:
            return dict(signature[name], name=signature[name]["name"])
        known = sorted(tensors) + sorted(signature)
        raise NotFoundError("%s is not an %s of %s (%s: %s)" % (name, kind[:-1], self.path, kind,
                                                                 ", ".join(known) or "none"))

    def input(self, name: str) -> dict:
        return self._find("inputs", name)

    def output(self, name: str) -> dict:
        return self._find("outputs", name)

    def outputs(self) -> List[str]:
        return [t["name"] for t in self.data.get("outputs") or []]

    @staticmethod
    def check(info: dict, value, label: str) -> None:
        import numpy as np

        want = info.get("dtype")
        got = str(np.asarray(value).dtype) if not np.asarray(value).dtype.kind in "OSU" else "string"
        if want and got != want:
            raise InvalidArgumentError("input %s: the manifest says %s, the .npy holds %s" % (label, want, got))
        shape = info.get("shape")
        if shape is not None:
            actual = list(np.asarray(value).shape)
            if len(actual) != len(shape) or any(d != -1 and d != a for d, a in zip(shape, actual)):
                raise InvalidArgumentError("input %s: the manifest says shape %s, the .npy holds %s"
                                           % (label, shape, actual))


def describe(value, limit: int = 6) -> str:
    """dtype, shape and the first values of an output (what `run` prints without a file)."""
    import numpy as np

    array = np.asarray(value)
    flat = array.reshape(-1)[:limit].tolist()
    text = ", ".join("%.6g" % v if isinstance(v, float) else repr(v) for v in flat)
    more = ", ..." if array.size > limit else ""
    return "%s %s [%s%s]" % (array.dtype, list(array.shape), text, more)


def parse_outputs(pairs: List[str]) -> List[Tuple[str, str]]:
    """`--output NAME[=FILE.npy]` values: (name, file or "" to print it)."""
    return [(p.partition("=")[0], p.partition("=")[2]) for p in pairs]


def parse_pairs(pairs: List[str], flag: str) -> List[Tuple[str, str]]:
    out = []
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise InvalidArgumentError("%s %r: write NAME=FILE.npy, e.g. %s x:0=x.npy" % (flag, p, flag))
        out.append((name, path))
    return out
