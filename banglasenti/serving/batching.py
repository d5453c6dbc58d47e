"""Dynamic batching: the texts of requests that arrive together are predicted in one call.

One worker thread owns the model. A request's texts join a queue; the worker takes the oldest request, waits until
`max_wait_ms` after its arrival for more (or until `max_batch_texts` texts are waiting), predicts every text it took
in one call (packed or bucketed like `python -m banglasenti.serving.predict`), and hands each request its own
results in order. A prediction that raises fails the requests of that batch only. The queue is bounded: a request
that would take it past `max_queued_texts` is refused at once (`QueueFull`; the server answers 503 with
Retry-After). While a batch runs the next one gathers, so under load requests batch without any wait; the default
wait is 0 (measured with benchmarks/serving.py on 2 cores: a 2 ms wait cost a lone client a quarter of its texts/s
and gained nothing measurable at concurrency 16 to 64).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")

MAX_BATCH_ENV = "BANGLASENTI_SERVE_MAX_BATCH"
MAX_WAIT_ENV = "BANGLASENTI_SERVE_BATCH_WAIT_MS"
MAX_QUEUE_ENV = "BANGLASENTI_SERVE_MAX_QUEUE"


class QueueFull(RuntimeError):
    """The queue holds too many texts to take this request now."""


ENV_NAMES = {"max_batch_texts": MAX_BATCH_ENV, "max_wait_ms": MAX_WAIT_ENV, "max_queued_texts": MAX_QUEUE_ENV}


@dataclass(frozen=True)
class BatchSettings:
    """How requests are gathered into batches."""

    max_batch_texts: int = 64
    max_wait_ms: float = 0.0
    max_queued_texts: int = 2048

    def __post_init__(self) -> None:
        for key in ("max_batch_texts", "max_queued_texts"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: expected an integer of at least 1, got {value!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise ValueError(f"max_wait_ms: expected a finite number of at least 0, got {wait!r}")

    @classmethod
    def from_sources(cls, recorded: Any = None, env: dict[str, str] | None = None) -> BatchSettings:
        """The defaults, then what the model's serving.json records (`batching`), then the environment; a bad value
        is a ValueError naming its source."""
        env = dict(os.environ) if env is None else env
        if recorded is not None and not isinstance(recorded, dict):
            raise ValueError(f"serving.json batching: expected an object, got {type(recorded).__name__}")
        values: dict[str, Any] = {}
        for key, value in (recorded or {}).items():
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"serving.json batching.{key}: unknown setting")
            try:
                cls(**{key: value})
            except ValueError as err:
                raise ValueError(f"serving.json batching.{err}") from None
            values[key] = value
        for key, name in ENV_NAMES.items():
            if not env.get(name):
                continue
            kind = float if key == "max_wait_ms" else int
            try:
                values[key] = kind(env[name])
                cls(**{key: values[key]})
            except ValueError:
                expected = "a finite number of at least 0" if kind is float else "an integer of at least 1"
                raise ValueError(f"{name}={env[name]!r}: expected {expected}") from None
        return cls(**values)


@dataclass
class _Request(Generic[R]):
    texts: Sequence[str]
    arrived: float
    future: Future[list[R]] = field(default_factory=Future)


class DynamicBatcher(Generic[R]):
    """Predicts the texts of concurrent requests together: `submit` returns a future of the request's results."""

    def __init__(self, predict: Callable[[list[str]], list[R]], settings: BatchSettings | None = None):
        self.predict = predict
        self.settings = settings or BatchSettings()
        self._pending: deque[_Request[R]] = deque()
        self._queued = 0
        self._changed = threading.Condition()
        self._stopped = False
        self.batches: list[int] = []  # texts per batch, the latest 1000 (for the health route and tests)
        self._worker = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._worker.start()

    def submit(self, texts: Sequence[str]) -> Future[list[R]]:
        """Queue a request's texts; QueueFull when they do not fit."""
        request: _Request[R] = _Request(list(texts), time.monotonic())
        with self._changed:
            if self._stopped:
                raise QueueFull("the server is stopping")
            if self._queued + len(request.texts) > self.settings.max_queued_texts:
                raise QueueFull(f"{self._queued} texts queued (at most {self.settings.max_queued_texts})")
            self._pending.append(request)
            self._queued += len(request.texts)
            self._changed.notify()
        return request.future

    def report(self) -> dict[str, Any]:
        """The settings, and the texts per batch of the latest batches (at most 1000)."""
        sizes = list(self.batches)
        mean = round(sum(sizes) / len(sizes), 2) if sizes else 0.0
        return {**asdict(self.settings), "recent_batches": len(sizes), "mean_texts_per_batch": mean}

    def queued_texts(self) -> int:
        with self._changed:
            return self._queued

    def alive(self) -> bool:
        """Whether the worker is running (it stops only when asked)."""
        return self._worker.is_alive()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._worker.join(timeout=30)

    def _next_batch(self) -> list[_Request[R]] | None:
        """The oldest requests that fit in one batch, once the batch is full or its wait is over (None once stopped).
        Each taken request's future is marked running; one its caller cancelled meanwhile is left out (the batch may
        then be empty)."""
        limit, wait = self.settings.max_batch_texts, self.settings.max_wait_ms / 1000
        with self._changed:
            while True:
                if self._stopped:
                    return None
                if self._pending:
                    remaining = self._pending[0].arrived + wait - time.monotonic()
                    if remaining <= 0 or self._queued >= limit:
                        break
                    self._changed.wait(remaining)
                else:
                    self._changed.wait()
            taken = [self._pending.popleft()]
            size = len(taken[0].texts)
            while self._pending and size + len(self._pending[0].texts) <= limit:
                taken.append(self._pending.popleft())
                size += len(taken[-1].texts)
            self._queued -= size
        return [request for request in taken if request.future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._predict(batch)
            except BaseException as err:  # noqa: BLE001 - the worker outlives any failure of one batch
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(err)
        with self._changed:  # stopped: nothing queued is predicted any more
            while self._pending:
                request = self._pending.popleft()
                if request.future.set_running_or_notify_cancel():
                    request.future.set_exception(QueueFull("the server is stopping"))

    def _predict(self, batch: list[_Request[R]]) -> None:
        """Predict a batch's texts in one call and give each request its results, in order."""
        if not batch:
            return
        texts = [t for request in batch for t in request.texts]
        results = self.predict(texts)
        if len(results) != len(texts):
            raise RuntimeError(f"{len(results)} predictions for {len(texts)} texts")
        self.batches = [*self.batches[-999:], len(texts)]
        start = 0
        for request in batch:
            request.future.set_result(results[start : start + len(request.texts)])
            start += len(request.texts)
