"""What both benchmark servers do: serve on 127.0.0.1, say READY, stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import ssl

from websockets.asyncio.server import serve


def server_tls(certificate: str | None, key: str | None) -> ssl.SSLContext | None:
    """A TLS server context from PEM files, or None (plain) without them."""
    if certificate is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


async def serve_until_signalled(handler, port: int, tls: ssl.SSLContext | None = None) -> None:
    """Serve C{handler} (OCPP 1.6, no compression; TLS with C{tls}) on 127.0.0.1:C{port} until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], backlog=4096, compression=None, ssl=tls):
        print(f"READY {port}", flush=True)
        await stop
