"""Dump a TensorFlow runtime's op registry as JSON: {op: {attr: default}}.

Run with the runtime to describe, e.g. the TF 1.15 venv from `make tf115` or the TF 2.3.1
one from `make tf23`:
    .tf115/bin/python tools/dump_op_registry.py > server/tffreeze_server/data/tf115_ops.json
    .tf23/bin/python tools/dump_op_registry.py > server/tffreeze_server/data/tf23_ops.json
A default is the attr's AttrValue in protobuf text format, or null when the
attr has none. The --target tensorflowsharp / mlnet checks read these files.
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
    # TF 2.x: every op the C library registered (kernels or not), as TF_GetAllOpList gives it
    from tensorflow.python.client import pywrap_tf_session as c_api

    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
    return {op.name: op for op in op_list.op}


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
    main()
