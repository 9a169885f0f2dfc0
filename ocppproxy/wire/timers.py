"""
The txaio batched timer every Autobahn factory of the proxy uses (L{shared_batched_timer}):
one for all of them, whose pending calls are small.

Autobahn gives each factory a timer of its own (a client factory per upstream link: two
per station) and txaio wraps each call it schedules (each connection's keepalive ping,
always pending) in an object plus a closure over the function and its arguments, some
300 bytes. L{LeanBatchedTimer} keeps a call in four slots instead; buckets, chunks and
cancelling are txaio's own.
"""

from __future__ import annotations

from functools import lru_cache

import txaio
from txaio.interfaces import IBatchedTimer

try:
    from txaio._common import _BatchedTimer
except ImportError:  # another txaio: its own timers, unchanged
    _BatchedTimer = None


class _LeanCall:
    """txaio's _BatchedCall (C{cancel}, called when due) without a closure."""

    __slots__ = ("_timer", "_index", "_function", "_args")

    def __init__(self, timer, index: int, function, args: tuple) -> None:
        self._timer = timer
        self._index = index
        self._function = function
        self._args = args

    def cancel(self) -> None:
        """As txaio's: out of its bucket (the bucket's own timer cancelled once empty)."""
        self._timer._remove_call(self._index, self)
        self._timer = None

    def __call__(self):
        return self._function(*self._args)


if _BatchedTimer is not None:

    class LeanBatchedTimer(_BatchedTimer):
        """txaio's batched timer whose calls without keyword arguments are L{_LeanCall}s."""

        def call_later(self, delay, func, *args, **kwargs):
            if kwargs:
                return super().call_later(delay, func, *args, **kwargs)
            # txaio's call_later (txaio/_common.py), with the lean call, and the bucket
            # the due time falls in: txaio truncates the due time to the whole second
            # first, so every call due within a second shared one bucket (up to a
            # second early), and each connection's keepalive ping of that second was
            # sent in one burst (600 a second at 6,000 stations), the Heartbeats
            # arriving meanwhile waiting behind it.
            now = self._get_seconds()
            real_time = int((now + delay) * 1000)
            real_time -= real_time % self._bucket_milliseconds
            call = _LeanCall(self, real_time, func, args)
            bucket = self._buckets.get(real_time)
            if bucket is not None:
                bucket[1].append(call)
            else:
                delayed_call = self._create_delayed_call(
                    max(0.0, (real_time / 1000.0) - now), self._notify_bucket, real_time
                )
                self._buckets[real_time] = (delayed_call, [call])
            return call


CHUNK = 50
"""
Calls a bucket runs in one reactor turn: 50 keepalive pings take one or two
milliseconds, what a frame arriving meanwhile may wait; a bucket's further chunks come
later within its 0.2 s.
"""


@lru_cache(maxsize=4)
def shared_batched_timer(loop) -> IBatchedTimer:
    """
    The batched timer of every Autobahn factory of the proxy while txaio's loop is
    C{loop} (the daemon's reactor; tests change it), with Autobahn's bucket (0.2 s) and
    chunks of L{CHUNK} calls (Autobahn's 1,000), a bucket's chunks spread over the
    bucket's time (txaio's): a L{LeanBatchedTimer} where this txaio has the class it
    extends.
    """
    timer = txaio.make_batched_timer(bucket_seconds=0.200, chunk_size=CHUNK)
    if _BatchedTimer is not None and type(timer) is _BatchedTimer:
        timer.__class__ = LeanBatchedTimer
    return timer
