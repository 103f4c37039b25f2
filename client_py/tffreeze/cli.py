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
import re
import signal
import time
import sys
from typing import Dict, List, Optional

from tffreeze_api.options import FLAGS

from . import __version__
from .errors import UNSPECIFIED, TffreezeError

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

Flags are written in full (no abbreviations); a flag of another command (freeze's -o
given to run, run's --output NAME given to freeze) is a usage error naming that command.
-o and --manifest are checked before anything is uploaded or written. SIGINT, SIGTERM
and SIGHUP remove the temporary file beside the output (exit 130, 143, 129); the next
freeze of an output removes the .OUT.pb.*.part files a killed freeze left (its pid gone).

exit codes: 0 ok, 1 freeze/server/input error (message on stderr), 2 usage error,
130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP (nothing left half-written)
"""


LOCAL_EPILOG = """\
where it lives: ~/.cache/tffreeze/local ($TFFREEZE_CACHE_DIR/local when set):
  server.info   pid, version, installation, options, gRPC socket (unix:...),
                gRPC-Web URL, token file; written once it accepts calls,
                removed when it stops
  token         the token every call needs (the folder is open to you only)
  server.log    its log (TensorFlow's own lines go here, not to your terminal)
  data/         its store: 4 GiB at most (--max-store-bytes, or
                $TFFREEZE_LOCAL_STORE_BYTES when it starts); the least recently
                used checkpoints are evicted for new ones; `clean` removes it
Each freeze runs with a memory limit (--task-memory-bytes, or
$TFFREEZE_LOCAL_TASK_MEMORY_BYTES when it starts; default three quarters of
this machine's memory): --verify needs about 16x the checkpoint's size,
--format onnx up to 64x. A freeze over it fails with MEMORY_LIMIT naming it.
One local server per user: a client of another tffreeze version stops it and
starts its own; one of another installation (checkout) of the same version
uses it and says so (`status` shows whose it is).

examples:
  tffreeze local-server status                   # pid, installation, store use
  tffreeze local-server start --idle-exit 7200   # warm for a long build
  tffreeze local-server start --max-store-bytes 16G
  tffreeze local-server start --task-memory-bytes 12G
  tffreeze local-server stop
  tffreeze local-server clean                    # stop it and remove its store
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
                   help="tffreeze server: its 'listening on' HOST:PORT, not the gRPC-Web http:// URL (that is "
                        "tffreeze-cs's) (default: $TFFREEZE_SERVER, else this user's local server, started on "
                        "demand: `tffreeze local-server --help`); several replicas as "
                        "H1:P1,H2:P2 or a gRPC target such as dns:///name:port: calls are balanced round-robin "
                        "and retried on another replica when one is unavailable")
    _add_connection_args(p)
    p.add_argument("--outputs", default="", metavar="a,b",
                   help="output tensors or nodes ('y' or 'y:0'); default: resolved automatically")
    p.add_argument("--inputs", default="", metavar="a,b",
                   help="input tensors or nodes; default: the placeholders the outputs need")
    p.add_argument("--step", type=_step, default=None, metavar="N",
                   help="use the checkpoint saved at global step N: the -N that saver.save(global_step=...) put "
                        "after its prefix")
    p.add_argument("--timeout", type=_seconds, default=600.0, metavar="SECONDS",
                   help="per-call deadline (default: %(default)s)")
    g = p.add_argument_group("graph and values")
    g.add_argument("--graph", metavar="FILE",
                   help="graph for a checkpoint saved without .meta: a binary/text GraphDef or MetaGraphDef file "
                        "(not a folder)")
    g.add_argument("--signature", metavar="NAME", default="",
                   help="SavedModel/meta-graph signature to use (default: serving_default)")
    g.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="SavedModel MetaGraph tag; repeatable. Needed when the SavedModel holds several MetaGraphs "
                        "(e.g. --tag serve); default: its only one")
    g.add_argument("--bind", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a switch placeholder to a constant; repeatable. Training switches (is_training, "
                        "keep_prob, learning phase) are bound to inference values by default; NAME= keeps one unbound")
    g.add_argument("--ema", action="store_true",
                   help="use each variable's moving average where the checkpoint has one (VAR/ExponentialMovingAverage, or "
                        "the average an ExponentialMovingAverage of another name updates, under any key)")
    g.add_argument("--var-map", action="append", default=[], metavar="GRAPH_VAR=CKPT_KEY",
                   help="restore a graph variable from another checkpoint key; repeatable")
    g.add_argument("--include-variables", default="", metavar="a,b",
                   help="only these variables take checkpoint values; the rest keep their constant initial value")
    g.add_argument("--exclude-variables", default="", metavar="a,b",
                   help="these variables keep their constant initial value instead of the checkpoint's")


class _Parser(argparse.ArgumentParser):
    """argparse, with tffreeze-cs's and tffreeze-cpp's usage errors: one line naming the problem
    in their words (a message that names its flag itself is not prefixed "argument FLAG:" again:
    "--step takes a global step (an integer), got 'abc'"), then where the help is; no usage block."""

    def error(self, message):
        message = self.in_our_words(" ".join(message.split()))
        self.exit(2, "%s: %s\n(see %s --help)\n" % (self.prog, message, self.prog.split()[0]))

    def in_our_words(self, message: str) -> str:
        command = self.prog.split()[-1]
        positional = {"freeze": "SOURCE", "inspect": "SOURCE", "run": "MODEL.pb"}.get(command)
        said = re.match(r"argument (\S+): (.*)$", message, re.S)
        if said and any(said.group(2).startswith(f) for f in said.group(1).split("/")):
            return said.group(2)
        if said and said.group(2) == "expected one argument":
            flag = said.group(1).split("/")[0]
            action = _flags(self).get(flag)
            return "%s needs a value: %s %s" % (flag, flag, action.metavar if action and action.metavar else "VALUE")
        if said and said.group(2).startswith("ignored explicit argument"):
            return "%s takes no value" % said.group(1).split("/")[-1]
        if said and said.group(1) == "COMMAND" and said.group(2).startswith("invalid choice: "):
            given = re.match(r"invalid choice: '(.*?)'", said.group(2))
            return "unknown command '%s' (freeze, inspect, run, serve, local-server)" % (
                given.group(1) if given else "")
        required = re.match(r"the following arguments are required: (.*)$", message)
        if required:
            missing = required.group(1).split(", ")
            if positional and any(m.startswith(("SOURCE", "MODEL")) for m in missing):
                return "%s takes one %s" % (command, positional)
            if "-o/--output-file" in missing:
                return "freeze needs -o OUT.pb"
        return message

    def unrecognized(self, extra: List[str]) -> None:
        """Arguments no flag took: an unknown option, or a positional beyond the one it takes."""
        flag = next((a for a in extra if a.startswith("-") and a != "-"), None)
        command = self.prog.split()[-1]
        positional = {"freeze": "SOURCE", "inspect": "SOURCE", "run": "MODEL.pb"}.get(command)
        if flag is not None:
            self.error("unknown option %s" % flag.split("=", 1)[0])
        if positional:
            self.error("%s takes one %s" % (command, positional))
        self.error("unrecognized arguments: %s" % " ".join(extra))


class _Once(argparse.Action):
    """-o/--output-file: one graph is written, so the flag is given once (a second is a usage error,
    not silently the one that wins), as tffreeze-cs and tffreeze-cpp refuse it."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error("freeze writes one graph: give -o/--output-file once")
        setattr(namespace, self.dest, values)


# The kind of model an -o name says and --format writes (the C# and C++ clients use the same table).
_MODEL_KINDS = {"graphdef": "a frozen GraphDef", "onnx": "an ONNX model", "tflite": "a TensorFlow Lite model"}
_EXTENSION_KINDS = {".pb": "graphdef", ".onnx": "onnx", ".tflite": "tflite"}


def format_clash(path: str, fmt: str) -> str:
    """Why -o PATH does not fit --format FMT ("" when it does): a .pb, .onnx or .tflite name says
    which model the file holds, and `run` and other tools read it by that name; other names
    are the user's choice."""
    stem, ext = os.path.splitext(path)
    named = _EXTENSION_KINDS.get(ext.lower())
    want = fmt.strip().lower() or "graphdef"
    if named is None or want not in _MODEL_KINDS or named == want:
        return ""
    given = "--format %s" % fmt if fmt else "freeze without --format"
    fix = "drop --format %s" % fmt if named == "graphdef" else "give --format %s" % named
    ext_of = {k: e for e, k in _EXTENSION_KINDS.items()}
    return "-o %s is named for %s (%s) but %s writes %s: name it %s%s, or %s" % (
        path, _MODEL_KINDS[named], ext, given, _MODEL_KINDS[want], stem, ext_of[want], fix)


def _step(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--step takes a global step (an integer), got '%s'" % text) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tffreeze", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Freeze TensorFlow checkpoints into self-contained GraphDef .pb files with a server, "
                    "and run the result.")
    parser.add_argument("--version", action="version", version="tffreeze %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", allow_abbrev=False,
                       help="run the freeze server (tffreeze-server; `tffreeze serve --help`)",
                       add_help=False, description="Run the tffreeze server; its options are tffreeze-server's.")
    p.add_argument("server_args", nargs=argparse.REMAINDER, metavar="...")

    p = sub.add_parser("local-server", allow_abbrev=False,
                       help="start, stop or show this user's local server (started on demand)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The server `tffreeze freeze` and `inspect` (and tffreeze-cs, tffreeze-cpp) use "
                                   "when no --server or $TFFREEZE_SERVER is given: `tffreeze serve --local`, started "
                                   "on the first such call and kept warm, so later calls do not wait for TensorFlow.",
                       epilog=LOCAL_EPILOG)
    p.add_argument("action", choices=("start", "stop", "status", "clean"),
                   help="start: start it unless it runs (waits until it accepts calls; exit 1 when one runs with other "
                        "options than yours, which are then not applied); stop: stop it (calls in "
                        "flight finish first; a freeze or inspect still running goes on with a new local server, and "
                        "says so); status: show it and its store (exit 0 running, 3 not running); "
                        "clean: stop it and remove its store, saying how much that freed")
    p.add_argument("--idle-exit", metavar="SECONDS", default=None,
                   help="with start: stop after SECONDS without a call (default: $TFFREEZE_LOCAL_IDLE_SECONDS, "
                        "else 1800)")
    p.add_argument("--workers", metavar="N", default=None, help="with start: TensorFlow workers (default: 1)")
    p.add_argument("--max-store-bytes", metavar="BYTES", default=None,
                   help="with start: the store's size, in bytes or with K, M, G (8G); the least recently used "
                        "checkpoints are evicted to make room (default: $TFFREEZE_LOCAL_STORE_BYTES, else 4G)")
    p.add_argument("--task-memory-bytes", metavar="BYTES", default=None,
                   help="with start: the memory one freeze may use beyond the warm TensorFlow worker, in bytes or "
                        "with K, M, G (12G); --verify needs about 16x the checkpoint's size, --format onnx up to "
                        "64x; 0: no limit (default: $TFFREEZE_LOCAL_TASK_MEMORY_BYTES, else three quarters of this "
                        "machine's memory)")

    p = sub.add_parser("freeze", allow_abbrev=False, help="freeze a checkpoint into a .pb",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Upload a checkpoint (only the files the server lacks), freeze it, and write the "
                                   "frozen GraphDef.", epilog=EPILOG)
    _add_source_args(p)
    p.add_argument("-o", "--output-file", dest="output", required=True, metavar="OUT.pb", action=_Once,
                   help="where to write the frozen graph: a file name in a folder that exists (checked before "
                        "anything is uploaded), given once; not - (standard output), /dev/stdout or a pipe, as the "
                        "graph is written whole, through a temporary file renamed over the name. Not --output, which is "
                        "run's. A .pb, .onnx or .tflite "
                        "name must match --format (.pb: graphdef, the default); other names are taken as they are. "
                        "Temporary files a killed freeze left beside it (.OUT.pb.PID-*.part, their writer gone) "
                        "are removed")
    p.add_argument("--manifest", metavar="OUT.json",
                   help="write the manifest (resolved inputs/outputs with dtype and shape, sha256, checkpoint); "
                        "checked with -o before anything is written")
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

    p = sub.add_parser("inspect", allow_abbrev=False,
                       help="list a checkpoint's variables and candidate inputs/outputs",
                       description="Show the checkpoint a freeze would use, its variables, and the inputs and "
                                   "outputs it would resolve, each with its reason.")
    _add_source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("run", allow_abbrev=False,
                       help="run a frozen graph (or .onnx, .tflite model) locally on .npy inputs",
                       description="Run a frozen GraphDef in the local TensorFlow (an ONNX model in onnxruntime, a "
                                   "TFLite model in the TFLite interpreter), feed .npy files, write outputs as .npy "
                                   "files or print them. What MODEL holds decides: the --manifest's format, else its "
                                   "bytes, else its extension (a name that says another kind is warned of).")
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
            self.started = time.monotonic()
            self.bar = self._new(kind, total)
        if kind == "upload":  # in MiB, as tffreeze-cs and tffreeze-cpp show it; a rate once a second has passed
            seconds = time.monotonic() - self.started
            text = "%.1f/%.1f MiB" % (done / 1048576.0, total / 1048576.0)
            if done and (seconds >= 1.0 or done >= total):
                rate = done / seconds
                left = (total - done) / rate
                text += ", %.1f MiB/s, %s left" % (rate / 1048576.0, "%d s" % left if left < 90 else
                                                    "%d min" % round(left / 60))
            self.bar.bar_format = "{desc} {percentage:3.0f}%|{bar:20}| " + text  # (no braces in text)
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
            return tqdm(total=total, desc="upload", **common, bar_format="{desc} {percentage:3.0f}%|{bar:20}|")
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


def _checkpoint_part(rel: str) -> bool:
    """Whether a listed file is one a checkpoint or SavedModel is made of (the same rule in
    every client)."""
    import re

    name = rel.rsplit("/", 1)[-1]
    folders = rel.split("/")[:-1]
    return (name == "checkpoint" or name.endswith((".index", ".meta")) or bool(re.search(r"\.data-\d{5}-of-\d{5}\Z", name))
            or name in ("saved_model.pb", "saved_model.pbtxt", "fingerprint.pb")
            or "variables" in folders or "assets" in folders)


def _source_file_named(source: str, path: str, graph: Optional[str]) -> Optional[str]:
    """The file of SOURCE's listing (or the --graph file) that ``path`` is, as SOURCE names it."""
    from .source import plan_request

    try:
        root, request = plan_request(source)
    except Exception:  # noqa: BLE001 - a bad SOURCE is the freeze's own error, said below
        return None
    # only what a checkpoint or SavedModel is made of: an earlier graph written into SOURCE may be replaced
    files = [(f.path, os.path.join(root, *f.path.split("/"))) for f in request.files if _checkpoint_part(f.path)]
    if graph:
        files.append((graph, graph))
    target = os.path.realpath(path)
    for shown, full in files:
        try:
            if os.path.samefile(full, path):
                return shown
        except OSError:
            if os.path.realpath(full) == target:
                return shown
    return None


def _empty_path(args) -> Optional[str]:
    """The usage error of a path flag given an empty value ("-o ''"), else None."""
    if args.command == "freeze" and args.output is not None and not args.output.strip():
        return "freeze needs -o OUT.pb"
    if args.command == "freeze" and args.manifest is not None and not args.manifest.strip():
        return "--manifest needs a path: --manifest OUT.json"
    if args.command == "run" and args.manifest is not None and not args.manifest.strip():
        return "--manifest needs a path: --manifest M.json"
    return None


_NAME_LISTS = ("--outputs", "--inputs", "--include-variables", "--exclude-variables")


def _no_names(argv: List[str]) -> Optional[str]:
    """A name-list flag given a value that names nothing (``--outputs ''``, ``--outputs ,``: an
    empty variable in a script), which would silently mean "leave it out"; else None."""
    for k, word in enumerate(argv):
        parts = word.split("=", 1)
        if parts[0] not in _NAME_LISTS:
            continue
        flag = parts[0]
        if len(parts) == 2:
            value = parts[1]
        elif k + 1 < len(argv):
            value = argv[k + 1]
        else:
            return None
        if not [n for n in re.split(r"[,\s]+", value) if n]:
            return "%s names nothing: give names (%s a,b), or leave it out" % (flag, flag)
    return None


def _cmd_freeze(args) -> int:
    from .client import (check_a_file, check_output, keep_old, remove_stale_parts, through_link, write_atomically,
                         write_error)

    clash = format_clash(args.output, args.format)
    if clash:  # before anything is uploaded: the file would hold another model than its name says
        print("tffreeze freeze: %s" % clash, file=sys.stderr)
        return 2

    check_a_file(args.output, "-o")  # (before the links: /dev/stdout is one, to a pipe or a terminal)
    if args.manifest:
        check_a_file(args.manifest, "--manifest", "the manifest")
    # Written through a symbolic link: to its final target, and the link stays a link.
    args.output = through_link(args.output)
    if args.manifest:
        args.manifest = through_link(args.manifest)
    # Never written over the checkpoint being frozen, nor the graph over its manifest.
    for path, flag, what in ((args.output, "-o", "the graph"), (args.manifest, "--manifest", "the manifest")):
        clash = _source_file_named(args.source, path, args.graph) if path else None
        if clash:
            print("tffreeze freeze: %s %s is a file of the checkpoint being frozen (%s): give %s another path"
                  % (flag, path, clash, what), file=sys.stderr)
            return 2
    if args.manifest and os.path.realpath(args.manifest) == os.path.realpath(args.output):
        print("tffreeze freeze: --manifest %s is the graph's own path: give the manifest another name" % args.manifest,
              file=sys.stderr)
        return 2
    # Both outputs are checked before anything is uploaded or written: a --manifest that
    # cannot be written refuses before the graph is.
    check_output(args.output, "-o")
    if args.manifest:
        check_output(args.manifest, "--manifest", "the manifest")
    for path in (args.output, args.manifest):
        if path:
            remove_stale_parts(path)  # what a killed freeze of this output left
    bar = _Bar(sys.stderr.isatty() and not args.quiet)
    # The graph and its manifest are written both or neither: the old graph is kept (a hard link)
    # until the manifest is in place, and put back when the manifest cannot be written.
    existed = os.path.exists(args.output)
    old = keep_old(args.output) if args.manifest else None
    try:
        with _client(args) as client:
            try:
                outcome = client.freeze(args.source, output_path=args.output, outputs=args.outputs,
                                        inputs=args.inputs, step=args.step, progress=bar, optimize=args.optimize,
                                        verify=args.verify, target=args.target, format=args.format,
                                        input_shapes=args.input_shape, **_graph_options(args))
            finally:
                bar.done()
        m = outcome.manifest
        if args.manifest:
            try:
                write_atomically(args.manifest, outcome.manifest_bytes)
            except OSError as exc:
                err = write_error(exc, args.manifest, "--manifest", "the manifest")
                if old is not None:
                    os.replace(old, args.output)
                    old = None
                    err.message += " (-o %s is as it was: nothing was written)" % args.output
                elif not existed:
                    os.unlink(args.output)
                    err.message += " (nothing was written)"
                else:
                    err.message += " (-o %s holds the new graph; its manifest was not written)" % args.output
                raise err from exc
    finally:
        if old is not None and os.path.exists(old):
            os.unlink(old)
    for w in m["warnings"]:
        print("tffreeze: warning: %s" % _in_cli_words(w, args.source, "freeze"), file=sys.stderr)
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
        if m.get("session_config_passes_off"):
            print("  session grappler %s off: the manifest's session_config, which run applies"
                  % ", ".join(m["session_config_passes_off"]))
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

    from .client import check_output, write_atomically, write_error
    from .runner import parse_pairs, run_graph

    from .runner import Manifest, describe, model_kind, parse_outputs, read_npy

    try:
        pairs = parse_pairs(args.input, "--input")
    except ValueError as exc:
        print("tffreeze run: %s\n(see tffreeze run --help)" % exc, file=sys.stderr)
        return 2
    outputs = parse_outputs(args.output)
    if (not outputs and not args.manifest) or any(not name for name, _ in outputs):
        print("tffreeze run: name the outputs: --output NAME[=FILE.npy] (or give --manifest to print every "
              "output)\n(see tffreeze run --help)", file=sys.stderr)
        return 2
    if os.path.isdir(args.model) or not os.path.exists(args.model):
        model_kind(args.model)  # says which: a folder, or no such file
    manifest = Manifest(args.manifest) if args.manifest else None
    # What MODEL holds decides how it runs: the manifest's format, else its bytes (not only its name).
    kind, warning = model_kind(args.model, manifest.format() if manifest is not None else None, args.manifest or "")
    if warning:
        print("tffreeze: warning: %s" % warning, file=sys.stderr)
    other = manifest.other_graph(args.model) if manifest is not None else ""
    if other:
        print("tffreeze: warning: %s" % other, file=sys.stderr)
    if not outputs:
        outputs = [(name, "") for name in manifest.outputs()]
    for name, path in outputs:  # every file is checked before the graph runs
        if path:
            check_output(path, "--output %s=" % name, "the output")
    feeds = {}
    for name, path in pairs:
        value = read_npy(name, path)
        if manifest is not None:
            info = manifest.input(name)
            Manifest.check(info, value, name)
            name = info["name"]
        feeds[name] = value
    fetches = [manifest.output(name)["name"] if manifest is not None else name for name, _ in outputs]
    if manifest is not None:  # after every name is checked: an input no --input feeds
        manifest.check_fed(list(feeds))
    values = run_graph(args.model, feeds, fetches, manifest.runtime_names() if manifest is not None else None,
                       manifest.session_config() if manifest is not None else b"", kind=kind)
    for (name, path), value in zip(outputs, values):
        if not path:
            print("%s %s" % (name, describe(value)))
            continue
        array = np.asarray(value)
        if array.dtype == object:  # a string tensor (bytes per element): a fixed-width bytes array, no pickle
            array = np.asarray(array.tolist(), dtype=bytes) if array.size else array.astype(bytes)
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        try:
            write_atomically(path, buf.getvalue())
        except OSError as exc:
            raise write_error(exc, path, "--output %s=" % name, "the output") from exc
        print("%s -> %s %s %s" % (name, path, array.dtype, list(array.shape)))
    return 0


def _cmd_local_server(args) -> int:
    from . import local
    from tffreeze_api.localserver import LOG, local_dir

    if args.action in ("stop", "clean"):
        info = local.status()
        other = local.other_installation(info) if info else None
        whose = " of another installation, %s" % other if other else ""
        if args.action == "clean":
            pid, freed = local.clean()
            print("%sremoved the local server's store: freed %s (%s)"
                  % ("stopped the local server (pid %d%s); " % (pid, whose) if pid else "", _size(freed),
                     os.path.join(local_dir(), "data")))
            return 0
        pid = local.stop()
        print("stopped the local server (pid %d%s)" % (pid, whose) if pid else "no local server is running")
        used, _ = local.store_use()
        if used:
            print("its store keeps %s in %s until the next start; `tffreeze local-server clean` removes it"
                  % (_size(used), os.path.join(local_dir(), "data")))
        return 0
    differ = []
    if args.action == "status":
        info = local.status()
        if info is None:
            used, _ = local.store_use()
            print("no local server is running (one starts on demand; its folder: %s; its store holds %s)"
                  % (local_dir(), _size(used)))
            return 3
    else:
        try:
            from tffreeze_server.settings import parse_bytes, size_text
        except ImportError:  # no server installed: ensure() says so
            parse_bytes, size_text = int, str
        extra, wanted = [], {}
        sizes = {}
        for flag, value, zero in (("--max-store-bytes", args.max_store_bytes, False),
                                  ("--task-memory-bytes", args.task_memory_bytes, True)):
            if value is not None:
                try:
                    value = str(parse_bytes(value, allow_zero=True) if zero else parse_bytes(value))
                except TypeError:  # parse_bytes is int: no server installed, ensure() says so
                    pass
                except ValueError as exc:
                    print("tffreeze local-server: %s: %s" % (flag, exc), file=sys.stderr)
                    return 2
            sizes[flag] = value
        for flag, value in (("--idle-exit", args.idle_exit), ("--workers", args.workers),
                            ("--max-store-bytes", sizes["--max-store-bytes"]),
                            ("--task-memory-bytes", sizes["--task-memory-bytes"])):
            if value is not None:
                extra += [flag, value]
                wanted["store-bytes" if flag == "--max-store-bytes" else flag[2:]] = value
        endpoint = local.ensure(extra)
        info = local.status() or {}
        differ = [] if endpoint.started else local.differences(info, wanted)
        if differ:
            def shown(flag, value):  # a byte size as the flag takes it (12G, 1.5G), not in bytes
                return size_text(int(value)) if flag.endswith("-bytes") and str(value).isdigit() else value

            # exit 1: a script must see that its options were not applied
            print("tffreeze local-server: the local server is already running (pid %s), with other options: %s. "
                  "Your options were not applied. To restart it with yours: "
                  "`tffreeze local-server stop && tffreeze local-server start %s`"
                  % (info.get("pid", "?"), ", ".join("%s %s, not %s" % (f, shown(f, have), shown(f, want))
                                                     for f, have, want in differ),
                     " ".join(shown(extra[i - 1], v) if i % 2 else v for i, v in enumerate(extra))), file=sys.stderr)
        else:
            print("started the local server" if endpoint.started else "the local server is already running")
    for key in ("pid", "version", "installation", "python", "grpc", "web", "token-file", "idle-exit", "workers"):
        if key in info:
            print("  %-12s %s" % (key, info[key]))
    other = local.other_installation(info)
    if other:
        print("  %-12s another installation's; this one is %s" % ("", local.installation()))
    used, files = local.store_use()
    cap = int(info["store-bytes"]) if info.get("store-bytes", "").isdigit() else 0
    print("  %-12s %s used of %s (%d files) in %s" % ("store", _size(used), _size(cap) if cap else "?", files,
                                                   info.get("data", os.path.join(local_dir(), "data"))))
    memory = info.get("task-memory-bytes", "")
    if memory.isdigit():
        print("  %-12s %s per freeze beyond the warm worker (--task-memory-bytes, $TFFREEZE_LOCAL_TASK_MEMORY_BYTES)"
              % ("task memory", _size(int(memory)) if int(memory) else "no limit"))
    print("  %-12s %s" % ("log", os.path.join(local_dir(), LOG)))
    return 1 if args.action == "start" and differ else 0


def _size(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return "%.1f %s" % (n / float(1 << shift), unit)
    return "%d bytes" % n


def _cmd_serve(args) -> int:
    try:
        from tffreeze_server.cli import main as server_main
    except ImportError:
        print("tffreeze serve: the server is not installed; `pip install -e server` (or `make setup`)",
              file=sys.stderr)
        return 1
    return server_main(args.server_args, prog="tffreeze serve")

# A flag of another command given to this one: what this command takes instead.
_INSTEAD = {
    ("freeze", "--output"): "freeze writes its graph with -o/--output-file",
    ("freeze", "--input"): "freeze names the graph's inputs with --inputs a,b",
    ("freeze", "--verbose"): "freeze shows its progress on a terminal (--quiet hides it)",
    ("freeze", "--json"): "freeze writes its manifest (JSON) with --manifest OUT.json",
    ("inspect", "--output"): "inspect writes no file; it takes the outputs to resolve as --outputs a,b",
    ("inspect", "--input"): "inspect takes the inputs to resolve as --inputs a,b",
    ("inspect", "-o"): "inspect writes no file; `tffreeze freeze` writes the graph",
    ("inspect", "--output-file"): "inspect writes no file; `tffreeze freeze` writes the graph",
    ("inspect", "--manifest"): "inspect writes no file; `tffreeze freeze --manifest OUT.json` writes the manifest",
    ("run", "-o"): "run writes each output with --output NAME=FILE.npy",
    ("run", "--output-file"): "run writes each output with --output NAME=FILE.npy",
    ("run", "--outputs"): "run fetches each tensor with --output NAME[=FILE.npy]",
    ("run", "--inputs"): "run feeds each tensor with --input NAME=FILE.npy",
}


def _flags(p: argparse.ArgumentParser) -> dict:
    """A command's flags: option string -> its argparse action."""
    return {opt: a for a in p._actions for opt in a.option_strings}


def _commands(parser: argparse.ArgumentParser) -> dict:
    """The commands' parsers by name."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _refuse_foreign_flags(parser: argparse.ArgumentParser, argv: List[str]) -> None:
    """A flag of another command (``freeze ... --output pred``, ``run ... -o x``) is a usage
    error naming the flag, the command it belongs to and what this command takes instead,
    before argparse could read it otherwise. Flag values are skipped as argparse skips them."""
    commands = _commands(parser)
    at = next((i for i, t in enumerate(argv) if not t.startswith("-")), None)
    if at is None or argv[at] not in commands or argv[at] == "serve":
        return
    command, own = argv[at], _flags(commands[argv[at]])
    tokens = argv[at + 1:]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "--":
            return
        if not tok.startswith("-") or tok == "-" or re.match(r"-\d", tok):
            continue
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok[:2]
        action = own.get(name)
        if action is not None:
            inline = "=" in tok if tok.startswith("--") else len(tok) > 2
            if action.nargs != 0 and not inline:
                i += 1  # its value
            continue
        owners = [c for c, p in commands.items() if c != command and name in _flags(p)]
        if not owners:
            longer = sorted(f for f in own if name.startswith("--") and f.startswith(name))
            if longer:  # abbreviations are refused: say which flag it may have meant
                commands[command].error("%s is not a flag of `tffreeze %s`: flags are written in full (%s)" % (
                    name, command, " or ".join(longer[:4])))
            continue  # argparse names it (an unknown flag)
        theirs = _flags(commands[owners[0]])[name]
        shown = name + (" %s" % theirs.metavar if theirs.nargs != 0 and theirs.metavar else "")
        msg = "%s is a flag of %s" % (shown, " and ".join("`tffreeze %s`" % c for c in owners))
        msg += "; %s" % _INSTEAD[(command, name)] if (command, name) in _INSTEAD else (
            ", not of `tffreeze %s` (see tffreeze %s --help)" % (command, command))
        commands[command].error(msg)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt for SIGINT, so
    that every temporary file is removed on the way out (not an Exception: nothing that
    catches those swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    for s in (signal.SIGTERM, signal.SIGHUP):  # a second signal while cleaning up ends the process
        signal.signal(s, signal.SIG_DFL)
    raise _Terminated(signum)


def _handle_signals() -> dict:
    """Handle SIGTERM and SIGHUP as SIGINT is handled; the handlers replaced, to restore."""
    before = {}
    for s in (signal.SIGTERM, signal.SIGHUP):
        try:
            before[s] = signal.signal(s, _on_signal)
        except (ValueError, OSError):  # not the main thread: leave them
            pass
    return before


# Request fields (as the server's messages and metadata name them) that are not "options.X"
# in the shared table, as this command line spells them.
_WORDS = [
    (r"\bname it in graph_path\b", "name it with --graph FILE"),
    (r"\bthe graph option \(--graph\)", "--graph"),
    (r"\bthe graph option\b", "--graph"),
    (r"\bgraph_path\b", "--graph"),
    # The server's examples ("e.g. outputs=logits"), never a value the user gave ("inputs=a,10").
    (r"\be\.g\. outputs=", "e.g. --outputs "),
    (r"\be\.g\. inputs=", "e.g. --inputs "),
    (r"\bvar_map\b", "--var-map"),
    (r"\binput_shapes\b", "--input-shape"),
    (r"\binclude_variables\b", "--include-variables"),
    (r"\bexclude_variables\b", "--exclude-variables"),
]
_OUTPUTS_NOTE = re.compile(r"\s*\[outputs: (.*)\]\s*$")
# What the library names an output path by, as this command line's flag.
_PATH_FLAGS = {"output_path": "-o"}


def _in_cli_words(msg: str, source: str = "", command: str = "freeze") -> str:
    """A message worded in request terms (the server's), in this command line's: request
    fields as flags, SOURCE as the source the user gave."""
    for field, flag in sorted(FLAGS.items(), key=lambda kv: -len(kv[0])):
        if flag != "SOURCE":
            msg = re.sub(r"\b%s\b" % re.escape(field), flag, msg)
    for pattern, words in _WORDS:
        msg = re.sub(pattern, words, msg)
    shown = source or "the source"
    first = re.search(r"folders below it do: (\S+?)/?[,.]", msg)
    msg = re.sub(r"Pass one of them as SOURCE\.?", "Give one of them instead, e.g. `tffreeze %s %s`." % (
        command, os.path.join(source, first.group(1)) if first and source else "FOLDER"), msg)
    msg = re.sub(r"pass its folder as SOURCE", "give `tffreeze %s` its folder" % command, msg)
    msg = re.sub(r"\binside SOURCE\b", "inside %s" % shown, msg)
    msg = re.sub(r"\bSOURCE\b", shown, msg)
    msg = re.sub(r"\boptions\.checkpoint_prefix\b", shown, msg)
    return msg


def _message(exc: TffreezeError, args=None) -> str:
    """The error's message on one line, naming the option at fault as the command line spells
    it (the server's "flag" metadata; the shared table for this client's own errors)."""
    msg = " ".join(str(exc).split())
    if (exc.code == "DEADLINE_EXCEEDED" and exc.reason in ("", UNSPECIFIED) and "Deadline Exceeded" in msg
            and getattr(args, "timeout", None)):  # gRPC's own deadline ("Stream removed (Deadline Exceeded)" too)
        return "no answer within --timeout %g seconds: give a larger --timeout (the default is 600)" % args.timeout
    field = exc.metadata.get("field", "")
    path = exc.metadata.get("path", "")
    if field in _PATH_FLAGS and path and msg.startswith(path):  # an output this client failed to write
        return "%s %s" % (_PATH_FLAGS[field], msg.replace("write the graph elsewhere",
                                                          "give %s another path" % _PATH_FLAGS[field]))
    msg = _OUTPUTS_NOTE.sub("", msg)
    flag = exc.metadata.get("flag") or FLAGS.get(field)
    if flag:
        for prefix in (field + ": ", field[len("options."):] + ": "):
            if field and msg.startswith(prefix):
                msg = msg[len(prefix):]
    msg = _in_cli_words(msg, getattr(args, "source", "") or "", getattr(args, "command", "freeze"))
    if flag == "SOURCE":
        flag = getattr(args, "source", "") or ""
    if flag and not msg.startswith(flag):
        msg = "%s: %s" % (flag, msg)
    return msg


def _other_outputs(exc: TffreezeError) -> str:
    """How to freeze other outputs than the ones a failed freeze chose: --outputs, or for a
    source whose signature decides them (a TF2 SavedModel), another signature."""
    if exc.metadata.get("chosen_with") != "options.signature":
        return "to freeze others, name them: --outputs a,b"
    others = [s for s in exc.metadata.get("signatures", "").split(",") if s]
    if not others:
        return "its signature defines a TF2 SavedModel's outputs, and it has no other"
    return "to freeze others, choose another signature with --signature (its others: %s)" % ", ".join(others)


def _reason(exc: TffreezeError) -> str:
    """' (REASON)' before the status, for an error the server (or this client) gave a reason."""
    reason = exc.reason or ""
    if not reason or reason == "ERROR_REASON_UNSPECIFIED":
        return ""
    return " (%s)" % reason[len("ERROR_REASON_"):] if reason.startswith("ERROR_REASON_") else " (%s)" % reason


def _given_twice(command, argv: List[str], args) -> str:
    """A flag that takes one value given twice (``--outputs a --outputs b`` kept only b), or one
    --bind NAME twice: a usage error, as tffreeze-cs and tffreeze-cpp say it ("" when none is)."""
    single = {o for a in command._actions if type(a) is argparse._StoreAction for o in a.option_strings
              if o.startswith("--")}
    seen: Dict[str, int] = {}
    for word in argv:
        flag = word.split("=", 1)[0]
        if flag in single:
            seen[flag] = seen.get(flag, 0) + 1
            if seen[flag] == 2:
                return "%s is given more than once: give it once" % flag
    names: Dict[str, int] = {}
    for bind in getattr(args, "bind", None) or []:
        name = bind.split("=", 1)[0].strip()
        names[name] = names.get(name, 0) + 1
        if names[name] == 2:
            return "--bind %s is given more than once: give it once" % name
    return ""


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own log lines (an error says what failed)
    if argv[:1] == ["serve"]:  # the server parses its own arguments
        return _cmd_serve(argparse.Namespace(server_args=argv[1:]))
    parser = build_parser()
    _refuse_foreign_flags(parser, argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        _commands(parser)[args.command].unrecognized(extra)
    empty = _empty_path(args)
    if empty:
        _commands(parser)[args.command].error(empty)
    twice = _given_twice(_commands(parser)[args.command], argv, args) or _no_names(argv)
    if twice:
        _commands(parser)[args.command].error(twice)
    handler = {"freeze": _cmd_freeze, "inspect": _cmd_inspect, "run": _cmd_run, "serve": _cmd_serve,
               "local-server": _cmd_local_server}[args.command]
    before = _handle_signals()
    try:
        return _again_on_a_new_local_server(handler, args)
    except TffreezeError as exc:
        print("tffreeze %s: %s%s [%s]" % (args.command, _message(exc, args), _reason(exc), exc.code), file=sys.stderr)
        note = _OUTPUTS_NOTE.search(" ".join(str(exc).split()))
        if note:
            print("the outputs it chose (nothing was frozen): %s; %s" % (note.group(1), _other_outputs(exc)),
                  file=sys.stderr)
        listed = [c for c in exc.metadata.get("candidates", "").split(",") if c]
        if listed and exc.metadata.get("field") == "options.outputs":
            print("to freeze the best candidate, add:  --outputs %s" % listed[0], file=sys.stderr)
            print("all candidates (keep those the model deploys):  --outputs %s" % ",".join(listed),
                  file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tffreeze ... | head`: the reader left; nothing to say
        _drop_stdout()
        return 141
    except OSError as exc:
        print("tffreeze %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tffreeze %s: interrupted" % args.command, file=sys.stderr)
        return 130
    except _Terminated as exc:
        print("tffreeze %s: stopped by %s (nothing left half-written)" % (
            args.command, signal.Signals(exc.signum).name), file=sys.stderr)
        return 128 + exc.signum
    finally:
        for s, h in before.items():
            signal.signal(s, h)


RESTARTS = 2  # how many times a command goes on with a new local server after its own stopped


def _again_on_a_new_local_server(handler, args) -> int:
    """Run the command; when the local server it used stops while it runs (`tffreeze
    local-server stop` lets the commands under way finish for up to its drain; a command that
    outlasts it, or that began its plan after the stop, finds no server), run it again with a
    new local server, saying so. Freeze and inspect only write their results at the end, so
    nothing is left half-done."""
    from .errors import UnavailableError

    for attempt in range(RESTARTS + 1):
        try:
            return handler(args)
        except UnavailableError:
            if args.command not in ("freeze", "inspect") or attempt == RESTARTS:
                raise
            from . import local

            pid = local.went_away()
            if pid is None:
                raise
            print("tffreeze %s: note: the local server (pid %d) stopped during this command; it goes on with a new "
                  "local server" % (args.command, pid), file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def _drop_stdout() -> None:
    """stdout's reader is gone: point it at /dev/null so that the exit's flush is quiet."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def entry() -> None:
    """The ``tffreeze`` console script. After ``freeze`` and ``inspect`` (the commands build
    systems call again and again) the process ends without the interpreter's teardown:
    gRPC's takes ~20 ms of a ~0.1 s re-freeze. Every file is complete and closed by then;
    only stdout and stderr are left to flush. Other commands, and errors, exit normally."""
    argv = sys.argv[1:]
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's --help and usage errors end here: flush before the teardown does
            if not (exc.code is None or isinstance(exc.code, int)):
                raise
            code = exc.code or 0
        sys.stdout.flush()
    except BrokenPipeError:  # argparse's help, or a flush, to a reader that left
        _drop_stdout()
        code = 141
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
