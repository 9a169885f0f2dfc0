"""
A benchmark central system: a plain ``websockets`` server that answers every CALL
(over TLS with ``--certificate`` and ``--key``).

Run as its own process by ``bench/run.py``; prints ``READY <port>`` once it listens. A
connection to ``/_stats`` gets one JSON object (connected stations, CALLs received) and
is closed, so the benchmark can watch it without touching the stations' traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from datetime import UTC, datetime

from serving import serve_until_signalled, server_tls
from websockets.exceptions import ConnectionClosed

STATS = {"connected": 0, "calls": 0, "connections": 0}
BOOT_ANSWER = {"status": "Accepted", "interval": 300}


def answer_for(action: str) -> dict:
    if action == "BootNotification":
        return {**BOOT_ANSWER, "currentTime": datetime.now(UTC).isoformat()}
    if action == "Heartbeat":
        return {"currentTime": datetime.now(UTC).isoformat()}
    return {}


async def handler(websocket) -> None:
    if websocket.request.path == "/_stats":
        await websocket.send(json.dumps(STATS))
        return
    STATS["connected"] += 1
    STATS["connections"] += 1
    try:
        async for message in websocket:
            frame = json.loads(message)
            if frame[0] == 2:
                STATS["calls"] += 1
                await websocket.send(json.dumps([3, frame[1], answer_for(frame[2])]))
    except ConnectionClosed:
        pass
    finally:
        STATS["connected"] -= 1


async def keep_collections_short() -> None:
    """
    Every second, collect the young generations and freeze what survived (as the proxy
    does, ocppproxy/daemon/collector.py): with thousands of connections held, the
    collector's full collections would stall this central system for 0.1 to 0.3 s, and
    its stalls would be counted in the proxy's latency.
    """
    while True:
        await asyncio.sleep(1.0)
        gc.collect(1)
        gc.freeze()


async def serve(port: int, tls) -> None:
    """Serve until signalled, collections kept short meanwhile."""
    keeper = asyncio.create_task(keep_collections_short())
    try:
        await serve_until_signalled(handler, port, tls)
    finally:
        keeper.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certificate", help="PEM certificate: serve wss:// (with --key)")
    parser.add_argument("--key", help="PEM private key of --certificate")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.port, server_tls(arguments.certificate, arguments.key)))
    sys.exit(0)
