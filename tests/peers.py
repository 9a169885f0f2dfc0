"""
Real OCPP peers for end-to-end tests, written by nobody here: the `ocpp` library's v16
central system and charge point over `websockets`, run on the asyncio reactor.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, AvailabilityStatus, RegistrationStatus

WAIT = 10.0


async def poll_until(
    probe: Callable[[], Any],
    done: Callable[[Any], bool],
    failure: Callable[[Any], str],
    interval: float = 0.02,
    timeout: float = WAIT,
) -> Any:
    """
    Await C{probe()} every C{interval} seconds until C{done(value)} holds, and return that
    value; after C{timeout} seconds, fail with C{failure(value)} of the last value.
    """
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while not done(value := await probe()):
        if loop.time() > deadline:
            raise AssertionError(failure(value))
        await asyncio.sleep(interval)
    return value


async def wait_until(condition: Callable[[], Any], changed: asyncio.Condition, timeout: float = WAIT) -> Any:
    """Wait, at most C{timeout} seconds, until C{condition()} is true; return its value."""
    async with changed:
        return await asyncio.wait_for(changed.wait_for(condition), timeout)


class RecordingMixin:
    """Records every raw frame received and sent by an ocpp ChargePoint."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[list] = []
        self.sent: list[list] = []
        self.changed = asyncio.Condition()

    async def _note(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def route_message(self, raw_msg):
        self.received.append(json.loads(raw_msg))
        await self._note()
        return await super().route_message(raw_msg)

    async def _send(self, message):
        self.sent.append(json.loads(message))
        await self._note()
        return await super()._send(message)


class CentralSystemSession(RecordingMixin, ChargePoint):
    """The central system's side of one station connection."""

    interval = 100

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        return call_result.BootNotification(
            current_time=datetime.now(UTC).isoformat(),
            interval=self.interval,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=datetime.now(UTC).isoformat())

    @on(Action.status_notification)
    def on_status(self, **kwargs):
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, **kwargs):
        return call_result.StartTransaction(
            transaction_id=self.interval + connector_id, id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop, timestamp, transaction_id, **kwargs):
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, **kwargs):
        return call_result.MeterValues()


@dataclass
class Connection:
    """What a central system saw of one incoming connection."""

    path: str
    headers: dict[str, str]
    subprotocol: str | None
    session: CentralSystemSession
    websocket: Any
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class CentralSystem:
    """An OCPP 1.6 central system on 127.0.0.1; C{interval} tags its BootNotification answers."""

    def __init__(
        self,
        interval: int,
        subprotocols=("ocpp1.6",),
        ssl_context: ssl.SSLContext | None = None,
        session_class: type = CentralSystemSession,
        refuse_status: int | None = None,
    ) -> None:
        self.interval = interval
        self.session_class = session_class
        self.refuse_status = refuse_status
        self.refused: list[str] = []
        self.subprotocols = list(subprotocols)
        self.ssl_context = ssl_context
        self.connections: list[Connection] = []
        self.changed = asyncio.Condition()
        self.server = None

    async def start(self, port: int = 0) -> int:
        self.server = await websockets.serve(
            self._handle,
            "127.0.0.1",
            port,
            subprotocols=self.subprotocols,
            ssl=self.ssl_context,
            process_request=self._refuse if self.refuse_status else None,
        )
        return self.server.sockets[0].getsockname()[1]

    def _refuse(self, connection, request):
        self.refused.append(request.path)
        return connection.respond(self.refuse_status, "refused by the test central system\n")

    async def _handle(self, websocket) -> None:
        path = websocket.request.path
        session = self.session_class(path.rsplit("/", 1)[-1], websocket)
        if hasattr(session, "interval"):
            session.interval = self.interval
        connection = Connection(path, dict(websocket.request.headers), websocket.subprotocol, session, websocket)
        self.connections.append(connection)
        async with self.changed:
            self.changed.notify_all()
        try:
            await session.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            connection.closed.set()
            async with self.changed:
                self.changed.notify_all()

    async def wait_connections(self, count: int) -> list[Connection]:
        await wait_until(lambda: len(self.connections) >= count, self.changed)
        return self.connections

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), WAIT)
            self.server = None


class Station(RecordingMixin, ChargePoint):
    """An OCPP 1.6 charge point; answers a few central-system CALLs."""

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type):
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id):
        return call_result.RemoteStopTransaction(status="Accepted")


async def connect_station(url: str, station_id: str, headers=None, subprotocols=("ocpp1.6",)):
    """Connect an ocpp charge point to the proxy; returns (station, websocket, reader task)."""
    websocket = await websockets.connect(
        url + station_id, subprotocols=list(subprotocols), additional_headers=headers or {}, open_timeout=WAIT
    )
    station = Station(station_id, websocket, response_timeout=WAIT)
    reader = asyncio.ensure_future(_read(station))
    return station, websocket, reader


async def closed(reader: asyncio.StreamReader) -> None:
    """Read until the proxy closes the connection (a FIN or a reset)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionResetError:
        pass


async def _read(station: Station) -> None:
    try:
        await station.start()
    except websockets.ConnectionClosed:
        pass


class RawCentralSystem:
    """A plain `websockets` server that records every text frame and sends what the test asks."""

    def __init__(self, subprotocols=("ocpp2.1", "ocpp2.0.1", "ocpp1.6")) -> None:
        self.subprotocols = list(subprotocols)
        self.received: list[str] = []
        self.websockets: list[Any] = []
        self.changed = asyncio.Condition()
        self.server = None

    async def start(self) -> int:
        self.server = await websockets.serve(self._handle, "127.0.0.1", 0, subprotocols=self.subprotocols)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, websocket) -> None:
        self.websockets.append(websocket)
        async with self.changed:
            self.changed.notify_all()
        try:
            async for message in websocket:
                self.received.append(message)
                async with self.changed:
                    self.changed.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), WAIT)
            self.server = None
