"""The live-stream broadcaster: bounded per-client queues, gap events, thread-safe publish."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import pytest

from odpm.live import Broadcaster, LiveEvent


def _payload(i: int) -> Callable[[], dict[str, int]]:
    return lambda: {"i": i}


async def _drain(sub_get: object, n: int) -> list[LiveEvent]:
    out = []
    for _ in range(n):
        ev = await asyncio.wait_for(sub_get(), 2.0)  # type: ignore[operator]
        assert ev is not None
        out.append(ev)
    return out


def test_events_published_from_threads_arrive_in_order() -> None:
    async def main() -> list[int]:
        b = Broadcaster(queue_size=1000)
        b.bind(asyncio.get_running_loop())
        sub = b.subscribe("d1")
        other = b.subscribe("d2")

        def produce() -> None:
            for i in range(200):
                b.publish("d1", "reading", _payload(i))

        t = threading.Thread(target=produce)
        t.start()
        await asyncio.to_thread(t.join)
        events = await _drain(sub.get, 200)
        assert other._queue == type(other._queue)()  # nothing for another device
        b.unsubscribe(sub)
        b.unsubscribe(other)
        return [json.loads(e.data)["i"] for e in events]

    assert asyncio.run(main()) == list(range(200))


def test_slow_client_loses_oldest_and_gets_a_gap_event_with_the_count() -> None:
    async def main() -> tuple[list[LiveEvent], list[LiveEvent]]:
        b = Broadcaster()
        b.bind(asyncio.get_running_loop())
        slow = b.subscribe("d1", maxsize=5)
        fast = b.subscribe("d1", maxsize=100)
        for i in range(12):
            b.publish("d1", "reading", _payload(i))
        await asyncio.sleep(0.05)  # let call_soon_threadsafe deliveries run
        got_slow = await _drain(slow.get, 6)
        got_fast = await _drain(fast.get, 12)
        return got_slow, got_fast

    got_slow, got_fast = asyncio.run(main())
    assert got_slow[0].event == "gap"
    assert json.loads(got_slow[0].data) == {"lost": 7}
    assert [json.loads(e.data)["i"] for e in got_slow[1:]] == [7, 8, 9, 10, 11]
    # The slow client cost the other one nothing.
    assert [json.loads(e.data)["i"] for e in got_fast] == list(range(12))


def test_publish_never_blocks_and_serialises_nothing_without_listeners() -> None:
    b = Broadcaster()
    calls = 0

    def payload() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {}

    b.publish("d1", "reading", payload)  # no loop bound yet
    assert calls == 0

    async def main() -> None:
        b.bind(asyncio.get_running_loop())
        b.publish("d1", "reading", payload)  # bound, but nobody listens
        sub = b.subscribe("d2")
        b.publish("d1", "reading", payload)  # listener of another device only
        b.unsubscribe(sub)

    asyncio.run(main())
    assert calls == 0


def test_close_ends_every_stream_and_later_subscriptions() -> None:
    async def main() -> None:
        b = Broadcaster()
        b.bind(asyncio.get_running_loop())
        sub = b.subscribe(None)
        b.publish("x", "reading", lambda: {"a": 1})
        await asyncio.sleep(0.01)
        b.close_threadsafe()
        got = [e async for e in sub]
        assert [e.event for e in got] == ["reading"]
        late = b.subscribe("x")
        assert await asyncio.wait_for(late.get(), 1.0) is None

    asyncio.run(main())


def test_queue_size_must_be_positive() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="queue size"):
            Broadcaster().subscribe("d", maxsize=-1)

    asyncio.run(main())


def test_subscriptions_receive_only_their_event_types() -> None:
    async def main() -> tuple[list[str], list[str], list[str]]:
        b = Broadcaster()
        b.bind(asyncio.get_running_loop())
        summaries = b.subscribe(None, events=frozenset({"summary"}))
        readings = b.subscribe("d1", events=frozenset({"reading"}))
        default = b.subscribe("d1")  # everything but the opt-in summaries
        encoded: list[str] = []

        def payload(kind: str) -> Callable[[], dict[str, str]]:
            def make() -> dict[str, str]:
                encoded.append(kind)
                return {"kind": kind}

            return make

        assert b.has_listeners("d1", "summary") and b.has_listeners("d1", "alarm")
        for kind in ("reading", "summary", "alarm"):
            b.publish("d1", kind, payload(kind))
        await asyncio.sleep(0.05)
        got_s = [e.event for e in await _drain(summaries.get, 1)]
        got_r = [e.event for e in await _drain(readings.get, 1)]
        assert not summaries._queue and not readings._queue
        got_d = [e.event for e in await _drain(default.get, 2)]
        assert got_d == ["reading", "alarm"] and not default._queue
        return got_s, got_r, encoded

    got_s, got_r, encoded = asyncio.run(main())
    assert got_s == ["summary"]
    assert got_r == ["reading"]
    assert encoded == ["reading", "summary", "alarm"]


def test_summaries_are_not_encoded_when_only_device_streams_listen() -> None:
    async def main() -> list[str]:
        b = Broadcaster()
        b.bind(asyncio.get_running_loop())
        sub = b.subscribe("d1")  # a device stream: summaries are opt-in
        encoded: list[str] = []

        def payload(kind: str) -> Callable[[], dict[str, str]]:
            def make() -> dict[str, str]:
                encoded.append(kind)
                return {}

            return make

        b.publish("d1", "summary", payload("summary"))
        b.publish("d1", "reading", payload("reading"))
        await asyncio.sleep(0.05)
        got = [e.event for e in await _drain(sub.get, 1)]
        assert not sub._queue
        assert got == ["reading"]
        return encoded

    assert asyncio.run(main()) == ["reading"]
