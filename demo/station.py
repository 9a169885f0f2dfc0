"""
A simulated OCPP 1.6 charging station for the demo (the ``ocpp`` library's charge point
over a ``websockets`` client): connects, runs one charging session, disconnects.

Run alone: ``python demo/station.py [ws://127.0.0.1:9000/DEMO-CP-1]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import UTC, datetime

import websockets
from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus, Reason

DEFAULT_URL = "ws://127.0.0.1:9000/DEMO-CP-1"
TIMEOUT = 10.0
ID_TAG = "DEMO-TAG-0001"

log = logging.getLogger("station")


def now() -> str:
    """The current UTC time as OCPP wants it."""
    return datetime.now(UTC).isoformat()


async def charging_session(station: ChargePoint) -> None:
    """Boot, report status, heartbeat, then authorize and charge once; log every answer."""

    async def send(request):
        name = type(request).__name__
        log.info("-> %s", name)
        answer = await station.call(request)
        log.info("<- %s answer: %s", name, answer)
        return answer

    await send(call.BootNotification(charge_point_vendor="Demo", charge_point_model="Simulated"))
    await send(
        call.StatusNotification(
            connector_id=1, error_code=ChargePointErrorCode.no_error, status=ChargePointStatus.available
        )
    )
    await send(call.Heartbeat())
    await send(call.Authorize(id_tag=ID_TAG))
    started = await send(call.StartTransaction(connector_id=1, id_tag=ID_TAG, meter_start=1000, timestamp=now()))
    transaction_id = started.transaction_id
    await send(
        call.MeterValues(
            connector_id=1,
            transaction_id=transaction_id,
            meter_value=[
                {
                    "timestamp": now(),
                    "sampled_value": [{"value": "1750", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
                }
            ],
        )
    )
    await send(
        call.StopTransaction(meter_stop=2500, timestamp=now(), transaction_id=transaction_id, reason=Reason.local)
    )


async def run_station(url: str = DEFAULT_URL) -> None:
    """Connect to C{url} offering ocpp1.6, run one charging session, close; bounded in time."""
    station_id = url.rstrip("/").rsplit("/", 1)[-1]
    log.info("connecting to %s", url)
    async with websockets.connect(url, subprotocols=["ocpp1.6"], open_timeout=TIMEOUT) as websocket:
        log.info("connected, subprotocol %s", websocket.subprotocol)
        station = ChargePoint(station_id, websocket, response_timeout=TIMEOUT)
        reader = asyncio.ensure_future(station.start())
        try:
            await charging_session(station)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reader
    log.info("disconnected (code %s)", websocket.close_code)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("ocpp", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(run_station(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL))
