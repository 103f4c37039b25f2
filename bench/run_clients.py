"""Run time per call of each client's `run` verb on the same frozen graph, in one run.

A small classifier (the demo's sample checkpoint, x[?,4] -> probs[?,2]) is frozen with
--target tensorflowsharp (so TF 1.15 loads it too), then each command runs it on the same
batch, REPEAT times, as a build script or a test harness would call it (a new process each
time: start-up, library load, import, session, run, .npy out):

  python     tffreeze run                         (TF 2.x, Python)
  csharp     tffreeze-cs run                      (built-in binding, TF 2.x C API)
  cpp        tffreeze-cpp run                     (TF 2.x C API)
  csharp115  tffreeze-cs run --runtime tf115      (TF 1.15 C API)
  tfsharp    tffreeze-cs run --runtime tf115 --tensorflowsharp DLL  (the real TensorFlowSharp)
  cpp115     tffreeze-cpp run --runtime tf115     (TF 1.15 C API)

It prints the median and spread per command and the ratio to `tffreeze run` (the anchor,
measured in the same run), and checks every command wrote the same outputs.

usage: python bench/run_clients.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    import numpy as np

    import tfsharp
    from conftest import start_server, stop_server
    from tffreeze import FreezeClient

    bin_dir = os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory(prefix="tffreeze-runbench-") as work:
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_sample_checkpoint.py"), work],
                       check=True, capture_output=True)
        srv = start_server(os.path.join(work, "data"))
        try:
            with FreezeClient(srv.target) as client:
                outcome = client.freeze(os.path.join(work, "ckpt"), os.path.join(work, "m.pb"), target="tensorflowsharp")
        finally:
            stop_server(srv)
        with open(os.path.join(work, "m.json"), "w") as fh:
            fh.write(outcome.manifest_json())
        np.save(os.path.join(work, "x.npy"), np.random.RandomState(0).randn(64, 4).astype(np.float32))
        pb, x = os.path.join(work, "m.pb"), os.path.join(work, "x.npy")
        cs = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
        cpp = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")
        commands = {
            "python": [os.path.join(bin_dir, "tffreeze"), "run", pb, "--input", "x:0=" + x],
            "csharp": [cs, "run", pb, "--manifest", os.path.join(work, "m.json"), "--input", "x=" + x],
            "cpp": [cpp, "run", pb, "--manifest", os.path.join(work, "m.json"), "--input", "x=" + x],
        }
        if os.path.exists(tfsharp.TF115_LIB):
            commands["csharp115"] = commands["csharp"] + ["--runtime", "tf115"]
            if tfsharp.sources():
                commands["tfsharp"] = commands["csharp115"] + ["--tensorflowsharp", tfsharp.build_dll(tfsharp.sources())]
            commands["cpp115"] = commands["cpp"] + ["--runtime", "tf115"]
        times, outputs = {}, {}
        for i in range(args.repeat):
            for name, cmd in commands.items():  # interleaved, so drift hits every command alike
                out = os.path.join(work, "%s.npy" % name)
                start = time.perf_counter()
                proc = subprocess.run(cmd + ["--output", ("probs:0=" if name == "python" else "probs=") + out],
                                      capture_output=True, text=True)
                elapsed = time.perf_counter() - start
                if proc.returncode != 0:
                    print("%s failed: %s" % (name, proc.stderr.strip().splitlines()[-1:]), file=sys.stderr)
                    return 1
                times.setdefault(name, []).append(elapsed)
                outputs[name] = np.load(out)
    anchor = statistics.median(times["python"])
    print("run time per call (%d calls each, median [min-max]); ratio = tffreeze run / this" % args.repeat)
    for name, ts in times.items():
        med = statistics.median(ts)
        same = np.allclose(outputs[name], outputs["python"], rtol=1e-5, atol=1e-6)
        print("  %-10s %6.3f s [%.3f-%.3f]  %5.2fx  %s" % (name, med, min(ts), max(ts), anchor / med,
                                                         "outputs equal" if same else "OUTPUTS DIFFER"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
