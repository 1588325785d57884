"""A bounded cache of stamped messages, looked up by nearest stamp (approximate-time matching).

message_filters is not on PyPI, and the node needs only this: keep the last ``capacity`` messages
of a topic and find the one closest to an image's stamp within a tolerance. Thread-safe, because
subscriptions fill it on the executor while the optimizer worker reads it.

Time can go backwards (a bag played in a loop, a simulator reset). Without care the cache would
keep the old time base's newest stamps and evict every new message as "the oldest", so a message
stamped more than ``jump_back_s`` before the newest one clears the cache first, as tf2's buffer
does on a time jump back.
"""
from __future__ import annotations

import bisect
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class StampCache(Generic[T]):
    """The last ``capacity`` messages of a topic by stamp, looked up by nearest stamp (see the module docstring)."""

    def __init__(self, capacity: int = 30, jump_back_s: float = 1.0):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not jump_back_s > 0:   # also refuses NaN
            raise ValueError(f"jump_back_s must be positive, got {jump_back_s}")
        self._capacity = capacity
        self._jump_back_s = jump_back_s
        self.jumps_back = 0
        """How many times a jump back in time cleared the cache."""
        self._stamps: list[float] = []
        self._items: list[T] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def set_capacity(self, capacity: int) -> None:
        """Change how many messages are kept (the oldest go first when it shrinks)."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        with self._changed:
            self._capacity = capacity
            self._trim_locked()

    def clear(self) -> None:
        """Remove every message."""
        with self._changed:
            self._stamps.clear()
            self._items.clear()

    def drop_newer_than(self, stamp_s: float) -> int:
        """Remove the messages stamped after ``stamp_s`` (an old time base after a jump back); return
        how many were removed.
        """
        with self._changed:
            index = bisect.bisect_right(self._stamps, stamp_s)
            removed = len(self._stamps) - index
            del self._stamps[index:], self._items[index:]
            return removed

    def _trim_locked(self) -> None:
        while len(self._items) > self._capacity:  # drop the oldest
            self._stamps.pop(0)
            self._items.pop(0)

    def add(self, stamp_s: float, item: T) -> bool:
        """File ``item`` at ``stamp_s``; return True when the stamp jumped back and cleared the cache."""
        if stamp_s != stamp_s:
            raise ValueError("stamp is NaN")
        with self._changed:
            jumped = bool(self._stamps) and stamp_s < self._stamps[-1] - self._jump_back_s
            if jumped:
                self._stamps.clear()
                self._items.clear()
                self.jumps_back += 1
            index = bisect.bisect_right(self._stamps, stamp_s)
            self._stamps.insert(index, stamp_s)
            self._items.insert(index, item)
            self._trim_locked()
            self._changed.notify_all()
            return jumped

    def _nearest_locked(self, stamp_s: float, tolerance_s: float) -> tuple[float, T] | None:
        if not self._stamps:
            return None
        index = bisect.bisect_left(self._stamps, stamp_s)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(self._stamps)]
        best = min(candidates, key=lambda i: abs(self._stamps[i] - stamp_s))
        if abs(self._stamps[best] - stamp_s) > tolerance_s:
            return None
        return self._stamps[best], self._items[best]

    def nearest(self, stamp_s: float, tolerance_s: float) -> tuple[float, T] | None:
        """(stamp, item) closest to ``stamp_s`` if within ``tolerance_s``, else None."""
        with self._lock:
            return self._nearest_locked(stamp_s, tolerance_s)

    def latest(self) -> tuple[float, T] | None:
        """(stamp, item) of the newest message, or None when empty."""
        with self._lock:
            return (self._stamps[-1], self._items[-1]) if self._items else None

    def wait_for(self, stamp_s: float, tolerance_s: float, timeout_s: float) -> tuple[float, T] | None:
        """Like :meth:`nearest`, waiting up to ``timeout_s`` for a match to arrive."""
        with self._changed:
            self._changed.wait_for(lambda: self._nearest_locked(stamp_s, tolerance_s) is not None, timeout=timeout_s)
            return self._nearest_locked(stamp_s, tolerance_s)


class LatestSlot(Generic[T]):
    """Holds only the newest item: when the consumer falls behind, older frames are dropped."""

    def __init__(self):
        self._item: T | None = None
        self._dropped = 0
        self._changed = threading.Condition()

    def put(self, item: T) -> None:
        """Offer ``item`` to the consumer, replacing (and counting as dropped) one it has not taken yet."""
        with self._changed:
            if self._item is not None:
                self._dropped += 1
            self._item = item
            self._changed.notify_all()

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout_s`` (None: forever) for one; None when none came."""
        with self._changed:
            self._changed.wait_for(lambda: self._item is not None, timeout=timeout_s)
            item, self._item = self._item, None
            return item

    @property
    def dropped(self) -> int:
        """How many items were replaced before the consumer took them."""
        return self._dropped

    @property
    def pending(self) -> bool:
        """Whether a newer item is waiting (the consumer is behind)."""
        with self._changed:
            return self._item is not None
