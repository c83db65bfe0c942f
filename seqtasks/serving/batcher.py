"""Concurrent requests -> batches on one model thread.

Every model call (a batch of inputs, a step of a streamed text) runs on one worker thread, in the
order it was asked for: TensorFlow runs each call on every core already, and one thread keeps a
run's compiled functions and random state out of races. Requests wait in groups of compatible
work (same kind, same options: `key`). While the model is busy, the groups fill; when it is free,
the group of the oldest waiting input runs, at most `max_batch` inputs of it, once that input has
waited `window` seconds or the group is full. So a lone request waits `window` at most, and under
load every model call takes all that came in while the last one ran.

A batch that raises is retried one input at a time, so a bad input (an image that does not decode)
fails its own request only.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

BatchFunction = Callable[[list[Any]], Sequence[Any]]  # inputs -> one output per input, in order


@dataclass
class _Group:
    run: BatchFunction
    items: list[tuple[Any, asyncio.Future, float]] = field(default_factory=list)  # (input, future, arrival)


class RequestBatcher:
    """submit(key, run, item) -> the output of run([..., item, ...]) for item, batched with others of key."""

    def __init__(self, window: float, max_batch: int):
        self.window, self.max_batch = window, max_batch
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="seqtasks-model")
        self.groups: dict[Hashable, _Group] = {}
        self.batches = self.inputs = 0  # batches run and the inputs in them (/info: the mean batch size)
        self._arrived: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """After the requests in flight have their answers (uvicorn waits for them before this)."""
        if self._dispatcher:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def call(self, function: Callable[..., Any], *args) -> Any:
        """function(*args) on the model thread, in turn with the batches (a streamed text's next piece)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def submit(self, key: Hashable, run: BatchFunction, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.groups.setdefault(key, _Group(run)).items.append((item, future, time.monotonic()))
        self._arrived.set()
        return await future

    def _oldest(self) -> tuple[Hashable, float]:
        key = min(self.groups, key=lambda k: self.groups[k].items[0][2])
        return key, self.groups[key].items[0][2]

    async def _dispatch(self) -> None:
        while True:
            if not self.groups:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            key, since = self._oldest()
            wait = since + self.window - time.monotonic()
            if wait > 0 and len(self.groups[key].items) < self.max_batch:
                self._arrived.clear()
                try:  # a new input may fill the group before the window ends
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            group = self.groups[key]
            taken, group.items = group.items[:self.max_batch], group.items[self.max_batch:]
            if not group.items:
                del self.groups[key]
            taken = [entry for entry in taken if not entry[1].done()]  # a request cancelled while it waited
            if taken:
                self.batches, self.inputs = self.batches + 1, self.inputs + len(taken)
                await self._run(group.run, taken)

    async def _run(self, run: BatchFunction, taken: list[tuple[Any, asyncio.Future, float]]) -> None:
        items = [item for item, _, _ in taken]
        try:
            outputs = await self.call(_checked, run, items)
        except Exception as error:
            if len(taken) == 1:
                _settle(taken[0][1], error=error)
                return
            for entry in taken:  # find which input failed: each alone
                await self._run(run, [entry])
            return
        for (_, future, _), output in zip(taken, outputs):
            _settle(future, output)


def _checked(run: BatchFunction, items: list[Any]) -> list[Any]:
    outputs = list(run(items))
    if len(outputs) != len(items):
        raise RuntimeError(f"a batch of {len(items)} inputs gave {len(outputs)} outputs")
    return outputs


def _settle(future: asyncio.Future, output: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(output)
