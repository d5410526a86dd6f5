"""Work written as a generator of steps: it yields wherever it may pause and returns its result.

One piece of work (a checkpoint's dump, a memory log's rewrite) serves two callers this way: `finish` runs it
in one go (replay, tests, shutdown), `stepped` runs it on the event loop with a turn of the loop at every step,
so a large piece of work never holds the loop for long (a live loop serves /healthz and the next request in
between). asyncio is imported only when stepping, so commands that never run a loop (`check`) do not load it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Steps = Generator[None, None, T]


def finish(steps: Steps[T]) -> T:
    """Run `steps` to its end in one go; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def stepped(steps: Steps[T]) -> T:
    """Run `steps` to its end, a turn of the event loop at each step; its result."""
    import asyncio  # noqa: PLC0415 (lazy: see the module's docstring)

    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)
