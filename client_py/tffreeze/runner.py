"""Run a frozen graph locally (``tffreeze run``). The only module that imports TensorFlow."""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

from tffreeze_api import native_logs, tf_errors

from .errors import InvalidArgumentError, NotFoundError, TffreezeError


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def verbose() -> bool:
    """TensorFlow's own log lines are shown only with --verbose or $TFFREEZE_VERBOSE=1."""
    return native_logs.verbose()


_native_stderr_silenced = native_logs.native_lines_off


def run_graph(model_path: str, feeds: Dict[str, object], fetches: List[str],
              runtime_names: Optional[Dict[str, str]] = None, session_config: bytes = b"",
              kind: Optional[str] = None) -> List[object]:
    """Evaluate ``fetches`` given ``feeds`` (name -> array) in a frozen GraphDef (TensorFlow),
    an ONNX model (onnxruntime) or a TFLite model (LiteRT, else TensorFlow's interpreter):
    ``kind`` ("graphdef", "onnx", "tflite"), by default what :func:`model_kind` finds the
    file holds. ``runtime_names``: tensor name -> the runtime's name
    (a manifest's ``conversion``); ``session_config``: a serialized ConfigProto the
    TensorFlow session is created with (a manifest's ``session_config``)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if kind is None:
        kind = model_kind(model_path)[0]
    if kind in ("onnx", "tflite"):
        names = runtime_names or {}
        with _native_stderr_silenced():
            run = _run_onnx if kind == "onnx" else _run_tflite
            return run(model_path, {names.get(k, k): v for k, v in feeds.items()}, [names.get(f, f) for f in fetches])
    with _native_stderr_silenced():
        return _run_graph(model_path, feeds, fetches, session_config)


# What a model file holds, in words, and the extension and manifest format of each kind.
KINDS = {"graphdef": "a frozen GraphDef", "onnx": "an ONNX model", "tflite": "a TensorFlow Lite model"}
_EXTENSIONS = {".pb": "graphdef", ".onnx": "onnx", ".tflite": "tflite"}
_FORMATS = {"FORMAT_ONNX": "onnx", "FORMAT_TFLITE": "tflite"}  # anything else: a GraphDef


def sniff(data: bytes) -> str:
    """What a model file holds, by its bytes: "tflite" (the "TFL3" identifier at offset 4),
    "onnx" (a ModelProto: field 1, ir_version, a varint, with a graph or opset_import),
    "savedmodel" (a SavedModel: a varint schema version and meta_graphs), "metagraph" (a
    MetaGraphDef: a saver_def, signature_def, asset or object graph), "graphdef" (only a
    GraphDef's fields: node, library, version, versions), else "unknown". Only the top-level
    fields are read (the C# and C++ clients use the same rule)."""
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return "tflite"
    fields, i, n = set(), 0, len(data)

    def varint(at):
        value, shift = 0, 0
        while at < n and shift < 64:
            b = data[at]
            value |= (b & 0x7F) << shift
            at += 1
            if not b & 0x80:
                return value, at
            shift += 7
        return None, at

    while i < n:
        tag, i = varint(i)
        if tag is None or tag >> 3 == 0:
            return "unknown"
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = varint(i)
            if value is None:
                return "unknown"
        elif wire == 1:
            i += 8
        elif wire == 2:
            length, i = varint(i)
            if length is None:
                return "unknown"
            i += length
        elif wire == 5:
            i += 4
        else:
            return "unknown"
        if i > n:
            return "unknown"
        fields.add((field, wire))
    if not fields:
        return "unknown"
    if (1, 0) in fields:
        if (7, 2) in fields or (8, 2) in fields:
            return "onnx"
        return "savedmodel" if (2, 2) in fields else "unknown"
    if any((f, 2) in fields for f in (3, 5, 6, 7)):
        return "metagraph"
    return "graphdef" if fields <= {(1, 2), (2, 2), (3, 0), (4, 2)} else "unknown"


def model_kind(path: str, manifest_format: Optional[str] = None, manifest_path: str = "") -> Tuple[str, str]:
    """What ``tffreeze run`` runs ``path`` as ("graphdef", "onnx", "tflite") and a warning ("" if
    none): with a manifest (``manifest_format``, its "format"), what it says; else what the bytes
    hold; else the extension. A checkpoint's MetaGraphDef, a SavedModel's graph, a folder, a
    missing file, and a manifest of another kind than the bytes are refused; a name whose
    extension says another kind than the file holds is warned of. (The C# and C++ clients decide
    and word it the same way.)"""
    if os.path.isdir(path):
        raise InvalidArgumentError("MODEL %s is a folder: give the frozen .pb file" % path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise NotFoundError("MODEL %s does not exist" % path) from None
    except OSError as exc:
        raise TffreezeError("MODEL %s cannot be read: %s" % (path, exc.strerror or exc)) from None
    return decide_kind(path, sniff(data), manifest_format, manifest_path)


def decide_kind(path: str, content: str, manifest_format: Optional[str], manifest_path: str) -> Tuple[str, str]:
    """:func:`model_kind` given what the bytes hold (``content``, as :func:`sniff` says)."""
    stem, ext = os.path.splitext(path)
    ext = ext.lower()
    if content == "metagraph" or (ext == ".meta" and content in ("graphdef", "unknown")):
        source = stem if ext == ".meta" else (os.path.dirname(path) or ".")
        raise InvalidArgumentError("%s is a checkpoint's MetaGraphDef (its graph without the variables' values), not "
                                   "a frozen graph: freeze the checkpoint first (`tffreeze freeze %s -o model.pb`) "
                                   "and run the .pb" % (path, source))
    if content == "savedmodel":
        raise InvalidArgumentError("%s is a SavedModel's graph, not a frozen graph: freeze the SavedModel first "
                                   "(`tffreeze freeze %s -o model.pb`) and run the .pb"
                                   % (path, os.path.dirname(path) or "."))
    named = _EXTENSIONS.get(ext)
    if manifest_format is not None:
        kind = _FORMATS.get(manifest_format, "graphdef")
        if content in KINDS and content != kind:
            raise InvalidArgumentError("%s holds %s but --manifest %s describes %s: give the manifest written with it"
                                       % (path, KINDS[content], manifest_path, KINDS[kind]))
    else:
        kind = content if content in KINDS else named or "graphdef"
    if named and named != kind:
        ext_of = {v: k for k, v in _EXTENSIONS.items()}
        return kind, "%s holds %s, not %s as its name says: rename it to %s%s" % (
            path, KINDS[kind], KINDS[named], stem, ext_of[kind])
    return kind, ""


def not_fed(name: str) -> InvalidArgumentError:
    """The error for an input the graph needs and no --input feeds."""
    tensor = _tensor_name(name)
    return InvalidArgumentError("input %s is not fed: give --input %s=FILE.npy" % (tensor, tensor.rsplit(":", 1)[0]))


NOT_NPY = "--input %s=%s is not a .npy file (it lacks NumPy's header): save the array with numpy.save"


def is_npy(path: str) -> bool:
    """Whether ``path`` starts as every .npy file does (NumPy's magic string)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(6) == b"\x93NUMPY"
    except OSError:
        return True  # not readable: the reader says why


def read_npy(name: str, path: str):
    """The array of ``--input NAME=PATH``; a folder, a missing file and an unreadable one are
    named with the flag as typed (as the C# and C++ clients say it)."""
    import numpy as np

    if os.path.isdir(path):
        raise InvalidArgumentError("--input %s=%s is a folder: give an .npy file" % (name, path))
    if not os.path.exists(path):
        raise NotFoundError("--input %s=%s does not exist" % (name, path))
    if not is_npy(path):
        raise InvalidArgumentError(NOT_NPY % (name, path))
    try:
        with open(path, "rb") as fh:  # the header's dtype: an object array (Python strings) is never unpickled
            version = np.lib.format.read_magic(fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                      np.lib.format.read_array_header_2_0)(fh)
        if header[2].hasobject:
            raise InvalidArgumentError("--input %s=%s holds Python objects (np.save of a list of strings gives that), "
                                       "which are not read: save text as a fixed-width array, "
                                       "np.save(path, np.array(words, dtype=str)) or dtype=bytes" % (name, path))
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TffreezeError("cannot read --input %s=%s: %s" % (name, path, exc)) from None


def close_names(wanted: str, names: List[str], shown: int = 3) -> List[str]:
    """The names in ``names`` a misspelt ``wanted`` (a tensor or node name) most likely meant:
    within an edit distance of a third of its length (at least 1), or with the same last
    path component; the nearest first. The C# and C++ runners use the same rule."""
    want = wanted.rsplit(":", 1)[0] if wanted.rsplit(":", 1)[-1].isdigit() and ":" in wanted else wanted

    def distance(a: str, b: str) -> int:
        row = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            prev, row[0] = row[0], i
            for j, cb in enumerate(b, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
        return row[-1]

    limit = max(1, len(want) // 3)
    scored = []
    for name in names:
        d = distance(want, name)
        if d <= limit or name.rsplit("/", 1)[-1] == want.rsplit("/", 1)[-1]:
            scored.append((d, name))
    return [n for _, n in sorted(scored)[:shown]]


def not_in_graph(name: str, names: List[str], placeholders: Optional[List[str]] = None) -> NotFoundError:
    """The error for a tensor the graph lacks, with the names it may have meant; for an input
    with none close, the graph's placeholders (what can be fed)."""
    close = close_names(name, names)
    if close:
        hint = "; did you mean %s?" % ", ".join("'%s'" % n for n in close)
    elif placeholders is not None:
        hint = "; its placeholders: %s" % (", ".join(placeholders) or "none")
    else:
        hint = ""
    return NotFoundError("tensor '%s' is not in the graph%s" % (name, hint))


def dtype_error(label: str, want: str, got: str) -> InvalidArgumentError:
    """The error for an .npy whose dtype is not the input's (no client casts: a cast can lose values)."""
    return InvalidArgumentError("input %s takes %s but the .npy holds %s: save it as %s (numpy: a.astype('%s'))"
                                % (label, want, got, want, want))


def shape_error(label: str, want: List[int], got: List[int]) -> InvalidArgumentError:
    """The error for an .npy whose shape the input does not take."""
    return InvalidArgumentError("input %s takes shape [%s] (-1: any size) but the .npy holds [%s]" % (
        label, ", ".join(str(d) for d in want), ", ".join(str(d) for d in got)))


def _pick(name: str, known: List[str], what: str, model_path: str) -> str:
    """``name`` as the runtime spells it: as given, with ':0', or without it."""
    for candidate in (name, _tensor_name(name), name.split(":")[0] if name.endswith(":0") else name):
        if candidate in known:
            return candidate
    raise NotFoundError("%s is not an %s of %s (%ss: %s)" % (name, what, model_path, what, ", ".join(known) or "none"))


def _run_onnx(model_path: str, feeds: Dict[str, object], fetches: List[str]) -> List[object]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise TffreezeError("running an .onnx model needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.log_severity_level = 0 if verbose() else 3
    try:
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error classes
        raise InvalidArgumentError("onnxruntime cannot load %s: %s" % (model_path, str(exc).splitlines()[0])) from None
    ins = [i.name for i in session.get_inputs()]
    outs = [o.name for o in session.get_outputs()]
    feed = {_pick(k, ins, "input", model_path): v for k, v in feeds.items()}
    try:
        return session.run([_pick(f, outs, "output", model_path) for f in fetches], feed)
    except Exception as exc:  # noqa: BLE001
        raise TffreezeError("running %s failed: %s" % (model_path, " ".join(str(exc).split())[:500])) from None


def _run_tflite(model_path: str, feeds: Dict[str, object], fetches: List[str]) -> List[object]:
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            interp = Interpreter(model_path=model_path)
        except (ValueError, RuntimeError) as exc:
            raise InvalidArgumentError("cannot load %s: %s" % (model_path, exc)) from None
    ins = {d["name"]: d for d in interp.get_input_details()}
    outs = {d["name"]: d for d in interp.get_output_details()}
    import numpy as np

    feed = {_pick(k, list(ins), "input", model_path): np.asarray(v) for k, v in feeds.items()}
    for name, value in feed.items():
        # The converter pins what the graph fixes (shape_signature: -1 where a size is free). A
        # resize to another pinned size would run, and broadcast or cut the batch without a word.
        want = [int(d) for d in ins[name].get("shape_signature", ins[name]["shape"])]
        got = list(value.shape)
        if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
            raise shape_error(name, want, got)
    try:
        for name, value in feed.items():
            if list(ins[name]["shape"]) != list(value.shape):
                interp.resize_tensor_input(ins[name]["index"], list(value.shape), strict=True)
        interp.allocate_tensors()
        for name, value in feed.items():
            want = np.dtype(ins[name]["dtype"])
            if value.dtype != want and value.dtype.kind not in "OSU":
                raise dtype_error(name, str(want), str(value.dtype))
            interp.set_tensor(ins[name]["index"], value)
        interp.invoke()
        return [interp.get_tensor(outs[_pick(f, list(outs), "output", model_path)]["index"]) for f in fetches]
    except (ValueError, RuntimeError) as exc:
        raise TffreezeError("running %s failed: %s" % (model_path, exc)) from None


def _run_graph(model_path: str, feeds: Dict[str, object], fetches: List[str],
               session_config: bytes = b"") -> List[object]:
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

    def lookup(name, fed=False):
        try:
            return graph.get_tensor_by_name(_tensor_name(name))
        except (KeyError, ValueError):
            ops = graph.get_operations()
            raise not_in_graph(name, [op.name for op in ops],
                               [op.name for op in ops if op.type == "Placeholder"] if fed else None) from None

    import numpy as np

    feed_dict = {}
    for name, value in feeds.items():
        tensor = lookup(name, fed=True)
        array = np.asarray(value)
        if tensor.dtype.is_numpy_compatible and tensor.dtype != tf.string and array.dtype.kind not in "OSU" \
                and array.dtype != tensor.dtype.as_numpy_dtype:
            raise dtype_error(name, tensor.dtype.as_numpy_dtype.__name__, str(array.dtype))
        if tensor.shape.rank is not None:
            want = [-1 if d is None else d for d in tensor.shape.as_list()]
            if len(want) != array.ndim or any(d not in (-1, a) for d, a in zip(want, array.shape)):
                raise shape_error(name, want, list(array.shape))
        feed_dict[tensor] = value
    fetch_list = [lookup(f) for f in fetches]
    config = None
    if session_config:  # the manifest's: the setting that keeps the checkpoint's numbers (verify found it)
        try:
            config = tf.compat.v1.ConfigProto.FromString(session_config)
        except Exception as exc:  # DecodeError
            raise InvalidArgumentError("the manifest's session_config is not a ConfigProto (%s)" % exc) from None
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        try:
            return sess.run(fetch_list, feed_dict=feed_dict)
        except tf.errors.OpError as exc:
            unfed = re.search(r"You must feed a value for placeholder tensor '([^']+)'", str(exc))
            if unfed:
                raise not_fed(unfed.group(1)) from None
            raise TffreezeError("running %s failed: %s" % (model_path, tf_errors.describe(exc))) from None
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError("cannot feed %s: %s" % (model_path, exc)) from None


def other_graph_words(manifest_path: str, model_path: str, written: str, actual: str) -> str:
    """The warning every client gives when a manifest was written with another graph."""
    return ("--manifest %s was written with another graph than %s (sha256 %s, the file's is %s): its names, "
            "dtypes and shapes may not be this graph's; give the manifest written with it"
            % (manifest_path, model_path, written[:12], actual[:12]))


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
        known = [t["name"] for t in self.data.get(kind) or []]
        raise NotFoundError("'%s' is not among the manifest's %s (%s)" % (name, kind, ", ".join(known)))

    def other_graph(self, model_path: str) -> str:
        """Why this manifest was written with another graph than ``model_path`` (its sha256
        differs), or "" (the same, or a manifest without one)."""
        import hashlib

        written = self.data.get("sha256") or ""
        if not written:
            return ""
        h = hashlib.sha256()
        with open(model_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() == written:
            return ""
        return other_graph_words(self.path, model_path, written, h.hexdigest())

    def input(self, name: str) -> dict:
        return self._find("inputs", name)

    def output(self, name: str) -> dict:
        return self._find("outputs", name)

    def outputs(self) -> List[str]:
        return [t["name"] for t in self.data.get("outputs") or []]

    def format(self) -> str:
        """The manifest's "format" ("FORMAT_GRAPHDEF", "FORMAT_ONNX", "FORMAT_TFLITE")."""
        return self.data.get("format") or "FORMAT_GRAPHDEF"

    def check_fed(self, fed: List[str]) -> None:
        """Every input without a default is fed (``fed``: tensor names), else the first one not."""
        for t in self.data.get("inputs") or []:
            if not t.get("has_default") and _tensor_name(t["name"]) not in {_tensor_name(f) for f in fed}:
                raise not_fed(t["name"])

    def session_config(self) -> bytes:
        """The serialized ConfigProto to create the session with (verify's finding), or b""."""
        import base64
        import binascii

        try:
            return base64.b64decode(self.data.get("session_config") or "", validate=True)
        except (binascii.Error, TypeError) as exc:
            raise InvalidArgumentError("manifest %s: session_config is not base64 (%s)" % (self.path, exc)) from None

    def runtime_names(self) -> Dict[str, str]:
        """Tensor name -> the name the converted model's runtime uses (ONNX, TFLite)."""
        c = self.data.get("conversion") or {}
        return {t["name"]: t["runtime_name"] for t in (c.get("inputs") or []) + (c.get("outputs") or [])}

    @staticmethod
    def check(info: dict, value, label: str) -> None:
        import numpy as np

        want = info.get("dtype")
        got = str(np.asarray(value).dtype) if not np.asarray(value).dtype.kind in "OSU" else "string"
        if want and got != want:
            raise dtype_error(label, want, got)
        shape = info.get("shape")
        if shape is not None:
            actual = list(np.asarray(value).shape)
            if len(actual) != len(shape) or any(d != -1 and d != a for d, a in zip(shape, actual)):
                raise shape_error(label, shape, actual)


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


def pair_error(flag: str, pair: str) -> str:
    """The usage error of a ``--input`` value that is not NAME=FILE.npy (the other clients say the same)."""
    return "%s '%s': write NAME=FILE.npy (NAME: the tensor it feeds, e.g. %s x=%s)" % (
        flag, pair, flag, pair if "=" not in pair and pair else "x.npy")


def parse_pairs(pairs: List[str], flag: str) -> List[Tuple[str, str]]:
    """``--input`` values as (name, path); a ValueError (a usage error) for one that is not NAME=FILE.npy."""
    out = []
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise ValueError(pair_error(flag, p))
        out.append((name, path))
    return out
