"""twistd plugin pointer: ``twistd -n ocppproxy -c config.yaml``."""

from twisted.application.service import ServiceMaker

ocppproxy = ServiceMaker(
    "ocppproxy",
    "ocppproxy.daemon.tap",
    "OCPP-J proxy: relays each charging station to a primary and a secondary central system",
    "ocppproxy",
)
