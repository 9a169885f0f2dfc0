"""
The pure checks of a station's WebSocket handshake: the station id from the request path,
the choice of the OCPP subprotocol, and whether a client certificate names the station. No I/O: the station's edge (L{ocppproxy.wire.station})
applies them.
"""

from __future__ import annotations

import re

_STATION_ID = re.compile(r"[A-Za-z0-9*\-_=:+|@.]{1,48}")
DEFAULT_SUBPROTOCOL = "ocpp1.6"


class BadStationPath(ValueError):
    """The request path does not name a valid station; the message says why."""


def station_id_from_path(path: str) -> str:
    """
    The station id in a request path C{/<stationId>}: 1 to 48 characters of the OCPP
    2.0.1 identity set, not only dots. Raises L{BadStationPath}.
    """
    if not path.startswith("/") or len(path) < 2:
        raise BadStationPath("the path must be /<stationId>")
    station_id = path[1:]
    if "/" in station_id:
        raise BadStationPath("the station id must not contain '/'")
    if "%" in station_id:
        raise BadStationPath("the station id must not be percent-encoded")
    if len(station_id) > 48:
        raise BadStationPath("the station id is longer than 48 characters")
    if not _STATION_ID.fullmatch(station_id):
        raise BadStationPath("the station id has characters outside A-Z a-z 0-9 * - _ = : + | @ .")
    if station_id.strip(".") == "":
        raise BadStationPath("the station id must not be only dots")
    return station_id


def choose_subprotocol(offered: list[str]) -> str | None:
    """
    The station's first OCPP offer, ignoring empty entries and stray spaces; None when
    it offered nothing usable.
    """
    offers = ocpp_offers(offered)
    return offers[0] if offers else None


def ocpp_offers(offered: list[str]) -> list[str]:
    """The OCPP subprotocols a station offers, in its order, without empty entries or spaces."""
    return [entry.strip() for entry in offered if entry.strip().lower().startswith("ocpp")]


def certificate_names_station(station_id: str, common_name: str, dns_names: tuple[str, ...]) -> bool:
    """
    Whether a client certificate with subject CN C{common_name} and SAN DNS names
    C{dns_names} was issued for C{station_id}: one of them is exactly the id
    (case-sensitive, as station ids are).
    """
    return common_name == station_id or station_id in dns_names
