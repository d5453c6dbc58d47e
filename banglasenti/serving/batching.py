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


@dataclass(frozen=True)
class BatchSettings:
    """How requests are gathered into batches."""

    max_batch_texts: int = 64
    max_wait_ms: float = 0.0
    max_queued_texts: int = 2048

    def __post_init__(self) -> None:
        if self.max_batch_texts < 1 or self.max_wait_ms < 0 or self.max_queued_texts < 1:
            raise ValueError(f"batch settings out of range: {self}")

    @classmethod
    def from_sources(cls, recorded: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> BatchSettings:
        """The defaults, then what the model's serving.json records (`batching`), then the environment."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for key, value in (recorded or {}).items():
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"serving.json batching.{key}: unknown setting")
            values[key] = value
        for name, key, kind in (
            (MAX_BATCH_ENV, "max_batch_texts", int),
            (MAX_WAIT_ENV, "max_wait_ms", float),
            (MAX_QUEUE_ENV, "max_queued_texts", int),
        ):
            if env.get(name):
                try:
                    values[key] = kind(env[name])
                except ValueError:
                    raise ValueError(f"{name}={env[name]!r}: expected a number") from None
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

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._worker.join(timeout=30)

    def _next_batch(self) -> list[_Request[R]]:
        """The oldest requests that fit in one batch (at least one), once the batch is full or its wait is over."""
        limit, wait = self.settings.max_batch_texts, self.settings.max_wait_ms / 1000
        with self._changed:
            while True:
                if self._stopped:
                    return []
                if self._pending:
                    remaining = self._pending[0].arrived + wait - time.monotonic()
                    if remaining <= 0 or self._queued >= limit:
                        break
                    self._changed.wait(remaining)
                else:
                    self._changed.wait()
            batch = [self._pending.popleft()]
            size = len(batch[0].texts)
            while self._pending and size + len(self._pending[0].texts) <= limit:
                request = self._pending.popleft()
                batch.append(request)
                size += len(request.texts)
            self._queued -= size
            return batch

    def _run(self) -> None:
        while batch := self._next_batch():
            texts = [t for request in batch for t in request.texts]
            try:
                results = self.predict(texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"{len(results)} predictions for {len(texts)} texts")
            except Exception as err:  # noqa: BLE001 - each request of the batch gets the error, the worker goes on
                for request in batch:
                    request.future.set_exception(err)
                continue
            self.batches = [*self.batches[-999:], len(texts)]
            start = 0
            for request in batch:
                request.future.set_result(results[start : start + len(request.texts)])
                start += len(request.texts)
        with self._changed:  # stopped: nothing queued is predicted any more
            while self._pending:
                self._pending.popleft().future.set_exception(QueueFull("the server is stopping"))
