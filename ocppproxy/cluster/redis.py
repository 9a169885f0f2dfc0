"""
The Redis edge of cluster mode: two connections through C{txredisapi} (one for commands,
one subscribed to the claim announcements), each kept up by a C{ClientService}, and
whether Redis is reachable right now.

Nothing here waits for Redis on behalf of a station: commands are refused at once while
Redis is away, and the owner is told when it goes and comes back (see L{RedisLink}).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate, globalLogPublisher

from ..logs import proxy_logger

DEFAULT_PORT = 6379
# A command unanswered this long: Redis hangs; the connection is dropped and counts as an outage.
REPLY_TIMEOUT = 5.0
# Redis back within a few seconds is noticed within a second or two.
RETRY_POLICY = backoffPolicy(initialDelay=0.5, maxDelay=5.0, factor=1.5)


class RedisUnavailable(Exception):
    """A command was not sent: Redis is not reachable right now."""


def redis_endpoint(reactor, url: str):
    """
    The client endpoint and the connection settings of a C{redis://}, C{rediss://} or
    C{unix:///path} URL (validated by L{ocppproxy.config.cluster}): returns
    C{(endpoint, settings)}, C{settings} being the keyword arguments of the protocol
    (password, username and database).
    """
    parts = urlsplit(url)
    settings = {
        "password": unquote(parts.password) if parts.password else None,
        "username": unquote(parts.username) if parts.username else None,
        "dbid": None,
    }
    if parts.scheme == "unix":
        return UNIXClientEndpoint(reactor, parts.path), settings
    database = parts.path.strip("/")
    settings["dbid"] = int(database) if database else None
    endpoint = HostnameEndpoint(reactor, parts.hostname, parts.port or DEFAULT_PORT, timeout=5)
    if parts.scheme == "rediss":
        endpoint = wrapClientTLS(optionsForClientTLS(parts.hostname), endpoint)
    return endpoint, settings


# Readiness is told by the protocols, not through ClientService's prepareConnection: a
# connection lost while it prepares (a refused AUTH, say) is a transition its state
# machine does not have.


class _SameTurnReplies:
    """
    txredisapi's reading, with every reply in what was read handled in the same reactor
    turn.

    After each bulk string (a claim, a station's statuses, ...) txredisapi's line reader
    puts the rest of what it read off to the next reactor turn (C{setLineMode}'s
    C{callLater(0)}): a read holding a hundred replies took a hundred turns. While a
    site connects at once a turn can last a second or more, so replies that had arrived
    waited past the reply timeout and Redis was declared down (C{make bench}'s cluster
    phase: every instance, at every boot). Here the rest is read at once, in order.
    """

    _rest = b""

    def setLineMode(self, extra=b""):
        self.line_mode = 1
        if extra:
            self._rest += extra  # read by dataReceived below, before it returns

    def dataReceived(self, data, unpause=False):
        super().dataReceived(data, unpause)
        while self._rest:
            rest, self._rest = self._rest, b""
            super().dataReceived(rest)


class _Commands(_SameTurnReplies, txredisapi.RedisProtocol):
    def connectionMade(self):
        connecting = super().connectionMade()
        # Ready once Redis has answered: a frozen Redis still accepts TCP connections.
        answered = self.whenConnected().addCallback(lambda _: self.ping())
        answered.addCallbacks(lambda _: self.factory.link._connected(self), lambda _: None)
        return connecting

    def connectionLost(self, why) -> None:
        _lost_before_ready(self, why)
        super().connectionLost(why)
        self.factory.link._lost(self)


class _Subscriber(_SameTurnReplies, txredisapi.SubscriberProtocol):
    def connectionMade(self):
        connecting = super().connectionMade()
        self.whenConnected().addCallback(self.factory.link._subscribe)
        return connecting

    def messageReceived(self, pattern, channel, message) -> None:
        self.factory.link._message(message)

    def connectionLost(self, why) -> None:
        _lost_before_ready(self, why)
        super().connectionLost(why)
        self.factory.link._lost(self)


def _lost_before_ready(protocol, why) -> None:
    """
    A connection lost before it was ready (a TLS certificate refused, say): its own reason
    is the outage's, not the failed AUTH or SELECT that txredisapi reports next.
    """
    if not protocol._ready:
        protocol.factory.link._attempt_failed(why.getErrorMessage())


class _QuietClientService(ClientService):
    """A ClientService without its info line per retry: the outage is logged once by L{RedisLink}."""

    _log = Logger(observer=FilteringLogObserver(globalLogPublisher, [LogLevelFilterPredicate(LogLevel.warn)]))


class _RedisFactory(Factory):
    """Builds txredisapi protocols for L{RedisLink}; also what they call when AUTH or SELECT fails."""

    # No "Starting factory" line per attempt while Redis is away.
    noisy = False
    # txredisapi's protocol reads these on a failed AUTH or SELECT.
    isLazy = False

    def __init__(self, link: RedisLink, protocol_class, settings: dict, clock) -> None:
        self.link = link
        self.protocol_class = protocol_class
        self.settings = settings
        self.clock = clock

    def buildProtocol(self, addr):
        # convertNumbers off: claims and station ids must stay strings even when they look like numbers.
        protocol = self.protocol_class(convertNumbers=False, **self.settings)
        protocol.factory = self
        # Its reply timeouts on our clock, not the global reactor.
        protocol.callLater = self.clock.callLater
        return protocol

    def stopTrying(self) -> None:
        """Keep trying: the ClientService retries with backoff, and the problem is logged once per outage."""

    def connectionError(self, message: str) -> None:
        self.link._attempt_failed(message)


class _WatchedEndpoint:
    """An endpoint that tells L{RedisLink} of every failed connection attempt."""

    def __init__(self, endpoint, link: RedisLink) -> None:
        self._endpoint = endpoint
        self._link = link

    def connect(self, factory) -> Deferred:
        def failed(failure):
            self._link._attempt_failed(failure.getErrorMessage())
            return failure

        return self._endpoint.connect(factory).addErrback(failed)


class RedisLink(MultiService):
    """
    Two connections to Redis, reconnected with backoff while running: commands
    (L{execute}) and a subscription to C{channel}. C{up} is True while both are ready.
    C{on_up} is called each time Redis becomes reachable (at start-up too), C{on_message}
    with each message on C{channel}. One warning is logged per outage, one line when it ends.
    L{stopService} fires once both connections are closed.
    """

    _log = proxy_logger()

    def __init__(
        self,
        url: str,
        channel: str,
        reactor,
        on_up: Callable[[], None],
        on_message: Callable[[str], None],
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.channel = channel
        self._on_up = on_up
        self._on_message = on_message
        endpoint, settings = redis_endpoint(reactor, url)
        self._where = self._describe(url)
        self._commands: _Commands | None = None
        self._subscriber: _Subscriber | None = None
        self.up = False
        self._outage_logged = False
        self._ever_up = False
        watched = _WatchedEndpoint(endpoint, self)
        # The subscriber waits for messages for ever: only commands have a reply timeout.
        for protocol_class, timeout in ((_Commands, reply_timeout), (_Subscriber, None)):
            factory = _RedisFactory(self, protocol_class, {**settings, "replyTimeout": timeout}, reactor)
            service = _QuietClientService(watched, factory, retryPolicy=RETRY_POLICY, clock=reactor)
            service.setServiceParent(self)

    @staticmethod
    def _describe(url: str) -> str:
        """Where Redis is, for the log: never the password."""
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.scheme}://{parts.hostname}:{parts.port or DEFAULT_PORT}"

    def execute(self, script: str, keys: list[str], args: list) -> Deferred:
        """Run a Lua script; fails at once with L{RedisUnavailable} while Redis is not reachable."""
        if not self.up or self._commands is None:
            return fail(RedisUnavailable("Redis is not reachable"))
        return self._commands.eval(script, keys, args).addErrback(self._command_failed, self._commands)

    def _command_failed(self, failure, protocol: _Commands):
        """
        A reply timed out or the connection went: Redis is down from now on, before the
        callers hear of it. txredisapi fails every waiting command at once (thousands with
        many stations), and each caller then knows the outage is already logged.
        """
        if failure.check(txredisapi.ConnectionError):
            self._lost(protocol, failure.getErrorMessage())
        return failure

    # --- the connections

    def _subscribe(self, protocol: _Subscriber) -> None:
        subscribed = protocol.subscribe(self.channel)
        subscribed.addCallbacks(lambda _: self._connected(protocol), lambda failure: None)

    def _connected(self, protocol) -> None:
        """C{protocol} is ready (authenticated, its database selected, subscribed if it is the subscriber)."""
        if isinstance(protocol, _Subscriber):
            self._subscriber = protocol
        else:
            self._commands = protocol
        if self.up or self._commands is None or self._subscriber is None or not self.running:
            return
        self.up = True
        if self._outage_logged:
            self._log.info("cluster: Redis at {where} is reachable again", where=self._where)
        elif not self._ever_up:
            self._log.info("cluster: connected to Redis at {where}", where=self._where)
        self._outage_logged = False
        self._ever_up = True
        self._on_up()

    def _lost(self, protocol, reason: str | None = None) -> None:
        if protocol is self._commands:
            self._commands = None
        elif protocol is self._subscriber:
            self._subscriber = None
        else:
            return
        was_up, self.up = self.up, False
        if was_up and self.running:
            self._outage(reason or f"connection lost: {type(protocol).__name__.strip('_').lower()}")

    def _attempt_failed(self, reason: str) -> None:
        if self.running:
            self._outage(reason)

    def _outage(self, reason: str) -> None:
        if self._outage_logged:
            return
        self._outage_logged = True
        self._log.warn(
            "cluster: Redis at {where} is unreachable ({reason}); relaying goes on with local state",
            where=self._where,
            reason=reason,
        )

    def _message(self, message) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        self._on_message(message)

    def stopService(self) -> Deferred:
        """Close both connections; fires when they are closed."""
        self.up = False
        return super().stopService()
