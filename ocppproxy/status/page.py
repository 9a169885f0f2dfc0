"""
The status page at C{/}, for a phone or a desktop: the fleet's counts, a search box and
state filters, the stations (offline and faulted first) and the recent alerts.

The server sends the first /stations and /alerts documents inside the page (no second
round trip); the page's own script draws everything from them with C{textContent}, so
no text a station or the names file provides can become markup, and fetches them again
to search, filter, show more and refresh. The search box and filter are a plain GET
form: C{/?q=gare&state=offline} is a link to that view.

In cluster mode a line under the time says whose fleet the page shows: the cluster's
(connected stations by instance; faulted and charging are this instance's stations), or
this instance's alone, marked "local view", when Redis could not be read. A station
another instance holds is "connected elsewhere (instance X)".
"""

from __future__ import annotations

import json
from html import escape

from .fleet import STATES
from .page_script import SCRIPT

REFRESH_SECONDS = 10

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,sans-serif;margin:0;padding:12px;background:#f4f5f7;color:#1d2330}
main{max-width:1400px;margin:0 auto}
h1{font-size:1.3em;margin:0 0 4px}
h2{font-size:1.1em;margin:18px 0 8px}
.meta{color:#5b6478;font-size:.85em;margin-bottom:10px}
.tiles{display:grid;grid-template-columns:repeat(5,1fr);gap:8px;margin-bottom:8px}
.tile{display:block;background:#fff;border-radius:10px;padding:8px 10px;text-decoration:none;color:inherit;
box-shadow:0 1px 3px rgba(0,0,0,.12);border-top:4px solid #9aa1b0}
.tile b{display:block;font-size:1.5em}.tile span{font-size:.85em;color:#5b6478}
.tile.on{outline:2px solid #1d2330}
.t-connected{border-top-color:#1f8a4c}.t-offline{border-top-color:#5b6478}
.t-faulted{border-top-color:#b3261e}.t-charging{border-top-color:#1565c0}.t-alerts{border-top-color:#c77700}
.ups{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:.85em;margin-bottom:10px}
.find{display:flex;gap:8px;flex-wrap:wrap;margin:4px 0 8px}
.find input{flex:1 1 200px;font-size:1em;padding:8px 10px;border:1px solid #c5cad3;border-radius:8px}
.find select{font-size:1em;padding:8px;border:1px solid #c5cad3;border-radius:8px;background:#fff}
.list{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:8px}
.station{background:#fff;border-radius:10px;padding:10px 12px;box-shadow:0 1px 3px rgba(0,0,0,.12);
border-left:6px solid #1f8a4c;min-width:0}
.st-offline{border-left-color:#5b6478;background:#e6e8ec}.st-faulted{border-left-color:#b3261e}
.st-charging{border-left-color:#1565c0}
.station h3{font-size:1em;margin:0;word-break:break-word}
.id{color:#5b6478;font-size:.85em;word-break:break-all}
.row{margin-top:6px;font-size:.85em}
.badge{display:inline-block;border-radius:12px;padding:1px 9px;margin:2px 4px 2px 0;font-size:.85em;color:#fff}
.connected{background:#1f8a4c}.reconnecting{background:#c77700}.given_up{background:#b3261e}
.s-offline{background:#5b6478}.s-faulted{background:#b3261e}.s-charging{background:#1565c0}.s-connected{background:#1f8a4c}
.ok{color:#1f8a4c}.warn{color:#c77700}.bad{color:#b3261e}.busy{color:#1565c0}
.more{display:block;margin:10px auto;font-size:1em;padding:8px 18px;border-radius:8px;border:1px solid #c5cad3;
background:#fff}
table{border-collapse:collapse;width:100%;font-size:.85em;background:#fff;border-radius:10px}
td,th{padding:5px 6px;border-top:1px solid #e3e5ea;text-align:left;vertical-align:top;word-break:break-word}
th{border-top:0;color:#5b6478;font-weight:600}
.empty{color:#5b6478;font-style:italic}
.meta.local{color:#b3261e;font-weight:600}
@media (max-width:520px){.list{grid-template-columns:1fr}.tiles{gap:5px}.tile{padding:6px}
.tile b{font-size:1.2em}.tile span{font-size:.72em}}
"""

_LABELS = {
    "": "All states",
    "connected": "Connected",
    "offline": "Offline",
    "faulted": "Faulted",
    "charging": "Charging",
}


# Cluster mode only: the line saying whose fleet the page shows (drawn by the script).
_SCOPE = '<div class="meta" id="scope"></div>'


def _text(value) -> str:
    return escape(str(value), quote=True)


def _json_in_script(document: dict) -> str:
    """JSON that cannot end the script element it sits in, whatever a station sent."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _options(state: str) -> str:
    return "".join(
        f'<option value="{value}"{" selected" if value == state else ""}>{_LABELS[value]}</option>'
        for value in ("", *STATES)
    )


_ROLES = {"station": "station certificate", "client": "client certificate", "ca": "trusted CA"}


def _certificate_line(certificate: dict | None) -> str:
    """The line naming the certificate that expires first (red within 14 days); nothing without certificates."""
    if certificate is None:
        return ""
    days = certificate["days_left"]
    when = "expired" if days < 0 else f"in {days} day{'' if days == 1 else 's'}"
    warn = " warn" if days < 14 else ""
    return (
        f'<div class="meta{warn}" id="certificate">Nearest certificate expiry: {_text(certificate["expires"])}'
        f" ({_text(when)}), {_text(_ROLES.get(certificate['role'], certificate['role']))}"
        f" {_text(certificate['subject'])} in {_text(certificate['file'])}</div>"
    )


def render_page(stations: dict, alerts: dict, q: str = "", state: str = "") -> bytes:
    """
    The whole page, UTF-8: C{stations} a L{ocppproxy.status.fleet.fleet_listing} document
    for the view C{q} and C{state} (with the C{certificate} that expires first, if the
    proxy has any), C{alerts} an L{ocppproxy.status.alerts.alerts_document}.
    """
    counts = stations["counts"]
    data = _json_in_script({"stations": stations, "alerts": alerts, "refresh": REFRESH_SECONDS})
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ocppproxy: {counts['connected']} connected, {counts['offline']} offline</title>"
        f"<style>{_STYLE}</style></head><body><main>"
        "<h1>ocppproxy</h1>"
        f'<div class="meta" id="meta">{_text(stations["time"])}</div>'
        f"{_SCOPE if 'cluster' in stations else ''}"
        f"{_certificate_line(stations.get('certificate'))}"
        '<nav class="tiles" id="counts"></nav>'
        '<div class="ups" id="upstreams"></div>'
        '<form class="find" id="find" method="get" action="/">'
        f'<input type="search" name="q" id="q" value="{_text(q)}" placeholder="Search id or name"'
        ' aria-label="Search stations by id or name" autocomplete="off">'
        f'<select name="state" id="state" aria-label="State">{_options(state)}</select>'
        "<noscript><button>Find</button></noscript></form>"
        '<div class="meta" id="shown"></div>'
        '<div class="list" id="stations"></div>'
        '<button class="more" id="more" type="button" hidden>Show more</button>'
        "<h2>Recent alerts</h2>"
        '<div id="alerts"></div>'
        "<noscript><p>This page draws itself with JavaScript; "
        '<a href="/stations">/stations</a> and <a href="/alerts">/alerts</a> have the same as JSON.</p></noscript>'
        f'</main><script id="data" type="application/json">{data}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    ).encode()
