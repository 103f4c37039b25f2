"""Benchmark: what --format costs beside the plain freeze (the anchor, measured in this run).

For each model (conv + batch norm, an LSTM with TF1 control flow, the TF2 one with
--input-shape) and each format, a freeze that runs the engine every time (the server's
result cache off) through the Python CLI; the median of --repeat runs. Conversion includes
running the converted model in its runtime and comparing it with the frozen graph, which
is why it costs more than the conversion alone.

usage: python bench/formats.py [--repeat 5]   (make bench-formats)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

from freeze_vs_anchor import median_of, timed  # noqa: E402

TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")
# what tests/integration/test_formats.py shows refused, naming the op: nothing to time
REFUSED = {("onnx", "LSTM, TF2 control flow"), ("tflite", "LSTM, TF1 control flow")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    import models
    from conftest import start_server, stop_server

    with tempfile.TemporaryDirectory(prefix="tffreeze-bench-formats-") as work:
        cases = [("conv + batch norm", models.training_graph(os.path.join(work, "conv"), True).directory, []),
                 ("LSTM, TF1 control flow", models.lstm(os.path.join(work, "lstm1"), True).directory, []),
                 ("LSTM, TF2 control flow", models.lstm(os.path.join(work, "lstm2"), False).directory,
                  ["--input-shape", "x=4,6,3"])]
        server = start_server(os.path.join(work, "data"), ["--no-result-cache"])
        try:
            print("%-24s %-9s %9s %8s" % ("model", "format", "median s", "x plain"))
            for name, ckpt, extra in cases:
                plain = None
                for fmt in ("graphdef", "onnx", "tflite"):
                    if (fmt, name) in REFUSED:
                        print("%-24s %-9s %9s" % (name, fmt, "refused"))
                        continue
                    cmd = [TFFREEZE, "freeze", ckpt, "-o", os.path.join(work, "out." + fmt), "--server",
                           server.target, "--quiet", "--format", fmt] + extra
                    timed(cmd)  # warm: the upload and the worker's first import of the converter
                    seconds, _ = median_of([timed(cmd) for _ in range(args.repeat)])
                    plain = seconds if fmt == "graphdef" else plain
                    print("%-24s %-9s %9.2f %8.1f" % (name, fmt, seconds, seconds / plain))
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
