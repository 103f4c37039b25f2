"""PlanFreeze, GetCapabilities and what the server renders for every client: the
manifest's bytes, the inspect report, the plan's warnings merged into an answer.

No gRPC here: the servicer calls these and maps their errors once (``status``).
"""

from __future__ import annotations

import json
import re
from typing import Dict, Iterable, List, Optional

from tffreeze_api import manifest, options
from tffreeze_api.v1 import freeze_pb2, service_pb2

from . import __version__
from .core import layout
from .core.errors import BY_CODE, InvalidArgument, ResourceExhausted, option_error
from .core.spec import FreezeSpec, ServerLimits, safe_relative_path
from .settings import MAX_MESSAGE_BYTES

MAX_PLAN_WARNINGS = 20  # of a plan the client sends back with a freeze or inspect
MAX_WARNING_CHARS = 2000
# Answers are bounded like requests. Lists that grow with the request (checkpoints of a
# listing or of a client's plan, warnings) keep at most these many entries and end in
# "... and N more"; the graph's own lists (variables, candidates...) are cut the same way
# only when the answer would not fit ANSWER_BUDGET, gRPC's send limit less room for framing.
# An answer that cannot be cut to fit is RESOURCE_EXHAUSTED with its ErrorInfo.
MAX_LISTED_CHECKPOINTS = 100
MAX_ANSWER_WARNINGS = 50
ANSWER_BUDGET = MAX_MESSAGE_BYTES - (64 << 10)
_FIT_CAPS = (10000, 1000, 100, 10, 0)  # entries kept per list, tried in turn until the answer fits
_MORE = re.compile(r"\.\.\. and (\d{1,12}) more")
FEATURES = ("assembly_recipe", "early_recipe", "inline_graph", "manifest", "plan")


def _tensorflow_version() -> str:
    from importlib import metadata  # the package's record: TensorFlow itself is not imported here

    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def capped(items: Iterable[str], limit: int, chars: int = MAX_WARNING_CHARS, ends: bool = False) -> List[str]:
    """At most ``limit`` of ``items`` (each cut to ``chars``) and "... and N more" for the rest,
    counting the N of a marker already among them (a list the server capped before, sent back).
    ``ends``: keep the first and last halves, the marker between (an oldest-to-newest list)."""
    kept, more = [], 0
    for item in items:
        m = _MORE.fullmatch(item)
        if m:
            more += int(m.group(1))
        else:
            kept.append(item[:chars])
    if len(kept) > limit:
        more += len(kept) - limit
        kept = kept[:limit - limit // 2] + kept[len(kept) - limit // 2:] if ends else kept[:limit]
    if more:
        marker = "... and %d more" % more
        kept.insert(limit - limit // 2 if ends else len(kept), marker)
    return kept


def named(items: Iterable[str], chars: int = 600, most: int = 10) -> str:
    """Names for a message: as many of ``items`` as fit ``chars`` (at most ``most``), then
    "... and N more", so the count survives the message cap (``cap_message``)."""
    items = list(items)
    shown, used = [], 0
    for item in items[:most]:
        if shown and used + len(item) > chars:
            break
        shown.append(item[:chars])
        used += len(shown[-1]) + 2
    return ", ".join(shown) + (" ... and %d more" % (len(items) - len(shown)) if len(items) > len(shown) else "")


def _answer_too_large(what: str, size: int, reason: str = "ERROR_REASON_GRAPH_TOO_LARGE", **metadata):
    return ResourceExhausted("%s would be %d bytes, more than the %d bytes one gRPC answer may carry, even with its "
                             "lists cut short" % (what, size, ANSWER_BUDGET), reason, limit=ANSWER_BUDGET,
                             answer_bytes=size, **metadata)


def _repeated(message, path: str):
    """The repeated field at ``path`` ("graph.op_counts"), or None when a message on the way is unset."""
    *parents, name = path.split(".")
    for p in parents:
        if not message.HasField(p):
            return None
        message = getattr(message, p)
    return getattr(message, name)


def _cut_lists(message, paths, cap: int, cut: Dict[str, int]) -> None:
    """Each repeated field at ``paths`` to at most ``cap`` entries; strings end in "... and N
    more", messages are counted in ``cut`` (path -> how many were left out in all)."""
    for path in paths:
        field = _repeated(message, path)
        if field is None:
            continue
        if len(field) and isinstance(field[0], str):
            if len(field) > cap:
                kept = capped(list(field), cap)
                del field[:]
                field.extend(kept)
        elif len(field) > cap:
            cut[path] = cut.get(path, 0) + len(field) - cap
            del field[cap:]


def capabilities(max_inline_graph: int, chunk: int) -> service_pb2.GetCapabilitiesResponse:
    return service_pb2.GetCapabilitiesResponse(
        server_version=__version__, tensorflow_version=_tensorflow_version(), features=FEATURES,
        max_inline_graph_bytes=max_inline_graph, chunk_bytes=chunk, max_list_depth=layout.MAX_LIST_DEPTH,
        max_list_files=layout.MAX_LIST_FILES)


def _typed_options(text: freeze_pb2.OptionText) -> freeze_pb2.FreezeOptions:
    try:
        return options.from_text(text)
    except options.OptionError as exc:
        raise option_error(exc.field, exc.message) from None


def plan_freeze(request: freeze_pb2.PlanFreezeRequest, limits: ServerLimits) -> freeze_pb2.PlanFreezeResponse:
    """The files of SOURCE to upload and the options to freeze them with (see layout.plan);
    every option is checked here, before the client hashes or uploads anything."""
    typed = _typed_options(request.options)
    if len(request.files) > layout.MAX_LIST_FILES:
        raise InvalidArgument("the listing holds %d files; at most %d (list SOURCE at most %d folders down)"
                              % (len(request.files), layout.MAX_LIST_FILES, layout.MAX_LIST_DEPTH),
                              "ERROR_REASON_INVALID_PATH")
    listing = []
    for f in request.files:
        if not safe_relative_path(f.path):
            raise InvalidArgument("listed path %r is not a safe relative path ('/'-separated, inside SOURCE)"
                                  % f.path[:200], "ERROR_REASON_INVALID_PATH", path=f.path[:200])
        listing.append(f.path)
    for path, text in request.state_files.items():
        if len(text.encode("utf-8", "surrogatepass")) > layout.MAX_STATE_TEXT:
            raise InvalidArgument("state file %r is larger than %d bytes; a Saver's `checkpoint` file is a few "
                                  "lines" % (path[:200], layout.MAX_STATE_TEXT), "ERROR_REASON_INVALID_PATH",
                                  path=path[:200])
    prefix = request.prefix.strip()
    if prefix and ("/" in prefix or not safe_relative_path(prefix)):
        raise InvalidArgument("prefix %r is not a file name" % prefix[:200], "ERROR_REASON_INVALID_PATH")
    try:
        chosen = layout.plan(listing, dict(request.state_files), typed.step if typed.HasField("step") else None,
                             prefix)
    except layout.SelectionError as exc:
        raise BY_CODE.get(exc.code, InvalidArgument)(str(exc), exc.reason) from None
    typed.checkpoint_prefix = chosen.prefix
    graph = request.graph_file.strip()
    warnings = chosen.warnings
    if graph:  # (the graph file given is the graph: no word of the .meta another step would have lent)
        warnings = [w for w in warnings if not w.startswith("no %s.meta; " % chosen.prefix)]
    answer = freeze_pb2.PlanFreezeResponse(folder=chosen.folder, warnings=capped(warnings, MAX_PLAN_WARNINGS),
                                           available_checkpoints=capped(chosen.available, MAX_LISTED_CHECKPOINTS,
                                                                        ends=True))
    for local, path in chosen.files:
        answer.files.add(local_path=local, path=path)
    if chosen.graph:
        if graph:
            raise option_error("graph_path", "SOURCE is a graph file itself; the graph option names the graph of a "
                                             "checkpoint saved without .meta")
        typed.graph_path = chosen.graph
    if graph:
        path = "%s/%s" % (layout.GRAPH_DIR, graph)
        if "/" in graph or not safe_relative_path(path):
            raise option_error("graph_path", "%r is not a file name" % graph[:200])
        answer.files.add(local_path="", path=path)
        typed.graph_path = path
    FreezeSpec.from_options(typed, limits)  # every remaining option error now, not after the upload
    answer.options.CopyFrom(typed)
    size = answer.ByteSize()
    if size > ANSWER_BUDGET:  # every file is needed: refused, not cut (each path is sent twice)
        raise InvalidArgument("the plan for this listing names %d files in %d bytes, more than the %d bytes one "
                              "answer may carry; upload a folder with fewer files or shorter paths"
                              % (len(answer.files), size, ANSWER_BUDGET), "ERROR_REASON_INVALID_PATH",
                              limit=ANSWER_BUDGET, answer_bytes=size, files=len(answer.files))
    return answer


def with_plan(answer, plan: freeze_pb2.PlanFreezeResponse, inspect: bool = False):
    """A FreezeResult or InspectResponse with the plan's warnings first (each once; at most
    MAX_ANSWER_WARNINGS in all); for an inspection the plan's available checkpoints (the
    folder's, not just the upload's), at most MAX_LISTED_CHECKPOINTS of them."""
    merged, seen = [], set()
    for w in capped(plan.warnings, MAX_PLAN_WARNINGS) + list(answer.warnings):
        if w not in seen:
            seen.add(w)
            merged.append(w)
    del answer.warnings[:]
    answer.warnings.extend(capped(merged, MAX_ANSWER_WARNINGS))
    if not inspect and answer.notes:  # what the options did: as bounded as the warnings
        notes = capped(answer.notes, MAX_ANSWER_WARNINGS)
        del answer.notes[:]
        answer.notes.extend(notes)
    if inspect:
        listed = plan.available_checkpoints or list(answer.available_checkpoints)
        del answer.available_checkpoints[:]
        answer.available_checkpoints.extend(capped(listed, MAX_LISTED_CHECKPOINTS, ends=True))
    return answer


def manifest_bytes(result: freeze_pb2.FreezeResult) -> bytes:
    """The manifest file's exact bytes (every client writes them as they are)."""
    return manifest.to_json(result).encode("ascii")


# What a freeze result may cut to fit: what it tells, never what describes the graph
# (inputs, outputs, bindings, signature, verification, conversion names).
_RESULT_LISTS = ("warnings", "notes", "ema_variables", "tensorflowsharp_issues", "tensorflow_2_3_issues",
                 "conversion.checked_shapes")


def bounded_result(result: freeze_pb2.FreezeResult) -> bytes:
    """The manifest's bytes for ``result``, both within ANSWER_BUDGET: its informational lists
    cut (ending in "... and N more") while either would not fit; RESOURCE_EXHAUSTED when the
    graph's description itself does not."""
    for cap in _FIT_CAPS:
        text = manifest_bytes(result)
        size = max(len(text), result.ByteSize()) + 16  # + the FreezeResponse's own framing
        if size <= ANSWER_BUDGET:
            return text
        _cut_lists(result, _RESULT_LISTS, cap, {})
    raise _answer_too_large("the freeze result (%d inputs, %d outputs) with its manifest"
                            % (len(result.inputs), len(result.outputs)), size)


def _shape(t) -> str:
    return "?" if t["shape"] is None else "[%s]" % ", ".join(str(d) for d in t["shape"])


def _in_flags(text: str) -> str:
    """A request field a warning or reason names (``options.outputs``), as every client's flag."""
    def flag(m):
        shown = options.FLAGS.get(m.group(0))
        return m.group(0) if not shown else ("the source" if shown == "SOURCE" else shown)
    return re.sub(r"\bSOURCE\b", "the source", re.sub(r"\boptions\.[a-z_]+", flag, text))


def inspect_text(info: dict, cut: Optional[Dict[str, int]] = None) -> str:
    """The human-readable inspect report (what every client's ``inspect`` prints; the
    command line's flags are the same in every client). ``cut``: how many entries of each
    list the answer left out (``rendered``), said where the list ends."""
    cut = cut or {}

    def more(key: str) -> None:
        if cut.get(key):
            out.append("  ... and %d more" % cut[key])

    out = []
    ck = info["checkpoint"] or {"prefix": "", "step": None, "meta_graph": ""}
    out.append("source:     %s" % info["source_kind"][len("SOURCE_KIND_"):].lower())
    graph = info.get("graph")
    if info["source_kind"] == "SOURCE_KIND_FROZEN_GRAPH" and graph:
        out.append("graph:      %s, %d bytes, %d nodes, %d parameters" % (
            ck["meta_graph"], graph["size_bytes"], graph["node_count"], graph["parameters"]))
        out.append("ops:        %s" % ", ".join(["%s %d" % (o["op"], o["count"]) for o in graph["op_counts"]] +
                                                (["... and %d more" % cut["graph.op_counts"]]
                                                 if cut.get("graph.op_counts") else [])))
        out.append("tf 1.15:    %s" % ("loads (TensorFlowSharp)" if graph["loads_in_tensorflow_1_15"] else
                                       "does not load as it is: %s" % "; ".join(graph["tensorflow_1_15_issues"][:3])))
    else:
        out.append("checkpoint: %s%s  (graph %s)" % (ck["prefix"], "" if ck["step"] is None else
                                                     " step %d" % ck["step"], ck["meta_graph"] or "none"))
        if info["available_checkpoints"]:  # (a SavedModel has one set of variables, no steps)
            out.append("available:  %s" % ", ".join(info["available_checkpoints"]))
        out.append("variables (%d):" % (len(info["variables"]) + cut.get("variables", 0)))
    for v in info["variables"]:
        mapped = "" if v["graph_variable"] in ("", v["checkpoint_key"]) else "  -> %s" % v["graph_variable"]
        out.append("  %-40s %-8s %s%s" % (v["checkpoint_key"], v["dtype"], _shape(v), mapped))
    more("variables")
    for kind in ("inputs", "outputs", "candidates"):
        if kind == "candidates":
            if not info[kind] and not cut.get(kind):
                continue
            out.append("candidates (what might be outputs, best first; choose with --outputs):")
        else:
            out.append("%s:" % kind)
        for t in info[kind]:
            out.append("  %-30s %-8s %-12s %s" % (t["name"], t["dtype"], _shape(t), _in_flags(t["reason"])))
        more(kind)
    for b in info.get("bindings") or []:  # as freeze prints them
        out.append("bound:      %s = %s (%s)" % (b["name"], json.dumps(b["value"]), b["reason"]))
    bound = {b["name"] for b in info.get("bindings") or []}
    for sw in info["switches"]:
        if sw["name"] not in bound:
            out.append("switch:     %s %s, not bound by these options (bind it with --bind %s=VALUE)"
                       % (sw["name"], sw["dtype"], sw["name"].split(":")[0]))
    if info["ema_shadows"]:
        out.append("ema shadows (--ema): %s" % ", ".join(info["ema_shadows"]))
    if info["signatures"]:
        out.append("signatures: %s" % ", ".join(info["signatures"]))
    for sig in info.get("signature_defs") or []:
        out.append("signature %s:" % sig["name"])
        for side in ("inputs", "outputs"):
            for alias, t in sorted((sig[side] or {}).items()):
                out.append("  %-6s %-22s %-30s %-8s %s" % (side[:-1], alias, t["name"], t["dtype"], _shape(t)))
    if info.get("tag_sets"):
        out.append("tag sets:   %s" % "; ".join(",".join(t["tags"]) or "(none)" for t in info["tag_sets"]))
    if info["collections"]:
        out.append("collections: %s" % ", ".join(info["collections"]))
    for w in info["warnings"]:
        out.append("warning: %s" % _in_flags(w))
    return "\n".join(out) + "\n"


# What an inspection may cut to fit, as the graph's lists grow (its warnings and checkpoints
# are capped already, by ``with_plan``).
_INSPECT_LISTS = ("variables", "candidates", "evidence", "inputs", "outputs", "switches", "signature_defs", "tag_sets",
                  "bindings", "signatures", "collections", "ema_shadows", "graph.op_counts",
                  "graph.tensorflow_1_15_issues", "available_checkpoints", "warnings")


def rendered(response: freeze_pb2.InspectResponse) -> freeze_pb2.InspectResponse:
    """The response with its report and JSON filled in (``rendered`` left out of both), within
    ANSWER_BUDGET: while it would not fit, the graph's lists are cut (strings end in "... and N
    more"; for lists of entries a warning and the report say how many were left out)."""
    cut: Dict[str, int] = {}
    notes = 0
    for cap in _FIT_CAPS:
        response.ClearField("rendered")
        text = manifest.to_json(response)
        response.rendered.CopyFrom(freeze_pb2.Rendered(text=inspect_text(json.loads(text), cut), json=text))
        size = response.ByteSize()
        if size <= ANSWER_BUDGET:
            return response
        del response.warnings[len(response.warnings) - notes:]
        _cut_lists(response, _INSPECT_LISTS, cap, cut)
        notes = len(cut)
        response.warnings.extend("%s: the answer lists %d ... and %d more (the answer is bounded at %d bytes)"
                                 % (path, len(_repeated(response, path)), n, ANSWER_BUDGET)
                                 for path, n in sorted(cut.items()))
    raise _answer_too_large("the inspection", size)
