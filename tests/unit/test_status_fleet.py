"""The fleet view: offline stations remembered and forgotten, counts, search, filters, order, pages, alerts."""

from __future__ import annotations

import json

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import NotifyConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService
from ocppproxy.relay.snapshot import LINK_STATES
from ocppproxy.status import activity as activity_module
from ocppproxy.status.activity import FORGET_AFTER, StationActivity
from ocppproxy.status.alerts import RECENT_LIMIT, RecentAlerts, alerts_document
from ocppproxy.status.fleet import QueryError, StationQuery, fleet_listing, parse_query
from ocppproxy.status.page import render_page
from ocppproxy.status.service import FORGET_EVERY, StatusService

from ..system.test_status import T0, FakeLink, FakeProxy, FakeSession, no_notifier


def status(activity: StationActivity, station_id: str, *statuses: str) -> None:
    for connector, value in enumerate(statuses, 1):
        activity.station_frame(
            station_id,
            parse_frame(json.dumps([2, "s", "StatusNotification", {"connectorId": connector, "status": value}])),
        )


class Fleet:
    """A proxy with connected stations and an activity that saw others leave, on a Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.activity = StationActivity(self.clock)
        self.proxy = FakeProxy({})

    def connect(self, station_id: str, *statuses: str, links=None) -> None:
        self.activity.station_connected(station_id, "")
        status(self.activity, station_id, *statuses)
        self.proxy.sessions[station_id] = FakeSession(links or {"primary": FakeLink()})

    def leave(self, station_id: str) -> None:
        self.activity.station_disconnected(station_id, 1006, None)
        del self.proxy.sessions[station_id]

    def listing(self, names=None, **query) -> dict:
        names = StationNames(names or {})
        return fleet_listing(self.proxy.snapshot(), self.activity, names, StationQuery(**query), self.clock.seconds())


def ids(listing: dict) -> list[str]:
    return [station["id"] for station in listing["stations"]]


class OfflineMemoryTests(SynchronousTestCase):
    def test_left_station_is_remembered_until_it_returns(self):
        """A station that left is kept with the time it left and its last statuses; back, it starts afresh."""
        fleet = Fleet()
        fleet.connect("CP_1", "Faulted")
        fleet.clock.advance(60)
        fleet.leave("CP_1")
        record = fleet.activity.departed["CP_1"]
        self.assertEqual(record.left, T0 + 60)
        self.assertEqual(record.connectors["1"].status, "Faulted")
        fleet.connect("CP_1")
        self.assertNotIn("CP_1", fleet.activity.departed)
        self.assertEqual(fleet.activity.stations["CP_1"].connectors, {})

    def test_memory_is_capped(self):
        """Beyond the cap, the station gone longest is forgotten first."""
        self.patch(activity_module, "DEPARTED_LIMIT", 3)
        fleet = Fleet()
        for number in range(5):
            fleet.connect(f"CP_{number}")
            fleet.clock.advance(1)
            fleet.leave(f"CP_{number}")
        self.assertEqual(list(fleet.activity.departed), ["CP_2", "CP_3", "CP_4"])

    def test_forgotten_after_a_day_unless_named(self):
        """Stations gone a day are forgotten by the sweep, except those named in client_names."""
        fleet = Fleet()
        for station_id in ("CP_OLD", "CP_NAMED", "CP_RECENT"):
            fleet.connect(station_id)
        fleet.leave("CP_OLD")
        fleet.leave("CP_NAMED")
        fleet.clock.advance(FORGET_AFTER - 10)
        fleet.leave("CP_RECENT")
        fleet.clock.advance(11)
        fleet.activity.forget_departed({"CP_NAMED"}.__contains__)
        self.assertEqual(list(fleet.activity.departed), ["CP_NAMED", "CP_RECENT"])


class ListingTests(SynchronousTestCase):
    def setUp(self):
        fleet = self.fleet = Fleet()
        fleet.connect("CP_A", "Charging", links={"primary": FakeLink(), "secondary": FakeLink(False)})
        fleet.connect("CP_B", "Faulted", "Charging")
        fleet.connect("CP_C", "Available", links={"primary": FakeLink(False, gave_up=True)})
        fleet.connect("CP_GONE_1")
        fleet.connect("CP_GONE_2", "Faulted")
        fleet.clock.advance(10)
        fleet.leave("CP_GONE_1")
        fleet.clock.advance(10)
        fleet.leave("CP_GONE_2")
        self.names = {"CP_NEVER": "Dépôt Süd", "CP_A": "Gare, borne 1"}

    def test_counts_and_links(self):
        """Counts cover the whole fleet whatever the query; every upstream's links by state."""
        listing = self.fleet.listing(self.names, q="nothing matches")
        self.assertEqual(listing["counts"], {"connected": 3, "offline": 3, "faulted": 1, "charging": 2})
        states = {name: {state: links[state] for state in LINK_STATES} for name, links in listing["upstreams"].items()}
        self.assertEqual(
            states,
            {
                "primary": {"connected": 2, "reconnecting": 0, "given_up": 1},
                "secondary": {"connected": 0, "reconnecting": 1, "given_up": 0},
            },
        )
        self.assertEqual(listing["upstreams"]["primary"]["roles"]["primary"], states["primary"])
        self.assertEqual(listing["upstreams"]["secondary"]["roles"]["mirror"], states["secondary"])
        self.assertEqual((listing["total"], listing["stations"]), (0, []))

    def test_order_offline_then_faulted(self):
        """Offline first (the last to leave first, never seen last), then faulted, then the others by id."""
        listing = self.fleet.listing(self.names)
        self.assertEqual(ids(listing), ["CP_GONE_2", "CP_GONE_1", "CP_NEVER", "CP_B", "CP_A", "CP_C"])
        states = [station["state"] for station in listing["stations"]]
        self.assertEqual(states, ["offline", "offline", "offline", "faulted", "charging", "connected"])

    def test_offline_entry(self):
        """An offline station says when it left, its last statuses, and has no address or links."""
        gone, _, never = self.fleet.listing(self.names, state="offline")["stations"]
        self.assertEqual(gone["left"], "2027-01-15T08:00:20.000Z")
        self.assertEqual(gone["connectors"]["1"]["status"], "Faulted")
        self.assertEqual((gone["remote"], gone["connected_since"], gone["upstreams"]), (None, None, {}))
        self.assertEqual((never["name"], never["left"], never["last_message"]), ("Dépôt Süd", None, None))

    def test_filters(self):
        """Each state filter keeps its stations: faulted and charging are connected stations, and may overlap."""
        cases = {
            "connected": ["CP_B", "CP_A", "CP_C"],
            "offline": ["CP_GONE_2", "CP_GONE_1", "CP_NEVER"],
            "faulted": ["CP_B"],
            "charging": ["CP_B", "CP_A"],
        }
        for state, expected in cases.items():
            self.assertEqual(ids(self.fleet.listing(self.names, state=state)), expected, state)

    def test_search_by_id_or_name(self):
        """The search finds a part of the id or of the human name, in any case."""
        self.assertEqual(ids(self.fleet.listing(self.names, q="gone")), ["CP_GONE_2", "CP_GONE_1"])
        self.assertEqual(ids(self.fleet.listing(self.names, q="GARE")), ["CP_A"])
        self.assertEqual(ids(self.fleet.listing(self.names, q="süd", state="offline")), ["CP_NEVER"])
        self.assertEqual(ids(self.fleet.listing(self.names, q="süd", state="connected")), [])

    def test_pages(self):
        """offset and limit cut the ordered list; total counts every match."""
        listing = self.fleet.listing(self.names, offset=2, limit=2)
        self.assertEqual((listing["total"], listing["offset"], listing["limit"]), (6, 2, 2))
        self.assertEqual(ids(listing), ["CP_NEVER", "CP_B"])

    def test_reconnected_station_is_not_offline(self):
        """A station back online leaves the offline list; one still in its handshake stays on it."""
        self.fleet.connect("CP_GONE_1")
        self.fleet.proxy.sessions["CP_GONE_2"] = FakeSession({}, connected_since=None)
        self.assertEqual(ids(self.fleet.listing(state="offline")), ["CP_GONE_2"])


class QueryTests(SynchronousTestCase):
    def test_defaults_and_values(self):
        self.assertEqual(parse_query({}), StationQuery("", "", 0, 100))
        query = parse_query({b"q": [b" Gare "], b"state": [b"offline"], b"offset": [b"20"], b"limit": [b"5"]})
        self.assertEqual(query, StationQuery("Gare", "offline", 20, 5))
        self.assertEqual(parse_query({b"state": [b"all"]}).state, "")

    def test_bad_values_name_the_parameter(self):
        cases = {
            b"state": (b"ofline", "state: one of all, connected, offline, faulted, charging, not 'ofline'"),
            b"limit": (b"0", "limit: a whole number from 1 to 1000, not '0'"),
            b"offset": (b"-1", "offset: a whole number from 0 to 1000000000, not '-1'"),
            b"q": (b"\xff", "q: not UTF-8"),
        }
        for name, (value, message) in cases.items():
            with self.assertRaises(QueryError) as caught:
                parse_query({name: [value]})
            self.assertEqual(str(caught.exception), message)


class RecentAlertsTests(SynchronousTestCase):
    def test_last_hundred_with_outcomes(self):
        """The last alerts are kept, newest first, with each channel's outcome; older ones are dropped."""
        clock = Clock()
        recent = RecentAlerts(clock)
        sent = [Alert("station_silent", f"CP_{n}", f"silent {n}", "") for n in range(RECENT_LIMIT + 5)]
        for alert in sent:
            recent.alert_sent(alert, ["email", "pushover"])
        recent.alert_outcome(sent[-1], "email", "sent")
        recent.alert_outcome(sent[-1], "pushover", "failed")
        recent.alert_outcome(sent[0], "email", "sent")  # long gone: ignored
        document = alerts_document(recent, StationNames({"CP_104": "Gare"}), clock.seconds())
        self.assertEqual(len(document["alerts"]), RECENT_LIMIT)
        newest = document["alerts"][0]
        self.assertEqual(
            newest,
            {
                "time": "1970-01-01T00:00:00.000Z",
                "station": "CP_104",
                "name": "Gare",
                "kind": "station_silent",
                "subject": "silent 104",
                "channels": {"email": "sent", "pushover": "failed"},
            },
        )
        self.assertEqual(document["alerts"][1]["channels"], {"email": "pending", "pushover": "pending"})
        self.assertEqual(document["alerts"][-1]["station"], "CP_5")

    def test_last_hour_to_the_minute(self):
        """The hour's count includes alerts of the last 60 minutes and forgets older ones."""
        clock = Clock()
        recent = RecentAlerts(clock)
        for _ in range(3):
            recent.alert_sent(Alert("k", "", "s", ""), [])
        clock.advance(1800)
        recent.alert_sent(Alert("k", "CP_1", "s", ""), [])
        self.assertEqual(recent.last_hour(), 4)
        clock.advance(1800)
        self.assertEqual(recent.last_hour(), 1)
        clock.advance(3600)
        self.assertEqual(recent.last_hour(), 0)


class NotifierReportsTests(SynchronousTestCase):
    """The notifier's hook: which alert went to which channel, and what became of it."""

    def test_sent_and_failed_per_channel(self):
        clock = Clock()
        pending_email: Deferred = Deferred()
        settings = NotifyConfig(events=frozenset(["connected_to_proxy"]), max_attempts=1)
        notifier = NotifierService(
            settings,
            StationNames({}),
            clock,
            {"email": lambda alert: pending_email, "pushover": lambda alert: fail(DeliveryError("HTTP 400", False))},
            {},
            links_connected=lambda upstream: 0,
            alert_observer=(recent := RecentAlerts(clock)),
        )
        notifier.station_connected("CP_1", "peer")
        (entry,) = recent.recent
        self.assertEqual((entry.alert.key, entry.alert.station_id), ("connected_to_proxy", "CP_1"))
        self.assertEqual(entry.channels, {"email": "pending", "pushover": "failed"})
        pending_email.callback(None)
        self.assertEqual(entry.channels, {"email": "sent", "pushover": "failed"})

    def test_without_observer_nothing_changes(self):
        """No observer (no status page): alerts go out as before."""
        sent = []
        notifier = NotifierService(
            NotifyConfig(events=frozenset(["connected_to_proxy"])),
            StationNames({}),
            Clock(),
            {"email": lambda alert: succeed(sent.append(alert))},
            {},
            links_connected=lambda upstream: 0,
        )
        notifier.station_connected("CP_1", "peer")
        self.assertEqual([alert.key for alert in sent], ["connected_to_proxy"])


class PageTests(SynchronousTestCase):
    def test_text_from_stations_cannot_end_the_script(self):
        """A name with </script> stays inside the page's data; the deep link's values are escaped attributes."""
        fleet = Fleet()
        fleet.connect("CP_1")
        names = {"CP_1": "</script><script>alert(1)</script>"}
        listing = fleet.listing(names)
        alerts = alerts_document(RecentAlerts(fleet.clock), StationNames(names), T0)
        page = render_page(listing, alerts, q='"><img src=x>', state="offline").decode()
        self.assertEqual(page.count("<script"), 2)  # the data and the page's own script
        self.assertNotIn("<img", page)
        self.assertIn('value="&quot;&gt;&lt;img src=x&gt;"', page)
        self.assertIn('<option value="offline" selected>', page)
        data = page.split('<script id="data" type="application/json">')[1].split("</script>")[0]
        self.assertEqual(json.loads(data)["stations"]["stations"][0]["name"], names["CP_1"])
        self.assertIn('<meta name="viewport" content="width=device-width, initial-scale=1">', page)


class ReadingChangesNothingTests(SynchronousTestCase):
    """Reading the page or /stations never changes state; the stations gone too long go by a periodic sweep."""

    def service(self, fleet: Fleet, named=()) -> StatusService:
        names = StationNames({station_id: station_id for station_id in named})
        return StatusService("tcp:0", fleet.clock, fleet.proxy, fleet.activity, no_notifier(names))

    def gone_a_day(self) -> Fleet:
        fleet = Fleet()
        for station_id in ("CP_OLD", "CP_NAMED"):
            fleet.connect(station_id)
            fleet.leave(station_id)
        fleet.clock.advance(FORGET_AFTER + 1)
        return fleet

    def test_reading_forgets_nothing(self):
        """A station gone a day is still listed however often the list is read, while the sweep has not run."""
        fleet = self.gone_a_day()
        status = self.service(fleet, named=["CP_NAMED"])
        for _ in range(3):
            listed = [entry["id"] for entry in status.stations()["stations"]]
        self.assertEqual(sorted(listed), ["CP_NAMED", "CP_OLD"])
        self.assertEqual(sorted(fleet.activity.departed), ["CP_NAMED", "CP_OLD"])

    def test_periodic_sweep_forgets_the_stations_gone_too_long(self):
        """Once running, the status service's sweep (a TimerService child) forgets them, named ones kept."""
        fleet = self.gone_a_day()
        status = self.service(fleet, named=["CP_NAMED"])
        forget = status.getServiceNamed("forget")
        self.assertIsInstance(forget, TimerService)
        forget.startService()
        self.addCleanup(forget.stopService)
        self.assertEqual(sorted(fleet.activity.departed), ["CP_NAMED", "CP_OLD"])  # one interval after start
        fleet.clock.advance(FORGET_EVERY)
        self.assertEqual(list(fleet.activity.departed), ["CP_NAMED"])

    def test_listener_is_a_stream_server_endpoint_service(self):
        """The page listens through a StreamServerEndpointService child, as the proxy does."""
        status = self.service(Fleet())
        self.assertIsInstance(status.getServiceNamed("listener"), StreamServerEndpointService)
