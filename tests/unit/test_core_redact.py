"""What the proxy shows of a frame: credentials and the operator's redact keys masked (ocppproxy.core.redact)."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.redact import MASK, Redactor

from ..tables import add_table_tests

SECRET = "s3cret-Pa55"

CHANGE_CONFIGURATION = json.dumps([2, "1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": SECRET}])
SET_VARIABLES = json.dumps(
    [
        2,
        "2",
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "60",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                },
                {
                    "attributeType": "Actual",
                    "attributeValue": SECRET,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                },
            ]
        },
    ]
)
SET_NETWORK_PROFILE = json.dumps(
    [
        2,
        "3",
        "SetNetworkProfile",
        {
            "configurationSlot": 1,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example.com/ocpp",
                "messageTimeout": 30,
                "securityProfile": 2,
                "ocppInterface": "Wireless0",
                "apn": {"apn": "internet", "apnUserName": "user", "apnPassword": SECRET, "apnAuthentication": "AUTO"},
                "vpn": {"server": "vpn.example.com", "user": "u", "password": SECRET, "key": SECRET, "type": "IPSec"},
            },
        },
    ]
)


def masked(frame: str, path: list) -> str:
    """C{frame} (JSON text) with the value at C{path} replaced by the mask, as the redactor writes it."""
    value = json.loads(frame)
    place = value
    for step in path[:-1]:
        place = place[step]
    place[path[-1]] = MASK
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def run(redactor: Redactor, row: tuple):
    what, frame = row
    if what == "text":
        return redactor.text(frame)
    if what == "shown":  # whether the secret survives in what is shown
        return SECRET in redactor.text(frame)
    if what == "value":
        return redactor.value(frame)
    if what == "same":  # the very object, nothing copied
        return redactor.value(frame) is frame
    raise AssertionError(what)


CASES = {
    "ocpp16_authorization_key": (
        "1.6 ChangeConfiguration AuthorizationKey: the value is masked, the key name stays; other keys are untouched.",
        (),
        [
            (("text", CHANGE_CONFIGURATION), masked(CHANGE_CONFIGURATION, [3, "value"])),
            (("text", CHANGE_CONFIGURATION.encode()), masked(CHANGE_CONFIGURATION, [3, "value"])),
            (
                ("text", '[2,"1","ChangeConfiguration",{"key":"authorizationkey","value":"x"}]'),
                '[2,"1","ChangeConfiguration",{"key":"authorizationkey","value":"***"}]',
            ),
            (
                ("text", '[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]'),
                '[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]',
            ),
        ],
    ),
    "key_in_an_answer": (
        "A GetConfiguration answer that reports AuthorizationKey has its value masked; the others are kept.",
        (),
        [
            (
                (
                    "text",
                    '[3,"9",{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,"value":"60"},'
                    '{"key":"AuthorizationKey","readonly":false,"value":"' + SECRET + '"}]}]',
                ),
                '[3,"9",{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,"value":"60"},'
                '{"key":"AuthorizationKey","readonly":false,"value":"***"}]}]',
            ),
            (
                (
                    "shown",
                    '[3,"9",{"getVariableResult":[{"attributeStatus":"Accepted","attributeValue":"' + SECRET + '",'
                    '"component":{"name":"SecurityCtrlr"},"variable":{"name":"BasicAuthPassword"}}]}]',
                ),
                False,
            ),
        ],
    ),
    "ocpp201_basic_auth_password": (
        "2.0.1/2.1 SetVariables BasicAuthPassword: its attributeValue is masked, the other variables' are not.",
        (),
        [(("text", SET_VARIABLES), masked(SET_VARIABLES, [3, "setVariableData", 1, "attributeValue"]))],
    ),
    "ocpp201_reports": (
        "NotifyReport's variableAttribute values and NotifyEvent's actualValue of BasicAuthPassword are masked.",
        (),
        [
            (
                (
                    "value",
                    {
                        "reportData": [
                            {
                                "component": {"name": "SecurityCtrlr"},
                                "variable": {"name": "BasicAuthPassword"},
                                "variableAttribute": [{"type": "Actual", "value": SECRET}, {"type": "Target"}],
                            }
                        ]
                    },
                ),
                {
                    "reportData": [
                        {
                            "component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "BasicAuthPassword"},
                            "variableAttribute": [{"type": "Actual", "value": MASK}, {"type": "Target"}],
                        }
                    ]
                },
            ),
            (
                ("value", {"eventData": [{"actualValue": SECRET, "variable": {"name": "BasicAuthPassword"}}]}),
                {"eventData": [{"actualValue": MASK, "variable": {"name": "BasicAuthPassword"}}]},
            ),
        ],
    ),
    "set_network_profile": (
        "SetNetworkProfile: apn.apnPassword, vpn.password and vpn.key are masked; user names, servers, types are not.",
        (),
        [
            (
                ("value", json.loads(SET_NETWORK_PROFILE)),
                json.loads(
                    masked(
                        masked(
                            masked(SET_NETWORK_PROFILE, [3, "connectionData", "apn", "apnPassword"]),
                            [3, "connectionData", "vpn", "password"],
                        ),
                        [3, "connectionData", "vpn", "key"],
                    )
                ),
            ),
            (("shown", SET_NETWORK_PROFILE), False),
            # "password" and "key" elsewhere are not secrets of the defaults.
            (("value", {"key": "Foo", "password": "p"}), {"key": "Foo", "password": "p"}),
        ],
    ),
    "ocpp21_key_names_anywhere": (
        "The default names are masked as keys anywhere (2.1's basicAuthPassword in a network profile, DataTransfer).",
        (),
        [
            (
                ("value", {"networkConnectionProfile": {"basicAuthPassword": SECRET}}),
                {"networkConnectionProfile": {"basicAuthPassword": MASK}},
            ),
            (("value", {"data": {"AuthorizationKey": {"nested": SECRET}}}), {"data": {"AuthorizationKey": MASK}}),
        ],
    ),
    "unicode_escapes": (
        "A name spelt with \\u escapes (or another case) is masked all the same.",
        (),
        [
            (("shown", '[2,"1","C",{"key":"Authorization\\u004bey","value":"' + SECRET + '"}]'), False),
            (("shown", '[2,"1","C",{"\\u006bey":"AUTHORIZATIONKEY","value":"' + SECRET + '"}]'), False),
            (("shown", '[2,"1","X",{"\\u0076pn":{"password":"' + SECRET + '"}}]'), False),
            (("shown", '[2,"1","X",{"Authorization\u212aey":"' + SECRET + '"}]'), False),
        ],
    ),
    "extra_keys_anywhere": (
        "redact keys are masked at any depth, in lists too, an object or list value whole; case matters.",
        ("idTag", "idToken"),
        [
            (("text", '[2,"1","Authorize",{"idTag":"ABC123"}]'), '[2,"1","Authorize",{"idTag":"***"}]'),
            (
                ("text", '[2,"1","TransactionEvent",{"idToken":{"idToken":"ABC","type":"ISO14443"},"seqNo":1}]'),
                '[2,"1","TransactionEvent",{"idToken":"***","seqNo":1}]',
            ),
            (
                ("value", [3, "1", {"list": [{"idTag": ["a", "b"]}, {"other": 1}]}]),
                [3, "1", {"list": [{"idTag": MASK}, {"other": 1}]}],
            ),
            (("value", {"IDTAG": "kept"}), {"IDTAG": "kept"}),
            # A frame mentioning a name but holding nothing to mask is shown verbatim, spacing included.
            (("text", '[2, "1", "Authorize", {"note": "idTag"}]'), '[2, "1", "Authorize", {"note": "idTag"}]'),
        ],
    ),
    "untouched_frames_verbatim": (
        "A frame with nothing to mask is returned as it is (spacing, escapes, non-ASCII), and values are not copied.",
        (),
        [
            (("text", '[2, "1", "Heartbeat", {}]'), '[2, "1", "Heartbeat", {}]'),
            (("text", '[2,"1","DataTransfer",{"data":"\\u00e9 é"}]'), '[2,"1","DataTransfer",{"data":"\\u00e9 é"}]'),
            (("text", b"\xff["), "\ufffd["),
            (("same", {"a": [1, {"b": "c"}], "key": "HeartbeatInterval", "value": "1"}), True),
        ],
    ),
    "quoted_in_a_text": (
        "A string quoting a masked name within a longer text (an error echoing the frame) is masked whole.",
        (),
        [
            (
                ("text", json.dumps([4, "1", "FormationViolation", "bad payload " + CHANGE_CONFIGURATION, {}])),
                json.dumps([4, "1", "FormationViolation", MASK, {}], separators=(",", ":")),
            ),
            (("value", {"variable": {"name": "BasicAuthPassword"}}), {"variable": {"name": "BasicAuthPassword"}}),
        ],
    ),
    "malformed_frames": (
        "A frame that is not JSON and mentions a masked name is not shown, only its length; one that does not is.",
        ("idTag",),
        [
            (
                ("text", '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"' + SECRET),
                "(not JSON, 75 characters, not shown: it mentions a masked key)",
            ),
            (("shown", '{"key":"Authorization\\u004Bey","value":"' + SECRET + '"'), False),
            (("shown", 'vpn password="' + SECRET + '"'), False),
            (("shown", '[2,"1","Authorize",{"idTag":"' + SECRET), False),
            (("text", '[2,"1","Heartbeat",{'), '[2,"1","Heartbeat",{'),
            (("text", '[2,"1","Heartbeat",{"x":"\\"'), '[2,"1","Heartbeat",{"x":"\\"'),
        ],
    ),
}


class RedactorTests(SynchronousTestCase):
    """Redactor.text / value, case by case."""

    def test_shorten_masks_before_cutting(self):
        """The 120 characters a warning quotes are cut from the masked text: a secret early in the frame is gone."""
        frame = '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"' + SECRET + '"}' + " " * 200 + "]"
        shown = Redactor().shorten(frame)
        self.assertNotIn(SECRET, shown)
        self.assertLessEqual(len(shown), 123)

    def test_nested_too_deep(self):
        """A frame nested deeper than the parser goes is not shown if it names a key; a deep value is masked whole."""
        deep = "[" * 100_000 + '{"AuthorizationKey":"' + SECRET + '"}' + "]" * 100_000
        self.assertEqual(
            Redactor().text(deep), f"(nested too deep, {len(deep)} characters, not shown: it mentions a masked key)"
        )
        value: list = ["AuthorizationKey=" + SECRET]
        for _ in range(100_000):
            value = [value]
        self.assertEqual(Redactor().value(value), MASK)

    def test_keys_kept(self):
        """The operator's keys are kept as given."""
        self.assertEqual(Redactor(["idTag", "idToken"]).keys, frozenset(("idTag", "idToken")))


add_table_tests(RedactorTests, CASES, lambda keys: Redactor(keys), run)
