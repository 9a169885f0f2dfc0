"""
Cluster mode's API calls: a CALL for a station another instance holds is passed to that
instance through Redis pub/sub, and its answer comes back the same way, bounded by the
call's timeout. Each instance listens on its own channel, C{ocppproxy:api:<instance>};
the holder is read from the station's claim (L{ocppproxy.cluster.claims}).
"""

from __future__ import annotations

import json
import uuid
from typing import Protocol

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed

from ..cluster.claims import KEY_PREFIX, ClaimError, parse_claim, station_key
from ..cluster.redis import RedisLink
from ..config.model import ClusterConfig
from ..logs import proxy_logger
from ..periodic import Periodic
from .history import FrameTrace
from .sse import EventStream

_GET = "return redis.call('GET', KEYS[1])"
_PUBLISH = "return redis.call('PUBLISH', KEYS[1], ARGV[1])"
MARGIN = 2.0
"""Seconds the asking instance waits beyond the call's timeout for the holder's answer."""

class LocalApi(Protocol):
    """What an instance does for a station it holds, asked by another (L{ocppproxy.api.service.ApiService})."""

    def local_call(self, station_id: str, action: str, payload: dict, timeout: float) -> Deferred:
        """The CALL sent to the station: a Deferred of C{(status, document)}."""

    def local_frames(self, station_id: str) -> tuple[int, dict]:
        """The station's kept frames: C{(status, document)}."""

    def local_disconnect(self, station_id: str, code: int, by: str) -> tuple[int, dict]:
        """The station closed: C{(status, document)}."""

    def local_describe(self, station_id: str) -> tuple[int, dict]:
        """The station's details: C{(status, document)}."""


FRAMES_TIMEOUT = 3.0
"""Seconds an instance waits for another's history of a station."""
FOLLOW_LEASE = 90.0
"""Seconds a follow stream for another instance lives without being renewed (renewed every third of it)."""
REMOTE_BUFFER = 256 * 1024
"""Bytes of frames for another instance's follower not yet handed to Redis before that follower is dropped."""


class RemoteFollower:
    """
    Where the station is: a follow stream of another instance's reader, as L{FrameTrace}
    sees a stream (C{send}, C{closed}): each frame published on that instance's channel.
    Dropped when it stops renewing its lease, or when Redis does not keep up.
    """

    def __init__(self, calls: ClusterCalls, stream_id: str, station_id: str, reply_to: str, now: float) -> None:
        self._calls = calls
        self.stream_id = stream_id
        self.station_id = station_id
        self.reply_to = reply_to
        self.renewed = now
        self.closed = False
        self._unsent = 0

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self._unsent > REMOTE_BUFFER or not self._calls.up:
            self._calls.drop_remote(self, "end")
            return
        self._unsent += len(data)
        message = json.dumps({"kind": "frame", "stream": self.stream_id, "data": data.decode("utf-8")})
        published = self._calls.publish(self.reply_to, message)
        published.addBoth(self._sent, len(data))

    def _sent(self, result, size: int) -> None:
        self._unsent -= size


def channel_of(instance: str) -> str:
    """The pub/sub channel an instance hears API requests and replies on."""
    return f"{KEY_PREFIX}api:{instance}"


class ClusterCalls(MultiService):
    """
    Passes API calls to the instance holding the station, and runs those passed here with
    C{local_call}. C{up} says whether Redis is reachable.
    """

    _log = proxy_logger()

    def __init__(
        self,
        settings: ClusterConfig,
        reactor,
        local: LocalApi,
        trace: FrameTrace,
    ) -> None:
        super().__init__()
        self.instance = settings.instance
        self._clock = reactor
        self._local = local
        self._trace = trace
        self._pending: dict[str, tuple[Deferred, object]] = {}
        # Follow streams here of stations held elsewhere: stream id -> (stream, holder).
        self._follows: dict[str, tuple[EventStream, str]] = {}
        # Follow streams of other instances' readers of stations held here.
        self._remote: dict[str, RemoteFollower] = {}
        self.redis = RedisLink(settings.redis_url, channel_of(self.instance), reactor, lambda: None, self._message)
        self.redis.setServiceParent(self)
        leases = Periodic(FOLLOW_LEASE / 3, self._leases, reactor)
        leases.setServiceParent(self)

    @property
    def up(self) -> bool:
        return self.redis.up

    def call(self, station_id: str, action: str, payload: dict, timeout: float) -> Deferred:
        """
        The call run by the instance holding C{station_id}: a Deferred of C{(status,
        document)}; 404 when no instance holds it, 503 when Redis is away, 504 when the
        holder does not answer within C{timeout} and a margin.
        """
        return self._forward(station_id, {"op": "call", "action": action, "payload": payload}, timeout)

    def frames(self, station_id: str) -> Deferred:
        """The kept frames of C{station_id} read from the instance holding it, as L{call} answers."""
        return self._forward(station_id, {"op": "frames"}, FRAMES_TIMEOUT)

    def describe(self, station_id: str) -> Deferred:
        """One station's details from the instance holding it, as L{call} answers."""
        return self._forward(station_id, {"op": "describe"}, FRAMES_TIMEOUT)

    def disconnect(self, station_id: str, code: int, by: str) -> Deferred:
        """Close C{station_id} on the instance holding it (C{by}: the token's name), as L{call} answers."""
        return self._forward(station_id, {"op": "disconnect", "code": code, "by": by}, FRAMES_TIMEOUT)

    def publish(self, instance: str, message: str) -> Deferred:
        """Publish C{message} on C{instance}'s channel; fires with the number of listeners."""
        return self.redis.execute(_PUBLISH, [channel_of(instance)], [message])

    def follow(self, station_id: str, request, after: int | None) -> Deferred:
        """
        A follow stream of C{station_id}'s frames from the instance holding it: fires with
        NOT_DONE_YET once the stream is open, or C{(status, document)} (404, 503).
        """

        def holder_found(found):
            if not isinstance(found, str):
                return found
            stream_id = uuid.uuid4().hex
            stream = EventStream(request, lambda closed: self._unfollow(stream_id), clock=self._clock)
            self._follows[stream_id] = (stream, found)
            opened = stream.start()
            message = {"kind": "follow", "stream": stream_id, "reply_to": self.instance, "station": station_id,
                       "after": after}
            self.publish(found, json.dumps(message)).addErrback(lambda _: stream.close())
            return opened

        return self._holder(station_id).addCallback(holder_found)

    def _unfollow(self, stream_id: str) -> None:
        entry = self._follows.pop(stream_id, None)
        if entry is not None and self.redis.up:
            self.publish(entry[1], json.dumps({"kind": "unfollow", "stream": stream_id})).addErrback(lambda _: None)

    def drop_remote(self, follower: RemoteFollower, why: str) -> None:
        """Stop sending frames to another instance's follower (telling it, unless it asked)."""
        if self._remote.pop(follower.stream_id, None) is None:
            return
        follower.closed = True
        self._trace.unfollow(follower.station_id, follower)
        if why == "end" and self.redis.up:
            self.publish(follower.reply_to, json.dumps({"kind": "end", "stream": follower.stream_id})).addErrback(
                lambda _: None
            )

    def _leases(self) -> None:
        """Renew the leases of the follow streams here; drop the remote ones no longer renewed."""
        now = self._clock.seconds()
        for follower in list(self._remote.values()):
            if follower.renewed + FOLLOW_LEASE <= now:
                self.drop_remote(follower, "lease")
        if self.redis.up:
            for stream_id, (_, holder) in list(self._follows.items()):
                self.publish(holder, json.dumps({"kind": "keep", "stream": stream_id})).addErrback(lambda _: None)

    def stopService(self) -> Deferred:
        for stream, _ in list(self._follows.values()):
            stream.close()
        for follower in list(self._remote.values()):
            self.drop_remote(follower, "end")
        return super().stopService()

    def _holder(self, station_id: str) -> Deferred:
        """The instance holding C{station_id} (another one), or C{(status, document)}: 404, 503."""
        reading = self.redis.execute(_GET, [station_key(station_id)], [])

        def holder_found(value):
            if not value:
                return 404, {"error": f"station {station_id} is not connected to any instance"}
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            try:
                instance = parse_claim(station_id, value).instance
            except ClaimError:
                return 404, {"error": f"station {station_id} is not connected to any instance"}
            if instance == self.instance:
                return 404, {"error": f"station {station_id} is not connected"}
            return instance

        def unavailable(failure):
            # The claim could not be read: Redis is away (RedisUnavailable) or went away meanwhile.
            return 503, {"error": f"station {station_id} is not here, and Redis is away"}

        return reading.addCallbacks(holder_found, unavailable)

    def _forward(self, station_id: str, request: dict, timeout: float) -> Deferred:
        def holder_found(found):
            if not isinstance(found, str):
                return found
            return self._ask(found, station_id, request, timeout)

        return self._holder(station_id).addCallback(holder_found)

    def _ask(self, instance: str, station_id: str, request: dict, timeout: float) -> Deferred:
        request_id = uuid.uuid4().hex
        answer: Deferred = Deferred()
        timer = self._clock.callLater(timeout + MARGIN, self._timed_out, request_id, station_id, instance)
        self._pending[request_id] = (answer, timer)
        message = json.dumps(
            {**request, "kind": "call", "id": request_id, "reply_to": self.instance, "station": station_id,
             "timeout": timeout}
        )
        published = self.redis.execute(_PUBLISH, [channel_of(instance)], [message])

        def heard(listeners):
            if not listeners:
                self._settle(request_id, (503, {"error": f"instance {instance}, holding {station_id}, is not listening"}))

        published.addCallbacks(
            heard, lambda failure: self._settle(request_id, (503, {"error": "Redis went away while asking"}))
        )
        return answer

    def _timed_out(self, request_id: str, station_id: str, instance: str) -> None:
        self._settle(request_id, (504, {"error": f"instance {instance} did not answer for station {station_id} in time"}),
                     timer_fired=True)

    def _settle(self, request_id: str, result: tuple[int, dict], timer_fired: bool = False) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        answer, timer = entry
        if not timer_fired and timer.active():
            timer.cancel()
        answer.callback(result)

    def _message(self, message: str) -> None:
        try:
            document = json.loads(message)
            kind = document["kind"]
        except (ValueError, KeyError, TypeError):
            self._log.warn("api: ignoring a malformed message on {channel}", channel=channel_of(self.instance))
            return
        if kind == "reply":
            status, body = document.get("status"), document.get("document")
            if isinstance(status, int) and isinstance(body, dict):
                self._settle(str(document.get("id")), (status, body))
        elif kind == "call":
            self._run(document)
        else:
            self._streamed(kind, document)

    def _streamed(self, kind: str, document: dict) -> None:
        """The follow streams' messages: frames and ends here, follows, renewals and ends of the remote ones."""
        stream_id = str(document.get("stream"))
        if kind == "frame":
            entry = self._follows.get(stream_id)
            if entry is not None and isinstance(document.get("data"), str):
                entry[0].send(document["data"].encode("utf-8"))
        elif kind == "end":
            entry = self._follows.get(stream_id)
            if entry is not None:
                entry[0].close()
        elif kind == "follow":
            station_id, reply_to = str(document.get("station")), str(document.get("reply_to"))
            after = document.get("after")
            follower = RemoteFollower(self, stream_id, station_id, reply_to, self._clock.seconds())
            self._remote[stream_id] = follower
            self._trace.follow(station_id, follower, after if isinstance(after, int) else None)
        elif kind == "keep":
            follower = self._remote.get(stream_id)
            if follower is not None:
                follower.renewed = self._clock.seconds()
        elif kind == "unfollow":
            follower = self._remote.get(stream_id)
            if follower is not None:
                self.drop_remote(follower, "unfollow")

    def _run(self, document: dict) -> None:
        """A call passed here by another instance: run it, publish the answer to the asker's channel."""
        try:
            request_id, reply_to = str(document["id"]), str(document["reply_to"])
            station_id, timeout = str(document["station"]), float(document["timeout"])
            operation = document.get("op")
            if operation == "frames":
                running = succeed(self._local.local_frames(station_id))
            elif operation == "describe":
                running = succeed(self._local.local_describe(station_id))
            elif operation == "disconnect":
                running = succeed(self._local.local_disconnect(station_id, int(document["code"]), str(document["by"])))
            else:
                running = self._local.local_call(station_id, str(document["action"]), document["payload"], timeout)
        except (KeyError, TypeError, ValueError):
            self._log.warn("api: ignoring a malformed call from another instance")
            return

        def reply(result) -> None:
            status, body = result
            message = json.dumps({"kind": "reply", "id": request_id, "status": status, "document": body})
            self.redis.execute(_PUBLISH, [channel_of(reply_to)], [message]).addErrback(
                lambda failure: self._log.warn(
                    "api: cannot answer {instance}'s call for {station}: {reason}",
                    instance=reply_to, station=station_id, reason=failure.getErrorMessage(),
                )
            )

        running.addCallback(reply).addErrback(
            lambda failure: self._log.failure("api: a call passed by {instance} failed", failure, instance=reply_to)
        )

