"""
The naive alternative: a minimal OCPP relay written with ``websockets``, the shape most
small OCPP proxies have (one asyncio task per direction and connection, no routing
logic beyond forwarding). Station frames go to both central systems, the primary's
frames go back to the station, the secondary's are read and dropped.

With ``--certificate``, ``--key`` and ``--ca-file`` it does TLS both ways, as a deployed
relay would: ``wss://`` towards the stations, and ``wss://`` central systems whose
certificates that CA signs.

Run as its own process by ``bench/run.py``; prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

from serving import serve_until_signalled, server_tls
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def relay_handler(primary: str, secondary: str, upstream_tls: ssl.SSLContext | None):
    async def handler(station) -> None:
        station_id = station.request.path.lstrip("/")
        subprotocols = [station.subprotocol] if station.subprotocol else None
        async with (
            connect(primary + station_id, subprotocols=subprotocols, compression=None, ssl=upstream_tls) as first,
            connect(secondary + station_id, subprotocols=subprotocols, compression=None, ssl=upstream_tls) as second,
        ):

            async def from_station() -> None:
                async for message in station:
                    await first.send(message)
                    await second.send(message)

            async def from_primary() -> None:
                async for message in first:
                    await station.send(message)

            async def from_secondary() -> None:
                async for _ in second:
                    pass

            tasks = [asyncio.create_task(job()) for job in (from_station, from_primary, from_secondary)]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            except ConnectionClosed:
                pass
            finally:
                for task in tasks:
                    task.cancel()

    return handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--primary", required=True)
    parser.add_argument("--secondary", required=True)
    parser.add_argument("--certificate", help="PEM certificate: serve wss:// to the stations (with --key)")
    parser.add_argument("--key", help="PEM private key of --certificate")
    parser.add_argument("--ca-file", help="PEM CA of wss:// central systems' certificates")
    arguments = parser.parse_args()
    upstream_tls = ssl.create_default_context(cafile=arguments.ca_file) if arguments.ca_file else None
    asyncio.run(
        serve_until_signalled(
            relay_handler(arguments.primary, arguments.secondary, upstream_tls),
            arguments.port,
            server_tls(arguments.certificate, arguments.key),
        )
    )
