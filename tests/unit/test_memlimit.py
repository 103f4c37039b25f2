"""The task memory limit's evidence and words (server/tffreeze_server/memlimit.py), in a real
worker pool: a task whose error says an allocation failed, or whose process dies of a signal
after growing near its budget, is RESOURCE_EXHAUSTED / MEMORY_LIMIT naming the limit and the
flag that raises it (the local server's when the pool is the local server's); a crash far
from the limit stays the crash it is."""

from __future__ import annotations

import ctypes

import pytest

from tffreeze_server import memlimit
from tffreeze_server.core.errors import FailedPrecondition, ResourceExhausted
from tffreeze_server.workers import WorkerPool

BUDGET = 256 << 20


def task(kind, payload, progress):
    """Grow by ``grow`` bytes (touched), then crash or fail as ``kind`` says."""
    if kind == "warm":
        return "warm"
    blob = bytearray(b"\1") * payload.get("grow", 0)
    if kind == "segv":
        ctypes.string_at(0)  # a null read, as code that did not check a failed allocation does
    if kind == "bad_alloc":
        raise FailedPrecondition("tf2onnx cannot convert this graph: std::bad_alloc", "ERROR_REASON_CONVERSION_FAILED",
                                 format="onnx")
    if kind == "serialize":  # what a converter says when protobuf's allocation fails at the limit
        raise FailedPrecondition("tf2onnx cannot convert this graph: Failed to serialize proto",
                                 "ERROR_REASON_CONVERSION_FAILED", format="onnx", **payload.get("metadata", {}))
    return len(blob)


def _run(pool, kind, payload=None):
    return list(pool.run(kind, payload or {}))


@pytest.fixture(scope="module")
def pools():
    plain = WorkerPool(size=1, target="test_memlimit:task", task_memory=BUDGET).start()
    local = WorkerPool(size=1, target="test_memlimit:task", task_memory=BUDGET, local=True).start()
    yield plain, local
    plain.close()
    local.close()


def test_a_crash_near_the_limit_is_the_limit_and_one_far_from_it_a_crash(pools):
    plain, local = pools
    with pytest.raises(ResourceExhausted) as err:
        _run(plain, "segv", {"grow": 200 << 20})
    e = err.value
    assert e.reason == "ERROR_REASON_MEMORY_LIMIT" and e.metadata["limit"] == str(BUDGET), e.message
    assert "most likely" in e.message and "SIGSEGV" in e.message and "256.0 MiB (268435456 bytes)" in e.message
    assert "tffreeze serve --task-memory-bytes 2G" in e.message and "upload" not in e.message.split("limit")[0]
    assert e.metadata["signal"] == "signal SIGSEGV" and int(e.metadata["grew"]) >= 150 << 20

    with pytest.raises(FailedPrecondition) as err:  # far from the limit: the crash it is
        _run(plain, "segv", {"grow": 8 << 20})
    assert err.value.reason == "ERROR_REASON_WORKER_CRASHED", err.value.message

    with pytest.raises(ResourceExhausted) as err:
        _run(local, "segv", {"grow": 200 << 20})
    assert "tffreeze local-server start --task-memory-bytes 2G" in err.value.message
    assert "$TFFREEZE_LOCAL_TASK_MEMORY_BYTES=2G" in err.value.message and "tffreeze serve" not in err.value.message
    assert _run(plain, "ok", {"grow": 1 << 20})[-1] == ("result", 1 << 20)  # the pool keeps serving


def test_an_error_saying_an_allocation_failed_is_the_limit(pools):
    plain, _ = pools
    with pytest.raises(ResourceExhausted) as err:
        _run(plain, "bad_alloc")
    e = err.value
    assert e.reason == "ERROR_REASON_MEMORY_LIMIT", e.message
    assert "an allocation failed (tf2onnx cannot convert this graph: std::bad_alloc)" in e.message
    assert e.metadata["format"] == "onnx" and e.metadata["limit"] == str(BUDGET)
    with pytest.raises(ResourceExhausted) as err:  # Python's MemoryError past the kernel's limit
        _run(plain, "ok", {"grow": 1 << 30})
    assert err.value.reason == "ERROR_REASON_MEMORY_LIMIT" and "--task-memory-bytes" in err.value.message


def test_a_conversion_that_fails_at_the_limit_in_other_words_is_the_limit(pools):
    """A converter whose allocation fails at the limit may say so in words of its own ("Failed to
    serialize proto", or nothing): at nine tenths of the budget, that is the limit ("most likely");
    far from it, or naming an op it cannot convert, it is the conversion's refusal it says."""
    plain, local = pools
    with pytest.raises(ResourceExhausted) as err:
        _run(local, "serialize", {"grow": 240 << 20})
    e = err.value
    assert e.reason == "ERROR_REASON_MEMORY_LIMIT" and "most likely" in e.message, e.message
    assert "its conversion failed (tf2onnx cannot convert this graph: Failed to serialize proto) after the task " \
           "grew by" in e.message, e.message
    assert "--format onnx" not in e.message or "64x" in e.message
    assert "tffreeze local-server start --task-memory-bytes" in e.message and e.metadata["format"] == "onnx"
    with pytest.raises(FailedPrecondition) as err:
        _run(plain, "serialize", {"grow": 8 << 20})
    assert err.value.reason == "ERROR_REASON_CONVERSION_FAILED", err.value.message
    with pytest.raises(FailedPrecondition) as err:
        _run(plain, "serialize", {"grow": 240 << 20, "metadata": {"op": "Erfinv", "node": "e"}})
    assert err.value.reason == "ERROR_REASON_CONVERSION_FAILED", err.value.message


def test_words():
    assert memlimit.suggestion(3 << 30, 196 << 20, True, "") == (
        4 << 30, "--verify needs about 16x the checkpoint's size (this upload: 196.0 MiB): try 4G")
    assert memlimit.suggestion(3 << 30, 196 << 20, False, "onnx")[0] == 13 << 30  # 64x: MLPs measured up to 61x
    assert memlimit.suggestion(3 << 30, 286 << 20, False, "onnx")[0] >= 17465 << 20  # what tf2onnx took for 286 MiB
    assert memlimit.suggestion(3 << 30, 0, False, "")[0] == 4 << 30  # always more than now
    assert memlimit.telling_sentence(
        "the engine could not process this graph while verifying (RuntimeError: can't start new thread). This "
        "graph uses something tffreeze does not handle yet.") == (
        "the engine could not process this graph while verifying (RuntimeError: can't start new thread)")
    assert memlimit.crashed_near_limit(2450 << 10, 200 << 10, 2560 << 20)  # measured: --verify of 188 MB at 2.5G
    assert not memlimit.crashed_near_limit(500 << 10, 200 << 10, 3 << 30)
    assert not memlimit.crashed_near_limit(500 << 10, 200 << 10, 0)
    assert not memlimit.allocation_failed("x (y) would build 10 elements", "ERROR_REASON_MEMORY_LIMIT", {"node": "x"})
    assert memlimit.local_bound_message("a quarter of tffreeze serve --task-memory-bytes)") == (
        "a quarter of tffreeze local-server start --task-memory-bytes, or $TFFREEZE_LOCAL_TASK_MEMORY_BYTES)")
