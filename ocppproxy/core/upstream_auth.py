"""
The credentials each upstream gets in its handshake (OCPP security profiles 1 and 2):
the station's own C{Authorization} header, none, or HTTP Basic credentials of the
proxy's configuration. Pure: no I/O, nothing logged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

PASS = "pass"
DROP = "drop"
BASIC = "basic"
STATION_ID_PLACEHOLDER = "{station_id}"


class CredentialsError(ValueError):
    """The configured credentials cannot be sent for this station; the text holds no secret."""


@dataclass(frozen=True)
class UpstreamAuth:
    """
    How one upstream is authenticated: C{pass} (the station's header, unchanged),
    C{drop} (no header), or C{basic} with C{username} (where C{{station_id}} stands for
    the station's id) and C{password}. The password is a secret: not in repr.
    """

    mode: str = PASS
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def authorization_for(auth: UpstreamAuth | None, station_authorization: str | None, station_id: str) -> str | None:
    """
    The C{Authorization} value to send upstream, or None for no header. Without
    settings (None) the station's header is passed. Raises L{CredentialsError} when the
    station id makes the Basic user-id contain a colon (RFC 7617 forbids it: the
    upstream would split user and password in the wrong place).
    """
    if auth is None or auth.mode == PASS:
        return station_authorization or None
    if auth.mode == DROP:
        return None
    username = auth.username.replace(STATION_ID_PLACEHOLDER, station_id)
    if ":" in username:
        raise CredentialsError("the Basic user-id would contain ':' (from the station id)")
    token = base64.b64encode(f"{username}:{auth.password}".encode()).decode("ascii")
    return f"Basic {token}"
