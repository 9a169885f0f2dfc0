"""
What a station's connections are opened with: the handshake headers each upstream gets
(credentials, the station's address) and the Autobahn options of both sides.
"""

from __future__ import annotations

from ..config.model import Config
from ..core.forwarded import forwarded_headers
from ..core.upstream_auth import CredentialsError, authorization_for
from ..logs import proxy_logger

_log = proxy_logger(__name__)


def upstream_headers(request, peer_host: str, station_id: str, config: Config) -> dict[str, dict[str, str]]:
    """
    The handshake headers each upstream gets for a station, by upstream name: the
    credentials L{upstream_auth} says (by default the station's own C{Authorization})
    and the station's address (see L{forwarded_headers}). Configured credentials that
    cannot be built for this station id (see L{authorization_for}) are left out, with a
    warning that names no secret.
    """
    station_authorization = request.headers.get("authorization")
    forwarded = forwarded_headers(peer_host, request.headers.get("x-forwarded-for"), config.trusted_proxies)
    headers = {}
    for name in config.upstream_urls():
        these = dict(forwarded)
        try:
            authorization = authorization_for(config.upstream_auth.get(name), station_authorization, station_id)
        except CredentialsError as error:
            _log.warn(
                "station {station}: no credentials sent to {upstream}: {reason}",
                station=station_id,
                upstream=name,
                reason=str(error),
            )
            authorization = None
        if authorization:
            these["Authorization"] = authorization
        headers[name] = these
    return headers


def websocket_options(config: Config) -> dict:
    """Autobahn protocol options for both sides: frame size limit, keepalive, handshake timeouts."""
    options = {
        "openHandshakeTimeout": config.handshake_timeout + 5,
        "closeHandshakeTimeout": 5,
        "maxMessagePayloadSize": config.max_frame_size,
        "maxFramePayloadSize": config.max_frame_size,
        # Answer an oversized or broken frame with a close frame (1009, 1002), not a TCP drop.
        "failByDrop": False,
    }
    if config.keepalive_interval > 0:
        options["autoPingInterval"] = config.keepalive_interval
        options["autoPingTimeout"] = config.keepalive_timeout
    return options
