"""TensorFlow's C++ log lines (absl's start-up warning, oneDNN, CUDA probing on a CPU machine,
CPU features) go to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says. The client's ``run``
and the server's workers keep them off the user's terminal unless $TFFREEZE_VERBOSE is set."""

from __future__ import annotations

import contextlib
import os


def verbose() -> bool:
    """TensorFlow's own log lines are shown only with $TFFREEZE_VERBOSE=1 (or a command's --verbose)."""
    return os.environ.get("TFFREEZE_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def native_lines_off():
    """Descriptor 2 on /dev/null while TensorFlow works, unless verbose; an error raised inside is
    reported after it is back."""
    if verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
