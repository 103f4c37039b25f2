"""The `tf.train.Saver` directory layout: which checkpoint a freeze uses.

Pure functions over file names (no protobuf, no gRPC, no TensorFlow). :func:`plan`
answers PlanFreeze: from the listing of a user's SOURCE folder, which files every
client uploads; :func:`select` makes the same choice again over whatever a
freeze was sent.

A Saver directory holds, per checkpoint prefix ``P``: ``P.index``, the shards
``P.data-0000i-of-0000N`` and usually ``P.meta``; plus a ``checkpoint`` state
file naming the latest prefix. The state file often holds absolute paths from
the training machine, so it is matched by basename and never followed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

STATE_FILE = "checkpoint"
_DATA_RE = re.compile(r"^(?P<prefix>.+)\.data-(?P<i>\d{5})-of-(?P<n>\d{5})$")
_STEP_RE = re.compile(r"-(\d+)$")
_STATE_RE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"((?:[^"\\]|\\.)*)"')


_NOT_FOUND = "ERROR_REASON_CHECKPOINT_NOT_FOUND"
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def keras_file_error(name: str) -> "SelectionError":
    return SelectionError(
        "FAILED_PRECONDITION", "ERROR_REASON_GRAPHLESS_FORMAT",
        "%s is a Keras model/weights file, not a TensorFlow graph checkpoint. Export a SavedModel instead "
        "(model.export(DIR) in Keras 3, tf.saved_model.save(model, DIR)) and freeze that directory." % name)


def listed(names, shown: int = 5) -> str:
    """Names for a message: the first few, then how many more ("a, b ... and 99993 more")."""
    names = list(names)
    text = ", ".join(names[:shown])
    return text + (" ... and %d more" % (len(names) - shown) if len(names) > shown else "")


class SelectionError(ValueError):
    """The upload does not hold a usable checkpoint. ``code`` is a gRPC status
    name, ``reason`` an ErrorReason name (errors.proto)."""

    def __init__(self, code: str, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass
class Checkpoint:
    """One checkpoint prefix found among the files."""

    prefix: str
    index: str
    data: List[str] = field(default_factory=list)
    meta: Optional[str] = None

    @property
    def step(self) -> Optional[int]:
        return step_of(self.prefix)

    def files(self) -> List[str]:
        return [self.index] + self.data + ([self.meta] if self.meta else [])


@dataclass
class Selection:
    checkpoint: Checkpoint
    reason: str
    available: List[str]
    warnings: List[str] = field(default_factory=list)


def step_of(prefix: str) -> Optional[int]:
    """The global step a Saver appended to a prefix ("model.ckpt-100" -> 100)."""
    m = _STEP_RE.search(posixpath.basename(prefix))
    return int(m.group(1)) if m else None


_ESCAPE = re.compile(rb"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", re.S)


def _escaped(m) -> bytes:
    code = m.group(1)
    if code[:1].isdigit():
        return bytes([int(code, 8) & 0xFF])
    if code[:1] == b"x" and len(code) > 1:
        return bytes([int(code[1:], 16)])
    if code in (b"\\", b'"', b"'"):
        return code
    return b"\\" + code  # not an escape TensorFlow writes in a path: a hand-written Windows path's separator


def _unescape(text: str) -> str:
    """A text-proto string's value: escaped backslashes and quotes, and the octal/hex bytes TensorFlow
    writes for non-ASCII names, decoded; a backslash before anything else (a hand-written Windows
    path) stays a backslash. Never raises: a state file is user input."""
    return _ESCAPE.sub(_escaped, text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")


def parse_state(text: str) -> Tuple[Optional[str], List[str]]:
    """Parse a ``checkpoint`` state file: (latest path, all paths), as written."""
    latest, every = None, []
    for line in text.splitlines():
        m = _STATE_RE.match(line)
        if not m:
            continue
        value = _unescape(m.group(2))
        if m.group(1) == "model_checkpoint_path":
            latest = value
        else:
            every.append(value)
    return latest, every


def _basename(path: str) -> str:
    # State files written on Windows use backslashes.
    return posixpath.basename(path.replace("\\", "/"))


def find_checkpoints(paths: Iterable[str]) -> Dict[str, Checkpoint]:
    """Group relative file paths into checkpoints keyed by prefix."""
    paths = sorted(set(paths))
    found = {p[: -len(".index")]: Checkpoint(p[: -len(".index")], p) for p in paths if p.endswith(".index")}
    for p in paths:
        m = _DATA_RE.match(p)
        if m and m.group("prefix") in found:
            found[m.group("prefix")].data.append(p)
        elif p.endswith(".meta") and p[: -len(".meta")] in found:
            found[p[: -len(".meta")]].meta = p
    return found


def _order_key(ckpt: Checkpoint):
    step = ckpt.step
    return (step is not None, step if step is not None else 0, ckpt.prefix)


def missing_shards(ckpt: Checkpoint) -> List[str]:
    """Names of data shards the checkpoint needs but the files lack."""
    if not ckpt.data:
        return [ckpt.prefix + ".data-00000-of-00001"]
    counts = {int(_DATA_RE.match(d).group("n")) for d in ckpt.data}
    total = max(counts)
    have = {int(_DATA_RE.match(d).group("i")) for d in ckpt.data}
    return ["%s.data-%05d-of-%05d" % (ckpt.prefix, i, total) for i in range(total) if i not in have]


def checkpoint_dirs(paths: Iterable[str]) -> List[str]:
    """Folders (relative, '/'-separated, "" for the top) that hold a Saver checkpoint
    (a PREFIX.index) or a SavedModel (saved_model.pb[txt]), sorted."""
    found = set()
    for p in paths:
        folder, _, name = p.rpartition("/")
        if name.endswith(".index") or name in SAVED_MODEL_FILES:
            found.add(folder)
    return sorted(found)


def nested_source(paths: Iterable[str]) -> Tuple[Optional[str], List[str]]:
    """For a SOURCE folder holding no checkpoint itself: (the only folder below it that
    holds one, or None; every such folder). Users who saved with
    ``saver.save(sess, "models/model_name")`` often point at the project folder."""
    dirs = [d for d in checkpoint_dirs(paths) if d]
    # A SavedModel's own variables/ folder is part of it, not a checkpoint of its own.
    dirs = [d for d in dirs if not any(d == o + "/variables" for o in dirs)]
    return (dirs[0] if len(dirs) == 1 else None), dirs


def select(paths: Iterable[str], state_text: Optional[str] = None, step: Optional[int] = None,
           prefix: Optional[str] = None, where: str = "the upload") -> Selection:
    """Choose the checkpoint to freeze.

    Precedence: an explicit ``prefix``; else the checkpoint at global ``step``;
    else the latest named by the state file (matched by basename); else the
    highest step, then the last name. Raises SelectionError naming the problem
    and the fix.
    """
    paths = list(paths)
    found = find_checkpoints(paths)
    ordered = sorted(found.values(), key=_order_key)
    available = [c.prefix for c in ordered]
    warnings: List[str] = []
    if not found:
        keras = [p for p in paths if p.endswith(KERAS_SUFFIXES)]
        if keras:
            raise keras_file_error(keras[0])
        metas = [p for p in paths if p.endswith(".meta")]
        hint = (" Found %s but no .index file: upload the whole Saver output "
                "(PREFIX.index, PREFIX.data-*, PREFIX.meta)." % ", ".join(metas[:3])) if metas else (
            " Expected files written by tf.train.Saver: PREFIX.index, PREFIX.data-00000-of-00001 and PREFIX.meta.")
        raise SelectionError("NOT_FOUND", _NOT_FOUND, "no checkpoint found in %s (%d files)." % (where, len(paths)) + hint)

    if prefix:
        want = prefix.strip("/")
        chosen = found.get(want) or next((c for c in ordered if _basename(c.prefix) == _basename(want)), None)
        if chosen is None:
            raise SelectionError("NOT_FOUND", _NOT_FOUND, "checkpoint prefix %r is not in %s; available: %s"
                                 % (prefix, where, listed(available, 20)))
        reason = "prefix given explicitly"
    elif step is not None:
        matches = [c for c in ordered if c.step == step]
        if not matches:
            steps = [str(c.step) for c in ordered if c.step is not None]
            shown = listed(steps, 20)
            if len(steps) > 20:  # the ones beside the step asked for, and the latest
                numbers = sorted({c.step for c in ordered if c.step is not None})
                below = [n for n in numbers if n < step][-1:]
                above = [n for n in numbers if n > step][:1]
                shown += " (nearest to %d: %s; the latest: %s)" % (step, ", ".join(str(n) for n in below + above),
                                                                   steps[-1])
            raise SelectionError("NOT_FOUND", _NOT_FOUND, "no checkpoint at global step %d; steps available: %s"
                                 % (step, shown + "; a step is the -N saver.save(global_step=...) put after the "
                                    "prefix, not the value of a variable saved inside" if steps else
                                    "none: the checkpoints are not saved by step (no "
                                    "-STEP after their prefix; a step a freeze reports is the global_step saved "
                                    "inside). Leave options.step out, or give the checkpoint itself"))
        chosen = matches[-1]
        reason = "global step %d requested" % step
        if len(matches) > 1:  # two checkpoints of that step (two models in one folder): the state file decides
            latest, every = parse_state(state_text) if state_text is not None else (None, [])
            named = {_basename(p) for p in [latest] + every if p}
            listed_here = [c for c in matches if _basename(c.prefix) in named]
            if len(listed_here) != 1:
                raise SelectionError("INVALID_ARGUMENT", "ERROR_REASON_INVALID_OPTION",
                                     "%d checkpoints are at global step %d (%s)%s: give the one to freeze by "
                                     "its prefix, as %s" % (
                                         len(matches), step, listed([c.prefix for c in matches], 10),
                                         "" if not listed_here else ", and the checkpoint state file names more than "
                                         "one of them", " or ".join("SOURCE/%s" % _basename(c.prefix)
                                                                    for c in matches[:3])))
            chosen = listed_here[0]
            warnings.append("%d checkpoints are at global step %d; froze %s, the one the checkpoint state file names "
                            "(the other%s: %s). Give a checkpoint's prefix as SOURCE to choose" % (
                                len(matches), step, chosen.prefix, "s" if len(matches) > 2 else "",
                                listed([c.prefix for c in matches if c is not chosen], 10)))
    else:
        chosen, reason = None, ""
        if state_text is not None:
            latest, _ = parse_state(state_text)
            if latest:
                name = _basename(latest)
                chosen = next((c for c in reversed(ordered) if _basename(c.prefix) == name), None)
                if chosen is not None:
                    reason = "latest in the checkpoint state file (%s)" % latest
                else:
                    # its other files present without its .index: a copy cut short, not an older save to fall back on
                    folder = posixpath.dirname(ordered[-1].prefix)
                    stem = posixpath.join(folder, name) if folder else name
                    rest = sorted(p for p in paths if p.startswith(stem + ".") and not p.endswith(".index"))
                    if rest:
                        whole = [c for c in ordered if c.step is not None and not missing_shards(c)]
                        other = (" Or freeze a complete one: options.step %d" % whole[-1].step) if whole else ""
                        raise SelectionError("NOT_FOUND", _NOT_FOUND, "checkpoint %r, the latest in the checkpoint "
                                             "state file, has no %s.index (its %s %s there): put the .index the "
                                             "Saver wrote beside its data files.%s" % (
                                                 stem, stem, listed(rest, 3), "is" if len(rest) == 1 else "are",
                                                 other))
                    warnings.append("the checkpoint state file names %r, which is not in SOURCE; "
                                    "using the checkpoint present with the highest step instead, %s"
                                    % (latest, ordered[-1].prefix))
        if chosen is None:
            chosen = ordered[-1]
            reason = "highest step in the upload (with no checkpoint state file, the files' dates are not known)"
            families = sorted({re.sub(r"-\d+$", "", c.prefix) for c in ordered
                               if posixpath.dirname(c.prefix) == posixpath.dirname(chosen.prefix)})
            if len(families) > 1:  # two runs (or two models) saved in one folder: say which was taken
                warnings.append("the folder holds checkpoints of %d prefixes (%s); %s is used, the one with the "
                                "highest step (which need not be the newest): give the checkpoint itself (its "
                                "prefix) to choose another"
                                % (len(families), listed([posixpath.basename(f) for f in families]),
                                   posixpath.basename(chosen.prefix)))

    missing = missing_shards(chosen)
    if missing:
        whole = [c for c in ordered if c is not chosen and c.step is not None and not missing_shards(c)]
        other = (" Or freeze a complete one: options.step %d" % whole[-1].step) if whole and step is None else ""
        raise SelectionError("NOT_FOUND", "ERROR_REASON_SHARD_MISSING", "checkpoint %r is missing data shard(s): %s. "
                             "Put every %s.data-*-of-* file the Saver wrote beside its .index.%s"
                             % (chosen.prefix, listed(missing), chosen.prefix, other))
    if chosen.meta is None:
        # Savers called with write_meta_graph=False after the first save leave
        # older .meta files whose graph is the same.
        older = [c for c in ordered if c.meta and _order_key(c) <= _order_key(chosen)]
        anymeta = older[-1] if older else next((c for c in ordered if c.meta), None)
        if anymeta is not None:
            chosen = Checkpoint(chosen.prefix, chosen.index, chosen.data, anymeta.meta)
            warnings.append("no %s.meta; using the graph of %s" % (chosen.prefix, anymeta.meta))
        else:
            # A meta graph exported once under the run's own prefix (export_meta_graph, then
            # saves with write_meta_graph=False): the folder's only one is the graph, whatever its name.
            folder = posixpath.dirname(chosen.prefix)
            metas = [p for p in paths if p.endswith(".meta") and posixpath.dirname(p) == folder]
            if len(metas) == 1:
                chosen = Checkpoint(chosen.prefix, chosen.index, chosen.data, metas[0])
                family = re.sub(r"-\d+$", "", chosen.prefix)
                if re.sub(r"-\d+$", "", metas[0][:-len(".meta")]) == family:  # an earlier step's (only it was sent)
                    warnings.append("no %s.meta; using the graph of %s" % (chosen.prefix, metas[0]))
                else:
                    warnings.append("no %s.meta; using %s, the only meta graph in the folder (saved under a prefix "
                                    "of its own)" % (chosen.prefix, metas[0]))
    return Selection(chosen, reason, available, warnings)


# --- PlanFreeze: which files of SOURCE to upload --------------------------------------

MAX_LIST_DEPTH = 6  # folders below SOURCE a listing covers (a nested SavedModel's variables/ and assets/)
MAX_LIST_FILES = 10000
MAX_STATE_TEXT = 64 << 10
NESTED_DEPTH = 3  # a checkpoint folder at most this deep below SOURCE is found
GRAPH_DIR = ".tffreeze-graph"  # where the graph option's file is uploaded
_GRAPH_SUFFIXES = (".pb", ".pbtxt")


@dataclass
class Plan:
    """What to upload: (path relative to SOURCE, path to send) pairs; the checkpoint prefix
    chosen (relative to ``folder``, "" for a SavedModel); what to tell the user."""

    folder: str
    files: List[Tuple[str, str]]
    prefix: str
    warnings: List[str] = field(default_factory=list)
    available: List[str] = field(default_factory=list)
    graph: str = ""  # SOURCE is one graph file, sent as this path (a frozen graph for inspect)


def _in_folder(paths: Iterable[str], folder: str) -> List[str]:
    """The paths below ``folder`` ("" = all), relative to it."""
    if not folder:
        return list(paths)
    head = folder + "/"
    return [p[len(head):] for p in paths if p.startswith(head)]


def _top(paths: Iterable[str]) -> List[str]:
    return [p for p in paths if "/" not in p]


def _saver(names: List[str], state: Optional[str], step: Optional[int], prefix: Optional[str],
           folder: str) -> Plan:
    where = "SOURCE" if not folder else "%s/" % folder
    sel = select(names, state, step, prefix, where=where)
    files = sel.checkpoint.files()
    local = [(folder + "/" + f if folder else f, f) for f in files]
    return Plan(folder, local, sel.checkpoint.prefix, sel.warnings, sel.available)


def plan(listing: Iterable[str], state_files: Dict[str, str], step: Optional[int] = None,
         prefix: str = "") -> Plan:
    """Choose the files of SOURCE to upload, from its listing (paths relative to SOURCE)
    and the text of its ``checkpoint`` state files. ``prefix``: SOURCE named a checkpoint
    prefix (its basename; the listing is its folder's). Rules: a SavedModel folder is
    uploaded whole; a Saver folder's checkpoint is chosen by :func:`select`; a folder
    holding neither, with exactly one folder at most NESTED_DEPTH below it that does,
    uses that one (with a warning). Raises SelectionError naming the problem."""
    paths = sorted(set(listing))
    if prefix:
        for part in (".index", ".meta"):  # the user named one of the checkpoint's files
            if prefix.endswith(part) and prefix[: -len(part)] + ".index" in paths:
                prefix = prefix[: -len(part)]
        data = _DATA_RE.match(prefix)
        if data and data.group("prefix") + ".index" in paths:
            prefix = data.group("prefix")
        if prefix.endswith(KERAS_SUFFIXES):
            raise keras_file_error(prefix)
        names = _top(paths)
        if prefix in SAVED_MODEL_FILES and prefix in names:
            raise SelectionError("INVALID_ARGUMENT", "ERROR_REASON_INVALID_PATH",
                                 "SOURCE is the graph file of a SavedModel, which is frozen with its variables/ "
                                 "folder: pass its folder as SOURCE")
        if prefix + ".index" not in names and prefix.endswith(_GRAPH_SUFFIXES) and prefix in names:
            # one graph file: the server reads it (inspect summarises a frozen graph; a freeze says
            # what to do with it)
            return Plan("", [(prefix, GRAPH_DIR + "/" + prefix)], "", graph=GRAPH_DIR + "/" + prefix)
        if prefix + ".index" not in names and not any(_basename(c) == prefix for c in find_checkpoints(names)):
            raise SelectionError("NOT_FOUND", _NOT_FOUND, "SOURCE is neither a checkpoint folder nor a checkpoint "
                                 "prefix: there is no %s.index beside it" % prefix)
        named = _STEP_RE.search(prefix)
        if step is not None and (not named or int(named.group(1)) != step):
            # one checkpoint was named twice, differently: neither is guessed
            raise SelectionError("INVALID_ARGUMENT", "ERROR_REASON_INVALID_OPTION",
                                 "SOURCE is the checkpoint %s, not the one of options.step %d: give its folder with "
                                 "options.step %d, or the checkpoint alone" % (
                                     "of step %s" % named.group(1) if named else "%s (no step)" % prefix, step, step))
        return _saver(names, state_files.get(STATE_FILE), step, prefix, "")
    if any(p in SAVED_MODEL_FILES for p in paths):
        return Plan("", [(p, p) for p in paths], "")
    top = _top(paths)
    if checkpoint_dirs(top):
        return _saver(top, state_files.get(STATE_FILE), step, None, "")
    only, dirs = nested_source(p for p in paths if p.count("/") <= NESTED_DEPTH)
    if only is not None:
        inner = _in_folder(paths, only)
        if any(p in SAVED_MODEL_FILES for p in inner):
            found = Plan(only, [(only + "/" + p, p) for p in inner], "")
        else:
            found = _saver(_top(inner), state_files.get(only + "/" + STATE_FILE), step, None, only)
        found.warnings.insert(0, "SOURCE holds no checkpoint itself; using %s/, the only folder below it that does"
                              % only)
        return found
    if dirs:
        raise SelectionError("NOT_FOUND", _NOT_FOUND, "SOURCE holds no checkpoint itself, but %d folders below it do: "
                             "%s. Pass one of them as SOURCE." % (len(dirs), listed([d + "/" for d in dirs], 10)))
    return _saver(top, None, step, None, "")  # raises: what is missing, and what a checkpoint looks like
