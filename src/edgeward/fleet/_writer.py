"""The manager's writer thread: commits batches to the store, off the network thread.

A commit with ``synchronous=FULL`` waits for the disk (milliseconds); on its own thread that
wait overlaps with receiving and verifying the next messages. Batches queued while a commit
runs are merged into the next transaction, so batches grow with the load. After a commit the
writer hands the batch's MQTT message ids back for acknowledgement; the network thread sends
them (paho is not driven from two threads).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeward.errors import StoreError
from edgeward.fleet._alerts import AlertEngine
from edgeward.fleet._ingest import Ingestor
from edgeward.fleet._store import Accepted, Store

__all__ = ["Batch", "Writer"]

log = logging.getLogger("edgeward.fleet")
_RETRIES = 3
_QUEUE_BATCHES = 8  # batches waiting for the writer before the network thread waits too


@dataclass
class Batch:
    """Messages to store together, and the MQTT ids to acknowledge once they are.

    Attributes:
        generation: the connection they came on (acks for an older one are dropped: the
            broker re-sends those messages after the reconnect, and the store ignores copies).
    """

    generation: int
    accepted: list[Accepted] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class Writer:
    """Writes batches on its own thread; see the module docstring.

    Args:
        store: the store (only this thread writes to it).
        ingestor: whose high-water marks and store counters the results update.
        alerts: turns stored messages into alerts.
        manager: this manager's id (recorded with each row).
        clock: epoch seconds.
    """

    def __init__(self, store: Store, ingestor: Ingestor, alerts: AlertEngine, *, manager: str,
                 clock: Callable[[], float]) -> None:
        self.store, self.ingestor, self.alerts = store, ingestor, alerts
        self.manager, self._clock = manager, clock
        self._queue: queue.Queue[Batch | None] = queue.Queue(_QUEUE_BATCHES)
        self.acks: deque[tuple[int, list[int]]] = deque()  # (generation, mids)
        self.failed = threading.Event()  # a batch could not be stored: reconnect
        self._thread = threading.Thread(target=self._run, name="edgeward-fleet-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Queue a batch (blocks while the writer is ``_QUEUE_BATCHES`` behind)."""
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every submitted batch is written (or failed)."""
        self._queue.join()

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                self._queue.task_done()
                return
            batches, done = [batch], False
            while not done:  # merge what queued up meanwhile: bigger transactions under load
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                else:
                    batches.append(more)
            try:
                self._write(batches)
            finally:
                for _ in range(len(batches) + done):
                    self._queue.task_done()
            if done:
                return

    def _write(self, batches: list[Batch]) -> None:
        accepted = [a for b in batches for a in b.accepted]
        if accepted and not self._commit(accepted):
            self.ingestor.store_counters["store_errors"] += len(accepted)
            self.failed.set()
            return
        for b in batches:
            if b.acks:
                self.acks.append((b.generation, b.acks))

    def _commit(self, accepted: list[Accepted]) -> bool:
        for attempt in range(_RETRIES):
            try:
                outcome = self.store.write(accepted, manager=self.manager, now=self._clock())
                break
            except StoreError as e:
                log.warning("store write failed (attempt %d of %d): %s", attempt + 1,
                            _RETRIES, e)
                time.sleep(0.2 * 2**attempt)
        else:
            log.error("%d message(s) not stored; they stay unacknowledged so the broker "
                      "re-sends them after a reconnect", len(accepted))
            return False
        self.ingestor.settle(outcome)
        for alert in self.alerts.observe([*outcome.new, *outcome.transitions]):
            log.warning("ALERT %s %s: %s", alert.device_id, alert.kind, alert.detail)
            try:
                self.store.add_alert(alert, manager=self.manager)
            except StoreError as e:
                log.error("cannot record the alert: %s", e)
        return True
