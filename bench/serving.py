"""What both benchmark servers do: serve on 127.0.0.1, say READY, stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.server import serve


async def serve_until_signalled(handler, port: int) -> None:
    """Serve C{handler} (OCPP 1.6, no compression) on 127.0.0.1:C{port} until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], backlog=4096, compression=None):
        print(f"READY {port}", flush=True)
        await stop
