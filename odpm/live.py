"""Live streams: fan readings and alarm events out to SSE clients without slowing anyone.

Readings are produced on acquisition worker threads; SSE clients are served by
the event loop.  The publisher must never block (a stalled browser tab must not
delay a scan), so :meth:`Broadcaster.publish` only hands the event to the loop
with ``loop.call_soon_threadsafe`` and returns.  On the loop, each client has a
bounded queue: when it is full the *oldest* event is dropped (a live view wants
the newest data) and the client is told how many it missed with a ``gap`` event
before the next one it receives.

The payload is encoded to JSON once per event, not once per client, and not at
all when nobody listens to that device.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

#: Per-client queue length by default: a few seconds of readings at 1 Hz for
#: several devices, small enough that a stalled client costs little memory.
DEFAULT_QUEUE_SIZE = 64
#: Event types a subscription receives only when it names them: per-scan summaries
#: are for the all-devices stream, not for a device's own stream of full readings.
OPT_IN_EVENTS = frozenset({"summary"})


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event for SSE: ``event`` is its type, ``data`` is already JSON text."""

    device_id: str | None
    event: str
    data: str


class Subscription:
    """One client's bounded queue; consumed on the event loop only."""

    def __init__(
        self, device_id: str | None, maxsize: int, events: frozenset[str] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.device_id = device_id
        #: Event types this client receives (None: all but :data:`OPT_IN_EVENTS`).
        self.events = events
        self._queue: collections.deque[LiveEvent] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False
        #: Events dropped since the client last read (reported as one ``gap`` event).
        self._lost = 0
        #: Events dropped over the subscription's life (for metrics and tests).
        self.lost_total = 0

    def _offer(self, event: LiveEvent) -> None:
        if self._closed:
            return
        if len(self._queue) == self._queue.maxlen:
            self._lost += 1
            self.lost_total += 1
        self._queue.append(event)  # a full deque drops its oldest item
        self._ready.set()

    def close(self) -> None:
        """End the stream: the consumer's iteration stops after what is queued."""
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self) -> LiveEvent | None:
        """The next event (a ``gap`` first if events were dropped); None once closed."""
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                return LiveEvent(self.device_id, "gap", json.dumps({"lost": lost}))
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()

    def wants(self, device_id: str, event: str) -> bool:
        """Whether an ``event`` of ``device_id`` belongs in this client's queue."""
        if self.device_id is not None and self.device_id != device_id:
            return False
        return event not in OPT_IN_EVENTS if self.events is None else event in self.events

    async def __aiter__(self) -> AsyncIterator[LiveEvent]:
        while (event := await self.get()) is not None:
            yield event


class Broadcaster:
    """Thread-safe fan-out of events to the subscriptions of an event loop."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        # Guarded by _lock: read from worker threads (is anyone listening?),
        # changed on the loop.
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._closed = False
        self.published = 0
        self.dropped = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver to subscriptions on ``loop`` (the app's loop, set at startup)."""
        self._loop = loop
        self._closed = False

    def subscribe(
        self,
        device_id: str | None = None,
        maxsize: int | None = None,
        events: frozenset[str] | None = None,
    ) -> Subscription:
        """A new client queue for one device (or all when ``device_id`` is None),
        receiving only the event types in ``events`` (when None: every type but
        :data:`OPT_IN_EVENTS`).

        Must be called on the bound event loop.
        """
        sub = Subscription(device_id, maxsize or self.queue_size, events)
        if self._closed:
            sub.close()
            return sub
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            self.dropped += sub.lost_total
        sub.close()

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)

    def has_listeners(self, device_id: str, event: str | None = None) -> bool:
        """Whether an event (of type ``event``, or any) for ``device_id`` would reach
        anyone (cheap; any thread)."""
        with self._lock:
            if event is None:
                return any(s.device_id in (None, device_id) for s in self._subs)
            return any(s.wants(device_id, event) for s in self._subs)

    def publish(self, device_id: str, event: str, payload: Callable[[], Any]) -> None:
        """Queue ``payload()`` (JSON-encoded once) for every listener of ``device_id``.

        ``payload`` is a callable so that nothing is serialised when nobody
        listens.  Safe from any thread; never blocks on a client.
        """
        loop = self._loop
        if loop is None or self._closed or not self.has_listeners(device_id, event):
            return
        item = LiveEvent(device_id, event, json.dumps(payload(), allow_nan=False))
        try:
            loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop closed under us during shutdown
            return
        self.published += 1

    def _deliver(self, item: LiveEvent) -> None:
        with self._lock:
            subs = [s for s in self._subs if s.wants(item.device_id or "", item.event)]
        for s in subs:
            s._offer(item)

    def close(self) -> None:
        """End every stream (server shutdown); later subscriptions end at once.

        Must be called on the bound loop (use ``call_soon_threadsafe`` otherwise).
        """
        self._closed = True
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.close()

    def close_threadsafe(self) -> None:
        """:meth:`close` from any thread (a signal handler, a worker)."""
        loop = self._loop
        if loop is None:
            self._closed = True
            return
        try:
            loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # loop already closed
            self._closed = True
