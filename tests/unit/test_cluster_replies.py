"""
Cluster mode's Redis replies are handled as soon as they are read: txredisapi's own
reader puts the rest of a read off by one reactor turn after every bulk string, which
made replies wait past the reply timeout while a site connected at once.
"""

from __future__ import annotations

import txredisapi
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.cluster.redis import _Commands, _Subscriber


class SameTurnRepliesTests(SynchronousTestCase):
    def protocol(self, protocol_class):
        clock = Clock()
        protocol = protocol_class(convertNumbers=False)
        protocol.callLater = clock.callLater
        protocol.transport, protocol.connected = StringTransport(), 1
        return protocol, clock

    def test_every_reply_read_is_handled_at_once(self):
        """
        Three replies (two bulk strings and a nil) read at once: all three commands are
        answered before dataReceived returns; txredisapi's own protocol answers the first
        and leaves the rest to later reactor turns.
        """
        for protocol_class, at_once in ((txredisapi.RedisProtocol, ["x"]), (_Commands, ["x", "yyy", None])):
            protocol, clock = self.protocol(protocol_class)
            answers: list = []
            for key in ("a", "b", "c"):
                protocol.get(key).addCallback(answers.append)
            protocol.dataReceived(b"$1\r\nx\r\n$3\r\nyyy\r\n$-1\r\n")
            self.assertEqual(answers, at_once, protocol_class)
            clock.advance(0)  # (a Clock runs every turn's deferred rest in one advance)
            self.assertEqual(answers, ["x", "yyy", None], protocol_class)

    def test_replies_split_anywhere_keep_their_order(self):
        """The same bytes in pieces of every size give the same answers, in order."""
        stream = b"$1\r\nx\r\n:7\r\n$3\r\nyyy\r\n+OK\r\n$-1\r\n"
        for size in range(1, len(stream) + 1):
            protocol, _ = self.protocol(_Commands)
            answers: list = []
            for _ in range(5):
                protocol.execute_command("PING").addCallback(answers.append)
            for start in range(0, len(stream), size):
                protocol.dataReceived(stream[start : start + size])
            self.assertEqual(answers, ["x", 7, "yyy", "OK", None], size)

    def test_announcements_read_at_once(self):
        """Two claim announcements in one read reach the subscriber in the same turn."""
        protocol, _ = self.protocol(_Subscriber)
        messages: list = []
        protocol.messageReceived = lambda pattern, channel, message: messages.append(message)
        message = b"*3\r\n$7\r\nmessage\r\n$6\r\nclaims\r\n$%d\r\n%s\r\n"
        protocol.dataReceived(message % (4, b"CP_1") + message % (4, b"CP_2"))
        self.assertEqual(messages, ["CP_1", "CP_2"])
