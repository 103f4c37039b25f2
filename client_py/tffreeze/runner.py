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


def parse_pairs(pairs: List[str], flag: str) -> List[Tuple[str, str]]:
    out = []
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise InvalidArgumentError("%s %r: write NAME=FILE.npy, e.g. %s x:0=x.npy" % (flag, p, flag))
        out.append((name, path))
    return out
