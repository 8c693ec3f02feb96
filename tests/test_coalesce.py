"""The coalescing turn stream: plain asyncio, no Ray."""

import asyncio

import pytest

from deployments.coalesce import CoalescingStream


class Head:
    pass


async def source(log, items, gap_s=0.0):
    try:
        for item in items:
            if gap_s:
                await asyncio.sleep(gap_s)
            yield item
        log.append("finished")
    except asyncio.CancelledError:
        log.append("cancelled")
        raise


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_reader_keeping_up_gets_every_piece_on_its_own():
    async def main():
        head = Head()
        stream = CoalescingStream(source([], [head, b"a", b"b", b"c"], gap_s=0.01))
        return [item async for item in stream], head

    items, head = run(main())
    assert items == [head, b"a", b"b", b"c"]


def test_pieces_that_piled_up_leave_as_one_and_the_head_stays_apart():
    async def main():
        head = Head()
        stream = CoalescingStream(source([], [head, b"a", b"b", b"c"]))
        await asyncio.sleep(0.05)  # a busy reader: everything has arrived
        return [item async for item in stream], head

    items, head = run(main())
    assert items == [head, b"abc"]


def test_an_error_reaches_the_reader_after_what_came_before_it():
    async def failing():
        yield b"a"
        raise ValueError("upstream broke")

    async def main():
        stream = CoalescingStream(failing())
        got = [await stream.__anext__()]
        with pytest.raises(ValueError):
            await stream.__anext__()
        return got

    assert run(main()) == [b"a"]


def test_cancel_stops_the_source_at_once():
    async def main():
        log = []
        stream = CoalescingStream(source(log, [b"a"] * 100, gap_s=0.05))
        assert await stream.__anext__() == b"a"
        stream.cancel()
        await asyncio.wait_for(asyncio.shield(stream.task), 1)
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return log

    assert run(main()) == ["cancelled"]
