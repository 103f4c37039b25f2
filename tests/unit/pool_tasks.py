"""Worker tasks for the pool tests: they crash, hang, fail and succeed on demand."""

import os
import time

from tffreeze_server.core.errors import InvalidArgument


def handle(kind, payload, progress):
    if kind == "warm":
        return "warm"
    if kind == "echo":
        progress("working", "halfway", 0.5)
        return {"pid": os.getpid(), "payload": payload}
    if kind == "abort":
        os.abort()  # a crash inside native code, as a TensorFlow CHECK failure would be
    if kind == "sleep":
        time.sleep(payload["seconds"])
        return "slept"
    if kind == "invalid":
        raise InvalidArgument("that input is bad; fix it")
    if kind == "bug":
        raise RuntimeError("unexpected")
    raise ValueError(kind)
