"""The generation engine: one worker thread, one model, a bounded queue of jobs.

llama.cpp contexts are not thread safe and a device runs one generation at a time, so a single
worker thread owns the model (and the safety filter's calls) and runs jobs in order. The
asyncio server submits jobs and reads their results through a :class:`Pipe`:

- **Admission** is synchronous and bounded: :meth:`Engine.submit` refuses a job when
  ``max_queue`` jobs already wait (``"full"``, answered 429) or the agent is shutting down.
- **Streaming** costs no thread hop per token: the worker appends text to the job's pipe
  under a short lock and wakes the event loop only when the reader is waiting; a reader that
  was busy writing collects every piece that arrived meanwhile in one batch.
- **Cancellation**: :meth:`Engine.cancel` marks the job; a waiting job leaves the queue at once,
  a running one stops before its next token (the worker closes the runtime's token stream),
  so the next job starts promptly.
- **Swap**: :meth:`Engine.swap` hands the worker a new model between two jobs; the worker
  unloads the old one. A job runs start to finish on one model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeward.device_agents._generate import (
    Outcome,
    Prompt,
    refusal_text,
    screen_prompt,
    stream_filtered,
)
from edgeward.device_agents._log import LOGGER, log_event
from edgeward.device_agents._metrics import Metrics
from edgeward.device_agents._verified import LoadedModel
from edgeward.errors import EdgewardError, RuntimeBackendError
from edgeward.runtimes import Embeddings, SamplingParams
from edgeward.safety import Pseudonyms, SafetyFilter, Stage, Verdict

__all__ = ["Admission", "Cancelled", "Embedded", "Engine", "Failed", "Finished", "Job", "Pipe",
           "Refused"]

Admission = Literal["ok", "full", "closed"]
#: Least time between two wake-ups of a stream's reader while text keeps coming (seconds).
COALESCE_S = 0.02


@dataclass(frozen=True)
class Refused:
    """The prompt was blocked by the safety filter; ``text`` is the refusal to show."""

    verdict: Verdict
    text: str


@dataclass(frozen=True)
class Finished:
    """The generation ended (see :class:`~edgeward.device_agents._generate.Outcome`)."""

    outcome: Outcome


@dataclass(frozen=True)
class Embedded:
    """The embeddings were computed."""

    embeddings: Embeddings


@dataclass(frozen=True)
class Failed:
    """The job failed; ``error`` is what to report."""

    error: EdgewardError


@dataclass(frozen=True)
class Cancelled:
    """The job was cancelled (``client_disconnected`` or ``shutting_down``)."""

    reason: str


Event = str | Refused | Finished | Embedded | Failed | Cancelled


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Pipe:
    """Events of one job, from the worker thread to the asyncio reader, batched.

    The reader is woken for the first piece of text at once, then at most once every
    :data:`COALESCE_S` while pieces keep coming faster than that (the pieces in between ride
    along with the next wake-up, so a held piece waits at most one token), and at once for the
    event that ends the job. A slow model (a token every 20 ms or more) wakes the reader for
    every token; a fast one costs the event loop ~50 wake-ups a second, not one per token.
    """

    __slots__ = ("_eager", "_items", "_last_wake", "_lock", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, eager: bool = True) -> None:
        """``eager``: wake the reader for text as it comes (streaming); otherwise only for
        the event that ends the job (a whole response is sent at once anyway)."""
        self._loop = loop
        self._eager = eager
        self._lock = threading.Lock()
        self._items: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self._last_wake = 0.0

    def put(self, item: Event) -> None:
        """Add an event (any thread); wakes the reader if it waits and it is time to."""
        with self._lock:
            self._items.append(item)
            waiter = self._waiter
            if waiter is None:
                return
            if isinstance(item, str):
                if not self._eager:
                    return
                now = time.perf_counter()
                if now - self._last_wake < COALESCE_S:
                    return
                self._last_wake = now
            self._waiter = None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
            self._loop.call_soon_threadsafe(_wake, waiter)

    async def get(self) -> list[Event]:
        """Every event that arrived since the last call (waits for at least one)."""
        while True:
            with self._lock:
                if self._items:
                    items, self._items = self._items, []
                    return items
                waiter = self._waiter = self._loop.create_future()
            await waiter


@dataclass(eq=False)
class Job:
    """One request for the model: a generation (``prompt``) or embeddings (``texts``)."""

    pipe: Pipe
    safety: SafetyFilter
    prompt: Prompt | None = None
    params: SamplingParams | None = None
    texts: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    cancel_reason: str = ""
    submitted_at: float = field(default_factory=time.perf_counter)

    def is_cancelled(self) -> bool:
        """Polled by the worker before each token."""
        return self.cancelled


@dataclass(eq=False)
class _Swap:
    model: LoadedModel
    done: threading.Event = field(default_factory=threading.Event)


class IdleTaskAbandoned(Exception):  # noqa: N818 - control flow inside the engine
    """An idle task gave way: the model is being swapped or the agent is stopping."""


class Engine:
    """Runs jobs on one model, one at a time, on a worker thread.

    Args:
        model: the model to serve (the engine closes it when it is swapped out or stopped).
        max_queue: jobs that may wait while one runs.
        metrics: where figures go.
    """

    def __init__(self, model: LoadedModel, *, max_queue: int, metrics: Metrics) -> None:
        self.max_queue = max_queue
        self._model = model
        self._metrics = metrics
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._swaps: deque[_Swap] = deque()
        self._idle: deque[tuple[Callable[[Any, Callable[[], None]], None], bool]] = deque()
        self._outstanding = 0  # admitted, not finished: waiting + running
        self._running: Job | None = None
        self._admitting = True
        self._stopping = False
        self._service_s = 1.0  # moving average of a job's run time, for Retry-After
        self._thread = threading.Thread(target=self._work, name="edgeward-generation",
                                        daemon=True)
        metrics.live("edgeward_agent_queue_depth", lambda: [((), float(self.queue_depth))])
        metrics.live("edgeward_agent_queue_capacity", lambda: [((), float(self.max_queue))])
        metrics.live("edgeward_agent_busy",
                     lambda: [((), 1.0 if self._running is not None else 0.0)])

    @property
    def model(self) -> LoadedModel:
        """The model jobs run on now."""
        return self._model

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def submit(self, job: Job) -> Admission:
        """Queue ``job``: ``"ok"``, ``"full"`` (``max_queue`` waiting) or ``"closed"``."""
        with self._cond:
            if not self._admitting:
                return "closed"
            if self._outstanding > self.max_queue:
                return "full"
            self._outstanding += 1
            self._queue.append(job)
            self._cond.notify()
        return "ok"

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, 1..60."""
        return max(1, min(60, math.ceil(self._service_s * (self.queue_depth + 1))))

    def cancel(self, job: Job, reason: str = "client_disconnected") -> None:
        """Stop ``job``: drop it from the queue, or stop its generation before the next token.

        Its reader gets a :class:`Cancelled` event at once (a stream ends now, not after the
        token being computed). A job that already finished is left alone.
        """
        if job.cancelled:
            return
        job.cancel_reason = reason
        job.cancelled = True
        with self._cond:
            try:
                self._queue.remove(job)
                queued = True
            except ValueError:
                queued = False  # running (the worker stops it) or finished
            if queued:
                self._outstanding -= 1
            elif job is not self._running:
                return
        job.pipe.put(Cancelled(reason))
        if queued:
            self._metrics.inc("edgeward_agent_generations_total", finish_reason="cancelled")

    def stop_admitting(self) -> None:
        """Refuse new jobs from now on (shutdown)."""
        with self._cond:
            self._admitting = False

    def cancel_all(self, reason: str) -> int:
        """Cancel every waiting and running job; returns how many there were."""
        with self._cond:
            jobs = [*([self._running] if self._running is not None else []), *self._queue]
        for job in jobs:
            self.cancel(job, reason)
        return len(jobs)

    def swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from the next job on; returns once the old one is unloaded."""
        swap = _Swap(model)
        with self._cond:
            if self._stopping:
                raise RuntimeBackendError("the agent is shutting down; not swapping models")
            self._swaps.append(swap)
            self._cond.notify()
        swap.done.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is left, stop the worker and close the model."""
        self.stop_admitting()
        self.cancel_all("shutting_down")
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._model.close()

    # -- the worker ------------------------------------------------------------------------

    def run_idle(self, task: Callable[[Any, Callable[[], None]], None], first: bool) -> None:
        """Run ``task(runtime, between)`` on the worker while no request waits (``first``:
        before any queued request, as the check of a newly loaded model). ``between()``, which
        the task calls between two short steps, serves the requests that arrived meanwhile, so
        none waits longer than one step; it raises :class:`IdleTaskAbandoned` when a model swap
        is pending (the task's model is about to go)."""
        with self._cond:
            if first:
                self._idle.appendleft((task, True))
            else:
                self._idle.append((task, False))
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._swaps and not self._queue and not self._idle \
                        and not self._stopping:
                    self._cond.wait()
                task = None
                if self._swaps:
                    swap, job = self._swaps.popleft(), None
                elif self._idle and not self._stopping and (self._idle[0][1]
                                                            or not self._queue):
                    swap, job = None, None
                    task = self._idle.popleft()[0]
                elif self._queue:
                    swap, job = None, self._queue.popleft()
                    self._running = job
                else:
                    return
            if swap is not None:
                self._do_swap(swap)
                continue
            if task is not None:
                self._run_task(task)
                continue
            assert job is not None
            self._run_job(job)

    def _run_job(self, job: Job) -> None:
        started = time.perf_counter()
        end: Event
        try:
            end = self._execute(job, started)
        except BaseException:  # noqa: BLE001 - the worker must outlive any bug
            LOGGER.exception("generation worker: unexpected error")
            end = Failed(RuntimeBackendError("internal error in the agent"))
        elapsed = time.perf_counter() - started
        self._service_s = 0.8 * self._service_s + 0.2 * elapsed
        with self._cond:  # free the slot before the client hears the end: its next
            self._outstanding -= 1  # request must not find the queue still full
            self._running = None
        job.pipe.put(end)

    def _run_task(self, task: Callable[[Any, Callable[[], None]], None]) -> None:
        try:
            task(self._model.runtime, self._between)
        except IdleTaskAbandoned:
            pass
        except BaseException:  # noqa: BLE001 - the worker must outlive any bug
            LOGGER.exception("generation worker: idle task failed")

    def _between(self) -> None:
        """Between two steps of an idle task: serve what waits; give up for a swap."""
        while True:
            with self._cond:
                if self._swaps or self._stopping:
                    raise IdleTaskAbandoned
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._running = job
            self._run_job(job)

    def _do_swap(self, swap: _Swap) -> None:
        old, self._model = self._model, swap.model
        try:
            old.close()
        finally:
            swap.done.set()

    def _on_verdict(self, job: Job, stage: Stage, verdict: Verdict) -> None:
        m = self._metrics
        m.inc("edgeward_agent_safety_verdicts_total", stage=stage, action=verdict.action)
        for cat in verdict.categories:
            m.inc("edgeward_agent_safety_categories_total", stage=stage, category=cat)
        if verdict.action == "block":
            log_event(logging.WARNING, "safety_block", stage=stage,
                      categories=",".join(verdict.categories) or "unspecified",
                      request_id=job.context.get("request_id"))

    def _execute(self, job: Job, started: float) -> Event:
        """Run ``job``, putting its text into its pipe; returns the event that ends it."""
        m = self._metrics
        m.observe("edgeward_agent_queue_wait_seconds", started - job.submitted_at)
        runtime = self._model.runtime
        if job.cancelled:  # cancelled between leaving the queue and starting
            m.inc("edgeward_agent_generations_total", finish_reason="cancelled")
            return Cancelled(job.cancel_reason)
        if job.prompt is None:
            try:
                return Embedded(runtime.embed(list(job.texts)))
            except EdgewardError as e:
                return Failed(e)
        return self._generate(job, job.prompt, started)

    def _generate(self, job: Job, prompt: Prompt, started: float) -> Event:
        m = self._metrics

        def on_verdict(stage: Stage, verdict: Verdict) -> None:
            self._on_verdict(job, stage, verdict)

        # One conversation's placeholders: the same [NAME_1] in every message and the answer
        # (used when the policy asks for pseudonyms). It lives as long as this request.
        pseudonyms = Pseudonyms()
        try:
            prompt, blocked = screen_prompt(job.safety, prompt, context=job.context,
                                            on_verdict=on_verdict, pseudonyms=pseudonyms)
            if blocked is not None:
                return Refused(blocked, refusal_text("prompt", blocked, job.safety))
            checker = job.safety.output_stream(context=job.context, pseudonyms=pseudonyms)
            outcome = stream_filtered(self._model.runtime, prompt, job.params or SamplingParams(),
                                      checker=checker, emit=job.pipe.put,
                                      cancelled=job.is_cancelled, on_verdict=on_verdict)
        except EdgewardError as e:
            m.inc("edgeward_agent_generations_total", finish_reason="error")
            return Failed(e)
        s = outcome.stats
        m.inc("edgeward_agent_prompt_tokens_total", s.prompt_tokens)
        m.inc("edgeward_agent_completion_tokens_total", s.completion_tokens)
        m.inc("edgeward_agent_generations_total", finish_reason=outcome.finish_reason)
        if s.time_to_first_token_s is not None:
            m.observe("edgeward_agent_time_to_first_token_seconds", s.time_to_first_token_s)
        if s.decode_tokens_per_s is not None:
            m.set("edgeward_agent_decode_tokens_per_second", s.decode_tokens_per_s)
        log_event(logging.INFO, "generation", request_id=job.context.get("request_id"),
                  endpoint=job.context.get("endpoint"), finish_reason=outcome.finish_reason,
                  prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                  queue_wait_ms=round((started - job.submitted_at) * 1000, 1),
                  ttft_ms=None if s.time_to_first_token_s is None
                  else round(s.time_to_first_token_s * 1000, 1),
                  decode_tps=None if s.decode_tokens_per_s is None
                  else round(s.decode_tokens_per_s, 1))
        if outcome.finish_reason == "cancelled":
            return Cancelled(job.cancel_reason or "cancelled")
        return Finished(outcome)
