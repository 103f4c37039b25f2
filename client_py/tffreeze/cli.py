"""The ``tffreeze`` command.

Exit codes: 0 success; 1 freeze, server or input error (one line on stderr
naming the problem and the fix); 2 usage error. ``freeze`` and ``inspect``
never import TensorFlow; ``run`` does; ``serve`` hands its arguments to the
tffreeze-server package's own command line. Option values are passed to
``tffreeze_api.options`` as the user wrote them; this module parses none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from tffreeze_api.options import FLAGS

from . import __version__
from .errors import TffreezeError

EPILOG = """\
examples:
  tffreeze freeze runs/mnist -o mnist.pb --manifest mnist.json   # no server to start: see below
  tffreeze freeze runs/mnist/model.ckpt-2000 -o mnist.pb --outputs logits
  tffreeze freeze runs/mnist --step 1000 --outputs probs:0 --inputs x -o mnist-1000.pb
  tffreeze inspect runs/mnist --json
  tffreeze run mnist.pb --input x:0=batch.npy --output probs:0=probs.npy
  tffreeze freeze runs/resnet --bind is_training=false --ema --optimize --verify -o resnet.pb
  tffreeze freeze runs/old --graph graph.pbtxt -o old.pb          # checkpoint saved without .meta
  tffreeze freeze exported_model/ --signature serving_default -o model.pb   # a SavedModel directory

SOURCE is one of:
  - a tf.train.Saver directory (the `checkpoint` state file, PREFIX.index,
    PREFIX.data-0000i-of-0000N, PREFIX.meta): the checkpoint the state file
    names is used (matched by basename), or the one at --step N;
  - one checkpoint PREFIX (runs/mnist/model.ckpt-2000);
  - a SavedModel directory (saved_model.pb, variables/): TF1 (SavedModelBuilder)
    or TF2 (tf.saved_model.save, Keras export); --signature and --tag choose.
A folder holding no checkpoint itself but exactly one folder below it that
does is used (with a warning). Only the chosen checkpoint's files are uploaded,
and only those the server lacks.

The server: --server, else $TFFREEZE_SERVER, else this user's local server,
started on demand (the first call waits for TensorFlow to load, later calls
do not) and stopped after 30 idle minutes or by `tffreeze local-server stop`.
Only you can reach it (a Unix socket in ~/.cache/tffreeze/local, and a token);
its log is server.log there. A named server never starts anything.

exit codes: 0 ok, 1 freeze/server/input error (message on stderr), 2 usage error
"""


LOCAL_EPILOG = """\
where it lives: ~/.cache/tffreeze/local ($TFFREEZE_CACHE_DIR/local when set):
  server.info   pid, version, gRPC socket (unix:...), gRPC-Web URL, token file;
                written once it accepts calls, removed when it stops
  token         the token every call needs (the folder is open to you only)
  server.log    its log (TensorFlow's own lines go here, not to your terminal)
  data/         its blob store (4 GiB at most, least recently used evicted)
A client of another tffreeze version stops it and starts its own.

examples:
  tffreeze local-server status
  tffreeze local-server start --idle-exit 7200   # warm for a long build
  tffreeze local-server stop
"""


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection security")
    g.add_argument("--tls", action="store_true", default=None,
                   help="connect with TLS, checking the server against the system's CAs (default: $TFFREEZE_TLS=1)")
    g.add_argument("--ca", metavar="PEM", default=None,
                   help="CA certificate to check the server against; implies --tls (default: $TFFREEZE_CA)")
    g.add_argument("--token", metavar="TOKEN", default=None,
                   help="bearer token for a server started with --auth-token-file (default: $TFFREEZE_TOKEN; the "
                        "environment keeps it out of the process list)")
    g.add_argument("--client-cert", metavar="PEM", default=None,
                   help="client certificate for a server requiring one (--tls-client-ca); with --client-key")
    g.add_argument("--client-key", metavar="PEM", default=None, help="private key of --client-cert")


def _client(args):
    from .client import FreezeClient  # grpc is imported only when a command needs it

    return FreezeClient(args.server, timeout=args.timeout, tls=args.tls, ca=args.ca, token=args.token,
                        client_cert=args.client_cert, client_key=args.client_key)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError("--timeout takes seconds, e.g. --timeout 300 (got '%s')" % text)
    return value


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="Saver checkpoint directory, one checkpoint prefix, or SavedModel directory (see below)")
    p.add_argument("--server", default=None, metavar="H:P",
                   help="tffreeze server (default: $TFFREEZE_SERVER, else this user's local server, started on "
                        "demand: `tffreeze local-server --help`); several replicas as "
                        "H1:P1,H2:P2 or a gRPC target such as dns:///name:port: calls are balanced round-robin "
                        "and retried on another replica when one is unavailable")
    _add_connection_args(p)
    p.add_argument("--outputs", default="", metavar="a,b",
                   help="output tensors or nodes ('y' or 'y:0'); default: resolved automatically")
    p.add_argument("--inputs", default="", metavar="a,b",
                   help="input tensors or nodes; default: the placeholders the outputs need")
    p.add_argument("--step", type=int, default=None, metavar="N", help="use the checkpoint saved at global step N")
    p.add_argument("--timeout", type=_seconds, default=600.0, metavar="SECONDS",
                   help="per-call deadline (default: %(default)s)")
    g = p.add_argument_group("graph and values")
    g.add_argument("--graph", metavar="FILE",
                   help="graph for a checkpoint saved without .meta: binary/text GraphDef or MetaGraphDef")
    g.add_argument("--signature", metavar="NAME", default="",
                   help="SavedModel/meta-graph signature to use (default: serving_default)")
    g.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="SavedModel MetaGraph tag; repeatable. Needed when the SavedModel holds several MetaGraphs "
                        "(e.g. --tag serve); default: its only one")
    g.add_argument("--bind", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a switch placeholder to a constant; repeatable. Training switches (is_training, "
                        "keep_prob, learning phase) are bound to inference values by default; NAME= keeps one unbound")
    g.add_argument("--ema", action="store_true",
                   help="use VAR/ExponentialMovingAverage shadow values where the checkpoint has them")
    g.add_argument("--var-map", action="append", default=[], metavar="GRAPH_VAR=CKPT_KEY",
                   help="restore a graph variable from another checkpoint key; repeatable")
    g.add_argument("--include-variables", default="", metavar="a,b",
                   help="only these variables take checkpoint values; the rest keep their constant initial value")
    g.add_argument("--exclude-variables", default="", metavar="a,b",
                   help="these variables keep their constant initial value instead of the checkpoint's")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tffreeze", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Freeze TensorFlow checkpoints into self-contained GraphDef .pb files with a server, "
                    "and run the result.")
    parser.add_argument("--version", action="version", version="tffreeze %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", help="run the freeze server (tffreeze-server; `tffreeze serve --help`)",
                       add_help=False, description="Run the tffreeze server; its options are tffreeze-server's.")
    p.add_argument("server_args", nargs=argparse.REMAINDER, metavar="...")

    p = sub.add_parser("local-server", help="start, stop or show this user's local server (started on demand)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The server `tffreeze freeze` and `inspect` (and tffreeze-cs, tffreeze-cpp) use "
                                   "when no --server or $TFFREEZE_SERVER is given: `tffreeze serve --local`, started "
                                   "on the first such call and kept warm, so later calls do not wait for TensorFlow.",
                       epilog=LOCAL_EPILOG)
    p.add_argument("action", choices=("start", "stop", "status"),
                   help="start: start it unless it runs (waits until it accepts calls); stop: stop it (calls in "
                        "flight finish first); status: show it (exit 0 running, 3 not running)")
    p.add_argument("--idle-exit", metavar="SECONDS", default=None,
                   help="with start: stop after SECONDS without a call (default: $TFFREEZE_LOCAL_IDLE_SECONDS, "
                        "else 1800)")
    p.add_argument("--workers", metavar="N", default=None, help="with start: TensorFlow workers (default: 1)")

    p = sub.add_parser("freeze", help="freeze a checkpoint into a .pb", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Upload a checkpoint (only the files the server lacks), freeze it, and write the "
                                   "frozen GraphDef.", epilog=EPILOG)
    _add_source_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.pb", help="where to write the frozen graph")
    p.add_argument("--manifest", metavar="OUT.json",
                   help="write the manifest (resolved inputs/outputs with dtype and shape, sha256, checkpoint)")
    p.add_argument("--optimize", action="store_true",
                   help="inference optimisation: drop identities/debug ops, fold constants and batch norms")
    p.add_argument("--verify", action="store_true",
                   help="run the original and the frozen graph on generated inputs; report max |difference|")
    p.add_argument("--target", default="", metavar="tensorflowsharp|mlnet",
                   help="tensorflowsharp: make the graph load in TensorFlowSharp's libtensorflow 1.15; mlnet (or "
                        "tf2.3): in TensorFlow 2.3.1, what ML.NET and TensorFlow.NET 0.20-0.30 run. New attributes "
                        "are stripped, ops checked against that runtime's registry; an op it lacks fails naming it")
    p.add_argument("--format", default="", metavar="graphdef|onnx|tflite",
                   help="the file to write: the frozen GraphDef (default), or an ONNX or TFLite model converted "
                        "from it, run in onnxruntime / the TFLite interpreter and compared with the frozen graph "
                        "before it is returned (a conversion that does not run or differs is refused, naming the "
                        "node and op)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="pin an input's shape (-1 leaves a dimension unknown), e.g. a static batch for TFLite; "
                        "repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("inspect", help="list a checkpoint's variables and candidate inputs/outputs",
                       description="Show the checkpoint a freeze would use, its variables, and the inputs and "
                                   "outputs it would resolve, each with its reason.")
    _add_source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("run", help="run a frozen graph (or .onnx, .tflite model) locally on .npy inputs",
                       description="Run a frozen GraphDef in the local TensorFlow (an .onnx model in onnxruntime, a "
                                   ".tflite model in the TFLite interpreter), feed .npy files, write outputs as .npy "
                                   "files or print them.")
    p.add_argument("model", metavar="MODEL.pb|.onnx|.tflite")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="feed tensor NAME ('x' or 'x:0') from FILE.npy; repeatable")
    p.add_argument("--output", action="append", default=[], metavar="NAME[=FILE.npy]",
                   help="fetch tensor NAME into FILE.npy, or print its dtype, shape and first values; repeatable. "
                        "Default with --manifest: print every output of the manifest")
    p.add_argument("--manifest", metavar="M.json",
                   help="the manifest written with the graph: NAME may be one of its tensor names or signature "
                        "aliases, and inputs are checked against its dtypes and shapes")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's own log lines (also $TFFREEZE_VERBOSE=1)")
    return parser


class _Bar:
    """Progress on a TTY (silent otherwise), drawn by tqdm: one bar per phase, the upload with
    bytes, rate and time left, then the freeze with its stages by name; redrawn at most ten
    times a second; each bar cleared when its phase ends."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.kind = None
        self.bar = None

    def __call__(self, kind, done, total, message):
        if not self.enabled:
            return
        if kind != self.kind:
            self.done()
            self.kind = kind
            self.bar = self._new(kind, total)
        if kind == "upload":
            self.bar.update(done - self.bar.n)
        else:
            stage, _, detail = message.partition(": ")
            self.bar.set_postfix_str(stage.replace("_", " ") + (" (%s)" % detail if detail else ""), refresh=False)
            self.bar.update(round(min(1.0, done / total if total else 1.0) * 100) - self.bar.n)

    @staticmethod
    def _new(kind, total):
        from tqdm import tqdm

        try:
            width, height = os.get_terminal_size(sys.stderr.fileno())
        except OSError:
            width = height = 0
        # a terminal that reports no size (a new pseudo-terminal) is taken as 100 x 20
        common = dict(file=sys.stderr, leave=False, mininterval=0.1, ncols=width if width >= 40 else 100,
                      nrows=height if height >= 2 else 20)
        if kind == "upload":
            return tqdm(total=total, desc="upload", unit="B", unit_scale=True, **common,
                        bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}B/{total_fmt}B, {rate_fmt}, "
                                   "{remaining} left")
        return tqdm(total=100, desc="freeze", bar_format="{desc} {percentage:3.0f}%|{bar:20}| {elapsed}{postfix}",
                    **common)

    def done(self):
        if self.bar is not None:
            self.bar.refresh()  # the phase's last state (a short phase may not have been redrawn), then cleared
            self.bar.close()
            self.bar = None


def _graph_options(args) -> dict:
    return {"graph_file": args.graph, "signature": args.signature, "tags": args.tag, "bind": args.bind,
            "ema": args.ema, "var_map": args.var_map, "include_variables": args.include_variables,
            "exclude_variables": args.exclude_variables}


def _cmd_freeze(args) -> int:
    from .client import check_output_folder, write_atomically

    for path in (args.output, args.manifest):
        if path:
            check_output_folder(path)
    bar = _Bar(sys.stderr.isatty() and not args.quiet)
    with _client(args) as client:
        try:
            outcome = client.freeze(args.source, output_path=args.output, outputs=args.outputs, inputs=args.inputs,
                                    step=args.step, progress=bar, optimize=args.optimize, verify=args.verify,
                                    target=args.target, format=args.format, input_shapes=args.input_shape,
                                    **_graph_options(args))
        finally:
            bar.done()
    m = outcome.manifest
    if args.manifest:
        write_atomically(args.manifest, outcome.manifest_bytes)
    for w in m["warnings"]:
        print("tffreeze: warning: %s" % w, file=sys.stderr)
    if not args.quiet:
        print("wrote %s (%d bytes, sha256 %s) from %s%s" % (
            args.output, m["size_bytes"], m["sha256"][:12], m["checkpoint"]["prefix"],
            "" if m["checkpoint"]["step"] is None else " (step %d)" % m["checkpoint"]["step"]))
        print("  uploaded %d of %d file(s), %d bytes%s" % (
            outcome.upload.uploaded_files, outcome.upload.files, outcome.upload.uploaded_bytes,
            "; assembled from the local files" if outcome.assembled else
            "; taken from the local results cache" if outcome.linked else
            "" if outcome.downloaded else "; %s already held this graph (not downloaded)" % args.output))
        for kind in ("inputs", "outputs"):
            for t in m[kind]:
                print("  %-7s %s %s %s" % (kind[:-1], t["name"], t["dtype"],
                                          "?" if t["shape"] is None else t["shape"]))
        for b in m["bindings"]:
            print("  bound   %s = %s (%s)" % (b["name"], json.dumps(b["value"]), b["reason"]))
        for v in m["verification"]:
            print("  verify  %s max |frozen - original| = %.3g" % (v["name"], v["max_abs_diff"]))
        c = m.get("conversion")
        if c:
            print("  format  %s (%s), ran in %s: max |%s - frozen| = %.3g" % (
                m["format"][len("FORMAT_"):].lower(), c["converter"], c["runtime"],
                m["format"][len("FORMAT_"):].lower(), c["max_abs_diff"]))
    return 0


def _cmd_inspect(args) -> int:
    with _client(args) as client:
        response = client.inspect(args.source, outputs=args.outputs, inputs=args.inputs, step=args.step,
                                  **_graph_options(args))
    sys.stdout.write(response.rendered.json if args.json else response.rendered.text)
    return 0


def _cmd_run(args) -> int:
    import io

    if args.verbose:
        os.environ["TFFREEZE_VERBOSE"] = "1"

    import numpy as np

    from .client import write_atomically
    from .runner import parse_pairs, run_graph

    from .runner import Manifest, describe, parse_outputs

    manifest = Manifest(args.manifest) if args.manifest else None
    feeds = {}
    for name, path in parse_pairs(args.input, "--input"):
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TffreezeError("cannot read --input %s=%s: %s" % (name, path, exc)) from None
        if manifest is not None:
            info = manifest.input(name)
            Manifest.check(info, value, name)
            name = info["name"]
        feeds[name] = value
    outputs = parse_outputs(args.output)
    if not outputs and manifest is not None:
        outputs = [(name, "") for name in manifest.outputs()]
    if not outputs or any(not name for name, _ in outputs):
        print("tffreeze run: name the outputs: --output NAME[=FILE.npy] (or give --manifest to print every "
              "output)\n(see tffreeze run --help)", file=sys.stderr)
        return 2
    fetches = [manifest.output(name)["name"] if manifest is not None else name for name, _ in outputs]
    values = run_graph(args.model, feeds, fetches, manifest.runtime_names() if manifest is not None else None)
    for (name, path), value in zip(outputs, values):
        if not path:
            print("%s %s" % (name, describe(value)))
            continue
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        write_atomically(path, buf.getvalue())
        print("%s -> %s %s %s" % (name, path, np.asarray(value).dtype, list(np.asarray(value).shape)))
    return 0


def _cmd_local_server(args) -> int:
    from . import local
    from tffreeze_api.localserver import LOG, local_dir

    if args.action == "stop":
        pid = local.stop()
        print("stopped the local server (pid %d)" % pid if pid else "no local server is running")
        return 0
    if args.action == "status":
        info = local.status()
        if info is None:
            print("no local server is running (one starts on demand; its folder: %s)" % local_dir())
            return 3
    else:
        extra = []
        for flag, value in (("--idle-exit", args.idle_exit), ("--workers", args.workers)):
            if value is not None:
                extra += [flag, value]
        endpoint = local.ensure(extra)
        print("started the local server" if endpoint.started else "the local server is already running")
        info = local.status() or {}
    for key in ("pid", "version", "grpc", "web", "token-file"):
        if key in info:
            print("  %-10s %s" % (key, info[key]))
    print("  %-10s %s" % ("log", os.path.join(local_dir(), LOG)))
    return 0


def _cmd_serve(args) -> int:
    try:
        from tffreeze_server.cli import main as server_main
    except ImportError:
        print("tffreeze serve: the server is not installed; `pip install -e server` (or `make setup`)",
              file=sys.stderr)
        return 1
    return server_main(args.server_args, prog="tffreeze serve")


def _message(exc: TffreezeError) -> str:
    """The error's message on one line, naming the option at fault as the command line spells
    it (the server's "flag" metadata; the shared table for this client's own errors)."""
    msg = " ".join(str(exc).split())
    field = exc.metadata.get("field", "")
    flag = exc.metadata.get("flag") or FLAGS.get(field)
    if flag:
        for prefix in (field + ": ", field[len("options."):] + ": "):
            if field and msg.startswith(prefix):
                msg = msg[len(prefix):]
        msg = "%s: %s" % (flag, msg)
    return msg


def _reason(exc: TffreezeError) -> str:
    """' (REASON)' before the status, for an error the server (or this client) gave a reason."""
    reason = exc.reason or ""
    if not reason or reason == "ERROR_REASON_UNSPECIFIED":
        return ""
    return " (%s)" % reason[len("ERROR_REASON_"):] if reason.startswith("ERROR_REASON_") else " (%s)" % reason


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own log lines (an error says what failed)
    if argv[:1] == ["serve"]:  # the server parses its own arguments
        return _cmd_serve(argparse.Namespace(server_args=argv[1:]))
    args = build_parser().parse_args(argv)
    handler = {"freeze": _cmd_freeze, "inspect": _cmd_inspect, "run": _cmd_run, "serve": _cmd_serve,
               "local-server": _cmd_local_server}[args.command]
    try:
        return handler(args)
    except TffreezeError as exc:
        print("tffreeze %s: %s%s [%s]" % (args.command, _message(exc), _reason(exc), exc.code), file=sys.stderr)
        listed = [c for c in exc.metadata.get("candidates", "").split(",") if c]
        if listed and exc.metadata.get("field") == "options.outputs":
            print("to freeze the best candidate, add:  --outputs %s" % listed[0], file=sys.stderr)
            print("all candidates (keep those the model deploys):  --outputs %s" % ",".join(listed),
                  file=sys.stderr)
        return 1
    except OSError as exc:
        print("tffreeze %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tffreeze %s: interrupted" % args.command, file=sys.stderr)
        return 130


def entry() -> None:
    """The ``tffreeze`` console script. After ``freeze`` and ``inspect`` (the commands build
    systems call again and again) the process ends without the interpreter's teardown:
    gRPC's takes ~20 ms of a ~0.1 s re-freeze. Every file is complete and closed by then;
    only stdout and stderr are left to flush. Other commands, and errors, exit normally."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] in (["freeze"], ["inspect"]):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe: let the normal exit report it
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
