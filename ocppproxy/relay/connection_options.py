"""
What a station's connections are opened with: the handshake headers each upstream gets
(credentials, the station's address) and the Autobahn options of both sides.
"""

from __future__ import annotations

from ..config.model import Config
from ..core.forwarded import forwarded_headers
from ..core.upstream_auth import CredentialsError, UpstreamAuth, authorization_for
from ..logs import proxy_logger

_log = proxy_logger(__name__)


def upstream_headers(request, peer_host: str, station_id: str, config: Config) -> dict[str, dict[str, str]]:
    """
    The handshake headers each configured upstream gets for a station, by upstream name
    (see L{StationHeaders}).
    """
    headers = StationHeaders(request, peer_host, station_id, config.trusted_proxies)
    return {name: headers.for_upstream(name, upstream.auth) for name, upstream in config.named_upstreams.items()}


class StationHeaders:
    """
    What one station's upstream handshakes carry: the credentials each upstream's C{auth}
    says (by default the station's own C{Authorization}; C{{station_id}} in a user name
    is the station's own id, never a rewritten one) and the station's address (see
    L{forwarded_headers}). Kept for the station's connection: a change of route opens
    links to upstreams it did not have.
    """

    def __init__(self, request, peer_host: str, station_id: str, trusted_proxies) -> None:
        self._station_authorization = request.headers.get("authorization")
        self._forwarded = forwarded_headers(peer_host, request.headers.get("x-forwarded-for"), trusted_proxies)
        self._station_id = station_id

    def for_upstream(self, name: str, auth: UpstreamAuth | None) -> dict[str, str]:
        """
        The headers for upstream C{name} with credentials C{auth}. Credentials that cannot
        be built for this station id (see L{authorization_for}) are left out, with a
        warning that names no secret. Without credentials, every upstream of the station
        gets the same dictionary (one per link was some 180 bytes): not to be changed.
        """
        try:
            authorization = authorization_for(auth, self._station_authorization, self._station_id)
        except CredentialsError as error:
            _log.warn(
                "station {station}: no credentials sent to {upstream}: {reason}",
                station=self._station_id,
                upstream=name,
                reason=str(error),
            )
            authorization = None
        if authorization:
            return {**self._forwarded, "Authorization": authorization}
        return self._forwarded


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
