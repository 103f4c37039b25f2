"""sha256 computed beside the I/O it checks: blocks go to a second thread, in order
(hashlib releases the GIL on large blocks), so hashing overlaps reading and writing.
Used where a stream of bytes is written and its digest is needed at the end: the
frozen graph as it is spliced (worker), an upload as it arrives (server)."""

from __future__ import annotations

import hashlib
import queue
import threading


class BackgroundSha256:
    """sha256 of the blocks given to update(), in order, computed by a second thread
    (hashlib releases the GIL on large blocks). Always finish with hexdigest()."""

    def __init__(self):
        self._h = hashlib.sha256()
        self._q: "queue.Queue" = queue.Queue(maxsize=16)  # bounded: a few chunks in flight
        self._thread = threading.Thread(target=self._run, name="tffreeze-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            block = self._q.get()
            if block is None:
                return
            self._h.update(block)

    def update(self, block: bytes) -> None:
        self._q.put(block)

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()

    def close(self) -> None:
        """Stop the thread (also when writing failed half-way); idempotent."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


__all__ = ["BackgroundSha256"]
