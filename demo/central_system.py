"""
A small OCPP 1.6 central system for the demo, built on the ``ocpp`` library and served
with ``websockets`` on 127.0.0.1; stations connect to ``ws://127.0.0.1:<port>/ocpp/<id>``.

Run alone (``python demo/central_system.py``) it serves a primary on port 9001 and a
secondary on 9002 until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

PATH_PREFIX = "/ocpp/"


def now() -> str:
    """The current UTC time as OCPP wants it."""
    return datetime.now(UTC).isoformat()


class StationHandler(ChargePoint):
    """The central system's side of one station connection: accepts everything."""

    def __init__(self, station_id: str, websocket, system: CentralSystem) -> None:
        super().__init__(station_id, websocket)
        self.system = system
        self.log = system.log

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        self.log.info("%s: BootNotification from a %s %s", self.id, charge_point_vendor, charge_point_model)
        return call_result.BootNotification(current_time=now(), interval=300, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self.log.info("%s: Heartbeat", self.id)
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, error_code, status, **kwargs):
        self.log.info("%s: connector %s is %s (%s)", self.id, connector_id, status, error_code)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        self.log.info("%s: Authorize %s", self.id, id_tag)
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        transaction_id = next(self.system.transaction_ids)
        self.system.started[self.id] = transaction_id
        self.log.info(
            "%s: StartTransaction on connector %s for %s at %s Wh: transaction %s",
            self.id,
            connector_id,
            id_tag,
            meter_start,
            transaction_id,
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        values = [sample["value"] for reading in meter_value for sample in reading.get("sampled_value", [])]
        self.log.info("%s: MeterValues on connector %s: %s", self.id, connector_id, ", ".join(values))
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop, timestamp, transaction_id, **kwargs):
        self.log.info("%s: StopTransaction %s at %s Wh", self.id, transaction_id, meter_stop)
        self.system.stopped.setdefault(self.id, []).append(transaction_id)
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})


class CentralSystem:
    """
    One demo central system on 127.0.0.1:C{port}; C{name} prefixes its log lines. Its
    transaction ids count up from C{first_transaction_id}; C{started} holds the last one
    given to each station, C{stopped} the ids each station's StopTransactions carried.
    """

    def __init__(self, name: str, port: int, first_transaction_id: int = 1) -> None:
        self.name = name
        self.port = port
        self.log = logging.getLogger(f"central-system.{name}")
        self.transaction_ids = itertools.count(first_transaction_id)
        self.started: dict[str, int] = {}
        self.stopped: dict[str, list[int]] = {}
        self._server = None

    async def start(self) -> None:
        """Listen; returns once the port accepts connections."""
        self._server = await websockets.serve(self._handle, "127.0.0.1", self.port, subprotocols=["ocpp1.6"])
        self.log.info("listening on ws://127.0.0.1:%s%s<stationId>", self.port, PATH_PREFIX)

    async def stop(self) -> None:
        """Close the listening socket and every connection (bounded by websockets' close timeout)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, websocket) -> None:
        path = websocket.request.path
        station_id = path[len(PATH_PREFIX) :]
        if not path.startswith(PATH_PREFIX) or not station_id:
            self.log.warning("refusing %s: expected %s<stationId>", path, PATH_PREFIX)
            await websocket.close(1008, "unknown path")
            return
        headers = websocket.request.headers
        self.log.info(
            "%s connected (subprotocol %s, X-Forwarded-For %s, User-Agent %s)",
            station_id,
            websocket.subprotocol,
            headers.get("X-Forwarded-For"),
            headers.get("User-Agent"),
        )
        try:
            await StationHandler(station_id, websocket, self).start()
        except websockets.ConnectionClosed:
            pass
        self.log.info("%s disconnected (code %s)", station_id, websocket.close_code)


async def serve_forever() -> None:
    """Run the primary (9001) and the secondary (9002) until cancelled."""
    systems = [CentralSystem("primary", 9001), CentralSystem("secondary", 9002, first_transaction_id=5001)]
    for system in systems:
        await system.start()
    try:
        await asyncio.Future()
    finally:
        for system in systems:
            await system.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("ocpp", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve_forever())
    except KeyboardInterrupt:
        pass
