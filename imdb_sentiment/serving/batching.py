"""Micro-batching: requests that arrive together share one model call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Prediction
    from imdb_sentiment.serving.telemetry import Metrics


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[list[Prediction]]


class MicroBatcher:
    """Merge requests that arrive within ``window_s`` into one model call of at most
    ``max_batch_size`` reviews.

    While a call runs, new requests queue up and form the next batch, so under load batches
    grow without anyone waiting for the window; a lone request waits at most ``window_s``.
    """

    def __init__(
        self,
        predict: Callable[[list[str]], list[Prediction]],
        *,
        max_batch_size: int,
        window_s: float,
        metrics: Metrics,
        batching: bool = True,
    ) -> None:
        self.predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self.metrics = metrics
        self.batching = batching
        # One inference thread: torch/onnxruntime already use every core for one call.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start merging requests (call from the running event loop)."""
        if self.batching and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the batching loop and the inference thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]) -> list[Prediction]:
        """Predictions for ``texts``, computed together with whatever arrives alongside."""
        if not self.batching:
            return (await self._run([texts]))[0]
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, future))
        return await future

    async def _run(self, groups: list[list[str]]) -> list[list[Prediction]]:
        flat = [t for g in groups for t in g]
        self.metrics.batch_size.observe(len(flat))
        self.metrics.batch_requests.observe(len(groups))
        start = time.perf_counter()
        predictions = await asyncio.get_running_loop().run_in_executor(
            self.executor, self.predict, flat
        )
        self.metrics.inference.observe(time.perf_counter() - start)
        out, at = [], 0
        for g in groups:
            out.append(predictions[at : at + len(g)])
            at += len(g)
        return out

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return self.queue.get_nowait() if not self.queue.empty() else None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[_Pending]:
        first = await self._next(None)
        assert first is not None
        items, n = [first], len(first.texts)
        deadline = time.perf_counter() + self.window_s
        while n < self.max_batch_size:
            item = await self._next(deadline - time.perf_counter())
            if item is None:
                break
            if n + len(item.texts) > self.max_batch_size:
                self._carry = item  # starts the next batch
                break
            items.append(item)
            n += len(item.texts)
        return [i for i in items if not i.future.done()]  # drop requests whose client left

    async def _loop(self) -> None:
        while True:
            items = await self._collect()
            if items:
                await self._answer(items)

    async def _answer(self, items: list[_Pending]) -> None:
        try:
            results = await self._run([i.texts for i in items])
        except Exception as exc:
            if len(items) > 1:
                # One request's reviews must not fail the others merged with it: retry alone.
                for i in items:
                    await self._answer([i])
                return
            if not items[0].future.done():  # the request maps it to an HTTP answer
                items[0].future.set_exception(exc)
            return
        for i, result in zip(items, results, strict=True):
            if not i.future.done():
                i.future.set_result(result)
