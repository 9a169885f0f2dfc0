"""
The naive alternative: a minimal OCPP relay written with ``websockets``, the shape most
small OCPP proxies have (one asyncio task per direction and connection, no routing
logic beyond forwarding). Station frames go to both central systems, the primary's
frames go back to the station, the secondary's are read and dropped.

Run as its own process by ``bench/run.py``; prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio

from serving import serve_until_signalled
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def relay_handler(primary: str, secondary: str):
    async def handler(station) -> None:
        station_id = station.request.path.lstrip("/")
        subprotocols = [station.subprotocol] if station.subprotocol else None
        async with (
            connect(primary + station_id, subprotocols=subprotocols, compression=None) as first,
            connect(secondary + station_id, subprotocols=subprotocols, compression=None) as second,
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
    arguments = parser.parse_args()
    asyncio.run(serve_until_signalled(relay_handler(arguments.primary, arguments.secondary), arguments.port))
