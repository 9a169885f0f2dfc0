"""The Autobahn protocol economies: options shared by class, handshake text released."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config import config_from_mapping
from ocppproxy.session import websocket_options
from ocppproxy.station import StationFactory, StationProtocol


def factory(**settings) -> StationFactory:
    config = config_from_mapping({"primary_url": "ws://127.0.0.1:9/", **settings})
    return StationFactory(proxy=None, reactor=Clock(), websocket_options=websocket_options(config))


class ShareProtocolOptionsTests(SynchronousTestCase):
    def test_equal_options_share_one_class(self):
        """Factories with the same options build protocols of one class, a StationProtocol."""
        first, second = factory(), factory()
        self.assertIs(first.protocol, second.protocol)
        self.assertTrue(issubclass(first.protocol, StationProtocol))

    def test_different_options_different_classes(self):
        """A factory's own options are what its protocols see."""
        small, large = factory(max_frame_size=2048), factory(max_frame_size=4096)
        self.assertIsNot(small.protocol, large.protocol)
        self.assertEqual((small.protocol.maxMessagePayloadSize, large.protocol.maxMessagePayloadSize), (2048, 4096))

    def test_options_not_copied_into_instances(self):
        """Autobahn finds the plain options on the class and copies only the others (callables) per instance."""
        built = factory(keepalive={"interval": 7, "timeout": 3})
        protocol = built.buildProtocol(None)
        protocol._connectionMade = lambda: None  # only the copying step is under test
        for name in protocol.CONFIG_ATTRS:
            if not hasattr(protocol, name):
                setattr(protocol, name, getattr(built, name))
        self.assertEqual((protocol.autoPingInterval, protocol.autoPingTimeout), (7, 3))
        self.assertNotIn("autoPingInterval", vars(protocol))
        self.assertNotIn("maxMessagePayloadSize", vars(protocol))
        self.assertIs(protocol.perMessageCompressionAccept, built.perMessageCompressionAccept)
