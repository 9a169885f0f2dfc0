"""
C{ocppproxy-ctl}: the command-line client of the control-plane API.

The API's address comes from C{--url}, else C{OCPPPROXY_API}, else the C{api.listen} of
C{-c config.yaml}; the token from C{OCPPPROXY_TOKEN}, else the first line of
C{--token-file} (or C{OCPPPROXY_TOKEN_FILE}). Exit codes: see L{EXIT_CODES}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import yaml

OK, CALL_ERROR, USAGE, REFUSED, NOT_FOUND, STATION_TROUBLE, FAILED = 0, 1, 2, 3, 4, 5, 6
EXIT_CODES = {
    OK: "done",
    CALL_ERROR: "the station answered with a CALLERROR",
    USAGE: "bad command line, no address or no token",
    REFUSED: "the token was refused (HTTP 401, 403)",
    NOT_FOUND: "no such station, or not connected (HTTP 404)",
    STATION_TROUBLE: "the station is busy, went away or did not answer in time (HTTP 409, 502, 503, 504)",
    FAILED: "anything else: the API cannot be reached, or another HTTP error",
}
_BY_STATUS = {401: REFUSED, 403: REFUSED, 404: NOT_FOUND, 409: STATION_TROUBLE, 502: STATION_TROUBLE,
              503: STATION_TROUBLE, 504: STATION_TROUBLE}


class CtlError(Exception):
    """Stops the command with a message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def url_of_endpoint(listen: str) -> str:
    """The URL of a Twisted server endpoint string (C{tcp:port=9200:interface=127.0.0.1} -> C{http://127.0.0.1:9200})."""
    kind, _, rest = listen.partition(":")
    fields: dict[str, str] = {}
    positional = []
    for part in rest.split(":"):
        name, equals, value = part.partition("=")
        if equals:
            fields[name] = value
        elif part:
            positional.append(part)
    port = fields.get("port") or (positional[0] if positional else None)
    if kind not in ("tcp", "ssl") or port is None:
        raise CtlError(f"cannot tell the API's address from api.listen {listen!r}: give --url", USAGE)
    host = fields.get("interface", "127.0.0.1")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if kind == 'ssl' else 'http'}://{host}:{port}"


def api_url(options: argparse.Namespace, environ: dict) -> str:
    """Where the API is: C{--url}, C{OCPPPROXY_API}, or the C{api.listen} of the configuration file."""
    if options.url:
        return options.url.rstrip("/")
    if environ.get("OCPPPROXY_API"):
        return environ["OCPPPROXY_API"].rstrip("/")
    if options.config:
        try:
            with open(options.config, encoding="utf-8") as stream:
                document = yaml.safe_load(stream) or {}
        except (OSError, yaml.YAMLError) as error:
            raise CtlError(f"cannot read {options.config}: {error}", USAGE) from None
        listen = (document.get("api") or {}).get("listen") if isinstance(document, dict) else None
        if isinstance(listen, str):
            return url_of_endpoint(listen)
        raise CtlError(f"{options.config} has no api.listen: give --url", USAGE)
    raise CtlError("where is the API? give --url, OCPPPROXY_API or -c config.yaml", USAGE)


def api_token(options: argparse.Namespace, environ: dict) -> str:
    """The token: C{OCPPPROXY_TOKEN}, or the first line of C{--token-file} / C{OCPPPROXY_TOKEN_FILE}."""
    if environ.get("OCPPPROXY_TOKEN"):
        return environ["OCPPPROXY_TOKEN"].strip()
    path = options.token_file or environ.get("OCPPPROXY_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as stream:
                token = stream.readline().strip()
        except OSError as error:
            raise CtlError(f"cannot read the token file: {error}", USAGE) from None
        if token:
            return token
    raise CtlError("no token: set OCPPPROXY_TOKEN or give --token-file", USAGE)


class Client:
    """Requests to the API with the bearer token; errors become L{CtlError}s with the exit code of their status."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout

    def open(self, method: str, path: str, body: Any = None, headers: dict | None = None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=self._timeout)
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("error", error.reason)
            except (ValueError, AttributeError):
                message = error.reason
            raise CtlError(f"HTTP {error.code}: {message}", _BY_STATUS.get(error.code, FAILED)) from None
        except (urllib.error.URLError, OSError) as error:
            raise CtlError(f"cannot reach the API at {self.url}: {getattr(error, 'reason', error)}", FAILED) from None

    def json(self, method: str, path: str, body: Any = None) -> dict:
        with self.open(method, path, body) as response:
            return json.loads(response.read())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocppproxy-ctl",
        description="Look at, command and trace the stations of an ocppproxy through its API.",
        epilog="exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items()),
    )
    parser.add_argument("--url", help="the API's URL (default: OCPPPROXY_API, or api.listen of -c)")
    parser.add_argument("-c", "--config", help="the daemon's configuration file, for its api.listen")
    parser.add_argument("--token-file", help="a file whose first line is the token (default: OCPPPROXY_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON, for machines")
    commands = parser.add_subparsers(dest="command", required=True)
    stations = commands.add_parser("stations", help="list the stations")
    stations.add_argument("--state", choices=("offline", "faulted", "charging", "connected"))
    stations.add_argument("--q", default="", help="search the id and the name")
    station = commands.add_parser("station", help="one station's details")
    station.add_argument("station")
    call = commands.add_parser("call", help="send a station a CALL and print its answer")
    call.add_argument("station")
    call.add_argument("action")
    call.add_argument("payload", nargs="?", default="{}", help="the payload, a JSON object (default {})")
    call.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    frames = commands.add_parser("frames", help="the station's last frames (redacted)")
    frames.add_argument("station")
    frames.add_argument("--follow", action="store_true", help="then print new frames as they pass")
    disconnect = commands.add_parser("disconnect", help="close the station's connection")
    disconnect.add_argument("station")
    disconnect.add_argument("--code", type=int, default=1000, help="the close code (1000, 1001, 1012, 1013, 3000-4999)")
    return parser


def _quote(station_id: str) -> str:
    return urllib.parse.quote(station_id, safe="")


def _frame_line(frame: dict) -> str:
    where = frame["direction"] + (f" {frame['upstream']}" if frame.get("upstream") else "")
    return f"{frame['time']}  {where:<24} {frame['frame']}"


def run(argv: list[str], environ: dict, out) -> int:
    """The command C{argv} (without the program name); returns the exit code."""
    options = _parser().parse_args(argv)
    client = Client(api_url(options, environ), api_token(options, environ))
    command = options.command
    if command == "stations":
        query = urllib.parse.urlencode({key: value for key, value in (("state", options.state), ("q", options.q)) if value})
        document = client.json("GET", "/api/stations" + (f"?{query}" if query else ""))
        if options.json:
            print(json.dumps(document, indent=1), file=out)
        else:
            for entry in document["stations"]:
                name = f"  {entry['name']}" if entry.get("name") and entry.get("name") != entry["id"] else ""
                print(f"{entry['id']:<24} {entry.get('state', ''):<10}{name}", file=out)
            print(f"{document['total']} station(s)", file=out)
        return OK
    if command == "station":
        print(json.dumps(client.json("GET", f"/api/stations/{_quote(options.station)}"), indent=1), file=out)
        return OK
    if command == "call":
        try:
            payload = json.loads(options.payload)
        except ValueError:
            raise CtlError("the payload is not JSON", USAGE) from None
        body = {"action": options.action, "payload": payload, "timeout": options.timeout}
        client._timeout = options.timeout + 10
        document = client.json("POST", f"/api/stations/{_quote(options.station)}/call", body)
        if options.json:
            print(json.dumps(document), file=out)
        elif "result" in document:
            print(json.dumps(document["result"][2], indent=1), file=out)
        else:
            _, _, code, description, details = document["error"]
            print(f"CALLERROR {code}: {description} {json.dumps(details) if details else ''}".rstrip(), file=out)
        return OK if "result" in document else CALL_ERROR
    if command == "frames":
        path = f"/api/stations/{_quote(options.station)}/frames"
        document = client.json("GET", path)
        last = 0
        for frame in document["frames"]:
            print(json.dumps(frame) if options.json else _frame_line(frame), file=out)
            last = frame["id"]
        out.flush()
        if options.follow:
            client._timeout = None
            with client.open("GET", path + "?follow=1", headers={"Last-Event-ID": str(last)}) as stream:
                for raw in stream:
                    line = raw.decode("utf-8").rstrip("\n")
                    if line.startswith("data: "):
                        frame = json.loads(line[6:])
                        print(json.dumps(frame) if options.json else _frame_line(frame), file=out, flush=True)
        return OK
    if command == "disconnect":
        document = client.json("POST", f"/api/stations/{_quote(options.station)}/disconnect", {"code": options.code})
        print(json.dumps(document) if options.json else f"{options.station}: closing with {options.code}", file=out)
        return OK
    raise CtlError(f"unknown command {command}", USAGE)


def main(argv: list[str] | None = None) -> int:
    """The console script: exit code as L{EXIT_CODES} says."""
    try:
        return run(sys.argv[1:] if argv is None else argv, dict(os.environ), sys.stdout)
    except CtlError as error:
        print(f"ocppproxy-ctl: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return OK


if __name__ == "__main__":
    sys.exit(main())
