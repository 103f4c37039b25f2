"""Dump a TensorFlow runtime's op registry as JSON: {op: {attr: default}}.

Run with the runtime to describe, e.g. the TF 1.15 venv from `make tf115`:
    .tf115/bin/python tools/dump_op_registry.py > server/tffreeze_server/data/tf115_ops.json
A default is the attr's AttrValue in protobuf text format, or null when the
attr has none. The --target tensorflowsharp check reads this file.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from google.protobuf import text_format  # noqa: E402
from tensorflow.core.framework import op_def_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402
import tensorflow as tf  # noqa: E402


def registry():
    get = getattr(op_def_registry, "get_registered_ops", None)
    if get is not None:  # TF 1.x
        return get()
    from tensorflow.python.framework import ops  # noqa: F401
    from tensorflow.python.util import _pywrap_utils  # noqa: F401
    raise SystemExit("use TensorFlow 1.x's registry (get_registered_ops)")


def main():
    ops = {}
    for name, op in sorted(registry().items()):
        attrs = {}
        for attr in op.attr:
            attrs[attr.name] = text_format.MessageToString(attr.default_value, as_one_line=True) \
                if attr.HasField("default_value") else None
        ops[name] = attrs
    json.dump({"tensorflow_version": tf.__version__, "ops": ops}, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    del op_def_pb2
    main()
