"""PlanFreeze, GetCapabilities and what the server renders for every client: the
manifest's bytes, the inspect report, the plan's warnings merged into an answer.

No gRPC here: the servicer calls these and maps their errors once (``status``).
"""

from __future__ import annotations

import json
from typing import Iterable, List

from tffreeze_api import manifest, options
from tffreeze_api.v1 import freeze_pb2, service_pb2

from . import __version__
from .core import layout
from .core.errors import BY_CODE, InvalidArgument, option_error
from .core.spec import FreezeSpec, ServerLimits, safe_relative_path

MAX_PLAN_WARNINGS = 20
MAX_WARNING_CHARS = 2000
FEATURES = ("assembly_recipe", "early_recipe", "inline_graph", "manifest", "plan")


def _tensorflow_version() -> str:
    from importlib import metadata  # the package's record: TensorFlow itself is not imported here

    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


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
    answer = freeze_pb2.PlanFreezeResponse(folder=chosen.folder, warnings=chosen.warnings,
                                           available_checkpoints=chosen.available)
    for local, path in chosen.files:
        answer.files.add(local_path=local, path=path)
    graph = request.graph_file.strip()
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
    return answer


def _bounded(warnings: Iterable[str]) -> List[str]:
    return [w[:MAX_WARNING_CHARS] for w in list(warnings)[:MAX_PLAN_WARNINGS]]


def with_plan(answer, plan: freeze_pb2.PlanFreezeResponse, inspect: bool = False):
    """A FreezeResult or InspectResponse with the plan's warnings first (each once); for
    an inspection the plan's available checkpoints (the folder's, not just the upload's)."""
    merged = []
    for w in _bounded(plan.warnings) + list(answer.warnings):
        if w not in merged:
            merged.append(w)
    del answer.warnings[:]
    answer.warnings.extend(merged)
    if inspect and plan.available_checkpoints:
        del answer.available_checkpoints[:]
        answer.available_checkpoints.extend(p[:MAX_WARNING_CHARS] for p in
                                            list(plan.available_checkpoints)[:layout.MAX_LIST_FILES])
    return answer


def manifest_bytes(result: freeze_pb2.FreezeResult) -> bytes:
    """The manifest file's exact bytes (every client writes them as they are)."""
    return manifest.to_json(result).encode("ascii")


def _shape(t) -> str:
    return "?" if t["shape"] is None else "[%s]" % ", ".join(str(d) for d in t["shape"])


def inspect_text(info: dict) -> str:
    """The human-readable inspect report (what every client's ``inspect`` prints; the
    command line's flags are the same in every client)."""
    out = []
    ck = info["checkpoint"] or {"prefix": "", "step": None, "meta_graph": ""}
    out.append("source:     %s" % info["source_kind"][len("SOURCE_KIND_"):].lower())
    graph = info.get("graph")
    if info["source_kind"] == "SOURCE_KIND_FROZEN_GRAPH" and graph:
        out.append("graph:      %s, %d bytes, %d nodes, %d parameters" % (
            ck["meta_graph"], graph["size_bytes"], graph["node_count"], graph["parameters"]))
        out.append("ops:        %s" % ", ".join("%s %d" % (o["op"], o["count"]) for o in graph["op_counts"]))
        out.append("tf 1.15:    %s" % ("loads (TensorFlowSharp)" if graph["loads_in_tensorflow_1_15"] else
                                       "does not load as it is: %s" % "; ".join(graph["tensorflow_1_15_issues"][:3])))
    else:
        out.append("checkpoint: %s%s  (graph %s)" % (ck["prefix"], "" if ck["step"] is None else
                                                     " step %d" % ck["step"], ck["meta_graph"] or "none"))
        out.append("available:  %s" % ", ".join(info["available_checkpoints"]))
        out.append("variables (%d):" % len(info["variables"]))
    for v in info["variables"]:
        mapped = "" if v["graph_variable"] in ("", v["checkpoint_key"]) else "  -> %s" % v["graph_variable"]
        out.append("  %-40s %-8s %s%s" % (v["checkpoint_key"], v["dtype"], _shape(v), mapped))
    for kind in ("inputs", "outputs", "candidates"):
        if kind == "candidates":
            if not info[kind]:
                continue
            out.append("candidates (what might be outputs, best first; choose with --outputs):")
        else:
            out.append("%s:" % kind)
        for t in info[kind]:
            out.append("  %-30s %-8s %-12s %s" % (t["name"], t["dtype"], _shape(t), t["reason"]))
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
        out.append("warning: %s" % w)
    return "\n".join(out) + "\n"


def rendered(response: freeze_pb2.InspectResponse) -> freeze_pb2.InspectResponse:
    """The response with its report and JSON filled in (``rendered`` left out of both)."""
    response.ClearField("rendered")
    text = manifest.to_json(response)
    response.rendered.CopyFrom(freeze_pb2.Rendered(text=inspect_text(json.loads(text)), json=text))
    return response
