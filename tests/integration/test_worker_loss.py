"""Warm workers killed from outside the call (an operator's kill, the system's OOM killer
choosing a worker): the real server never hands a call to a dead worker, and a call whose
worker dies under it is retried once on a healthy one."""

from __future__ import annotations

import os
import signal
import threading
import time

import attacks
import models
import proctree
from conftest import start_server, stop_server
from tffreeze import FreezeClient


def _warm_workers(srv, count: int):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        warm = proctree.split_workers(srv.proc.pid)[0]
        if len(warm) == count:
            return warm
        time.sleep(0.2)
    raise AssertionError("the server never had %d warm workers" % count)


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_idle_workers_killed_then_every_call_still_works(tmp_path):
    ckpt = models.dense(str(tmp_path / "dense"), True)
    srv = start_server(str(tmp_path / "data"), ["--workers", "2"])
    try:
        with FreezeClient(srv.target) as c:
            first = c.freeze(ckpt.directory)
            _kill(_warm_workers(srv, 2))  # both idle workers, at once
            time.sleep(0.5)
            for _ in range(3):  # no call meets a dead worker
                again = c.freeze(ckpt.directory, outputs=["y"])
                assert again.result.sha256 == first.result.sha256
        assert "WORKER_CRASHED" not in "".join(srv.log)
    finally:
        assert stop_server(srv) == 0


def test_workers_killed_in_the_middle_of_a_freeze_the_freeze_and_the_next_succeed(tmp_path):
    directory = attacks.wide_graph(str(tmp_path / "slow"), 300_000, chain=True)  # a freeze of some seconds
    ckpt = models.dense(str(tmp_path / "dense"), True)
    srv = start_server(str(tmp_path / "data"), ["--workers", "2"])
    try:
        warm = _warm_workers(srv, 2)
        result, error = [], []

        def freeze():
            try:
                with FreezeClient(srv.target) as c:
                    result.append(c.freeze(directory, outputs=["y"]))
            except Exception as exc:  # noqa: BLE001 - reported below
                error.append(exc)

        caller = threading.Thread(target=freeze)
        caller.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not proctree.split_workers(srv.proc.pid)[1]:
            time.sleep(0.1)
        time.sleep(1.0)  # the task is running (uploaded, staged, loading)
        _kill(warm)  # both warm workers: the busy one and the idle one
        caller.join(300)
        assert not error, error
        assert result and result[0].manifest["outputs"][0]["name"] == "y:0"
        assert "retrying the call on another worker" in "".join(srv.log)  # it was lost, and retried
        with FreezeClient(srv.target) as c:
            assert c.freeze(ckpt.directory).manifest["outputs"][0]["name"] == "y:0"
        assert not set(warm) & set(proctree.workers(srv.proc.pid))  # the killed ones were replaced
    finally:
        assert stop_server(srv) == 0
