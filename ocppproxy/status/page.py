"""
The status page at C{/}: the connected stations and their links, for a phone. It
reloads itself; every text a station (or the names file) provides is HTML-escaped.
"""

from __future__ import annotations

from html import escape

REFRESH_SECONDS = 10

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;margin:0;padding:12px;background:#f4f5f7;color:#1d2330}
h1{font-size:1.3em;margin:0 0 4px}
.meta{color:#5b6478;font-size:.85em;margin-bottom:12px}
.station{background:#fff;border-radius:10px;padding:12px;margin-bottom:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.station h2{font-size:1.1em;margin:0;word-break:break-word}
.id{color:#5b6478;font-size:.85em;word-break:break-all}
.row{margin-top:8px;font-size:.9em}
.badge{display:inline-block;border-radius:12px;padding:2px 10px;margin:2px 4px 2px 0;font-size:.85em;color:#fff}
.connected{background:#1f8a4c}.reconnecting{background:#c77700}.given_up{background:#b3261e}
.ok{color:#1f8a4c}.warn{color:#c77700}.bad{color:#b3261e}
table{border-collapse:collapse;width:100%;margin-top:6px;font-size:.9em}
td{padding:3px 4px;border-top:1px solid #e3e5ea;vertical-align:top}
.empty{color:#5b6478;font-style:italic}
"""

_LINK_LABELS = {"connected": "connected", "reconnecting": "reconnecting", "given_up": "given up"}
_STATUS_CLASSES = {
    "Available": "ok",
    "Charging": "ok",
    "Occupied": "ok",
    "Preparing": "warn",
    "SuspendedEV": "warn",
    "SuspendedEVSE": "warn",
    "Finishing": "warn",
    "Reserved": "warn",
    "Unavailable": "bad",
    "Faulted": "bad",
}


def _text(value) -> str:
    return escape(str(value), quote=True)


def _time(iso: str | None) -> str:
    """C{2026-11-25 12:00:00 UTC} from an ISO time; a dash for none."""
    if not iso:
        return "-"
    return _text(iso[:19].replace("T", " ") + " UTC")


def _link(upstream: str, link: dict) -> str:
    state = link["state"]
    label = _LINK_LABELS.get(state, state)
    if state == "reconnecting" and link["failed_attempts"]:
        label += f", {link['failed_attempts']} failed"
    if link["queued"]:
        label += f", {link['queued']} queued"
    return f'<span class="badge {_text(state)}">{_text(upstream)}: {_text(label)}</span>'


def _connectors(connectors: dict) -> str:
    if not connectors:
        return '<div class="row empty">No StatusNotification yet</div>'
    rows = []
    for place, status in sorted(connectors.items()):
        css = _STATUS_CLASSES.get(status["status"], "")
        error = status["errorCode"]
        error_text = f" ({_text(error)})" if error and error != "NoError" else ""
        rows.append(
            f"<tr><td>Connector {_text(place)}</td>"
            f'<td class="{css}">{_text(status["status"])}{error_text}</td>'
            f"<td>{_time(status['timestamp'] or status['received'])}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _station(station: dict) -> str:
    title = station["name"] or station["id"]
    links = "".join(_link(upstream, link) for upstream, link in station["upstreams"].items())
    return (
        '<div class="station">'
        f"<h2>{_text(title)}</h2>"
        f'<div class="id">{_text(station["id"])} &middot; {_text(station["remote"])} &middot; '
        f"{_text(station['subprotocol'] or '-')}</div>"
        f'<div class="row">{links}</div>'
        f'<div class="row">Connected since {_time(station["connected_since"])}<br>'
        f"Last message {_time(station['last_message'])}</div>"
        f"{_connectors(station['connectors'])}"
        "</div>"
    )


def render_page(stations: list[dict], now: str) -> bytes:
    """The whole page, UTF-8, for the station list of L{ocppproxy.status.snapshot.station_list}."""
    count = len(stations)
    body = "".join(_station(station) for station in stations) or '<p class="empty">No station connected.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>ocppproxy: {count} station{'' if count == 1 else 's'}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>ocppproxy</h1>"
        f'<div class="meta">{count} station{"" if count == 1 else "s"} connected &middot; {_time(now)}'
        f" &middot; refreshes every {REFRESH_SECONDS} s</div>"
        f"{body}</body></html>\n"
    ).encode()
