"""
OCPP 1.6 transaction ids for the secondary (L{TransactionIdTranslator} and its
L{TransactionStore}), as a table.

Rows: ("station", text) the station sends a frame, expecting the text the secondary gets;
("primary" | "secondary", text) that upstream answers (noted, nothing expected);
("secondary call", text) the secondary's CALL, expecting the text the station gets;
("stored",) expecting the store's dump for all stations.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.transactions import PER_STATION_LIMIT, TransactionIdTranslator, TransactionStore

from ..tables import add_table_tests


def run_row(subject, row):
    translator, store = subject
    what, *args = row
    if what == "stored":
        return store.dump()
    text = args[0]
    frame, payload = parse_frame(text), text.encode()
    if what == "station":
        translator.station_frame(frame)
        return translator.to_secondary(frame, payload).decode()
    if what in ("primary", "secondary"):
        translator.upstream_frame(what, frame)
        return None
    if what == "secondary call":
        return translator.from_secondary(frame, payload).decode()
    raise AssertionError(what)


def pair(primary_id, secondary_id):
    """How the store dumps a transaction the station knows by the primary's id, with the secondary's own id."""
    return [primary_id, {"primary": primary_id, "secondary": secondary_id}]


def started(primary_id, secondary_id, message_id="t1"):
    """Rows of a StartTransaction both upstreams answered with their ids."""
    return [
        (("station", f'[2,"{message_id}","StartTransaction",{{"connectorId":1,"idTag":"T"}}]'), None),
        (("primary", f'[3,"{message_id}",{{"transactionId":{primary_id}}}]'), None),
        (("secondary", f'[3,"{message_id}",{{"transactionId":{secondary_id}}}]'), None),
    ]


# (docstring, settings (none here), rows of (input, expected)); expected None: not checked
CASES = {
    "meter_values_and_stop_translated": (
        "MeterValues and StopTransaction reach the secondary with its own id; after the stop the pair is forgotten.",
        {},
        [
            *started(201, 3),
            (("stored",), {"CP_1": [pair(201, 3)]}),
            (
                ("station", '[2,"m1","MeterValues",{"connectorId":1,"transactionId":201,"meterValue":[]}]'),
                '[2,"m1","MeterValues",{"connectorId":1,"transactionId":3,"meterValue":[]}]',
            ),
            (
                ("station", '[2,"s1","StopTransaction",{"transactionId":201,"meterStop":10}]'),
                '[2,"s1","StopTransaction",{"transactionId":3,"meterStop":10}]',
            ),
            (("stored",), {}),
            (
                ("station", '[2,"m2","MeterValues",{"transactionId":201}]'),
                '[2,"m2","MeterValues",{"transactionId":201}]',
            ),
        ],
    ),
    "secondary_calls_translated_back": (
        "The secondary's RemoteStopTransaction and SetChargingProfile reach the station with the primary's id.",
        {},
        [
            *started(201, 7),
            (
                ("secondary call", '[2,"r1","RemoteStopTransaction",{"transactionId":7}]'),
                '[2,"r1","RemoteStopTransaction",{"transactionId":201}]',
            ),
            (
                (
                    "secondary call",
                    '[2,"p1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"transactionId":7,"a":1}}]',
                ),
                '[2,"p1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"transactionId":201,"a":1}}]',
            ),
        ],
    ),
    "unknown_ids_and_other_frames_untouched": (
        "Frames without a known id, and other actions, pass byte for byte.",
        {},
        [
            *started(201, 7),
            (
                ("station", '[2,"m1", "MeterValues", {"transactionId": 999}]'),
                '[2,"m1", "MeterValues", {"transactionId": 999}]',
            ),
            (("station", '[2,"h1","Heartbeat",{}]'), '[2,"h1","Heartbeat",{}]'),
            (("station", '[3,"x",{"transactionId":201}]'), '[3,"x",{"transactionId":201}]'),
            (
                ("secondary call", '[2,"r2","RemoteStopTransaction",{"transactionId":8}]'),
                '[2,"r2","RemoteStopTransaction",{"transactionId":8}]',
            ),
            (
                ("secondary call", '[2,"p2","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"a":1}}]'),
                '[2,"p2","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"a":1}}]',
            ),
            (
                ("secondary call", '[2,"c1","GetConfiguration",{"transactionId":7}]'),
                '[2,"c1","GetConfiguration",{"transactionId":7}]',
            ),
        ],
    ),
    "only_integer_ids_of_starts_are_kept": (
        "The station's id (the primary's answer) is kept; an id that is not an integer, or an answer to no"
        " StartTransaction, is not.",
        {},
        [
            (("station", '[2,"t1","StartTransaction",{}]'), None),
            (("primary", '[3,"t1",{"transactionId":201}]'), None),
            (("secondary", '[3,"t1",{"transactionId":"7"}]'), None),
            (("stored",), {"CP_1": [[201, {"primary": 201}]]}),
            (("primary", '[3,"other",{"transactionId":5}]'), None),
            (("secondary", '[3,"other",{"transactionId":6}]'), None),
            (("stored",), {"CP_1": [[201, {"primary": 201}]]}),
        ],
    ),
    "store_bounded_per_station": (
        "At most PER_STATION_LIMIT pairs per station, the oldest forgotten first.",
        {},
        [
            *[row for n in range(PER_STATION_LIMIT + 1) for row in started(1000 + n, n, f"t{n}")],
            (("stored",), {"CP_1": [pair(1000 + n, n) for n in range(1, PER_STATION_LIMIT + 1)]}),
        ],
    ),
}


def translator_for(settings):
    """A translator for station CP_1 and the store it fills."""
    store = TransactionStore()
    return TransactionIdTranslator("CP_1", store), store


class TransactionIdTests(SynchronousTestCase):
    """One test per case of CASES."""


add_table_tests(TransactionIdTests, CASES, translator_for, run_row)
