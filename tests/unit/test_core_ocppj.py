"""
OCPP-J frames (L{ocppproxy.core.ocppj}), as a table: the text a peer sends in, what
routing reads of it out, or the reason it is a bad frame and the CALLERROR that answers it.

Rows: ("parse", text) expecting (type name, message id, action, body) or ("bad", reason);
("reply", text, subprotocol) expecting the CALLERROR text or None; ("shorten", text, limit)
expecting the log copy.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import FrameError, format_error_reply, parse_frame, shorten

from ..tables import add_table_tests


def run_row(_subject, row):
    what, *args = row
    if what == "parse":
        try:
            frame = parse_frame(args[0].encode())
        except FrameError as error:
            return ("bad", str(error))
        return (frame.kind_name, frame.message_id, frame.action, frame.body)
    if what == "reply":
        text, subprotocol = args
        reply = format_error_reply(text.encode(), subprotocol)
        return None if reply is None else reply.decode()
    if what == "shorten":
        text, limit = args
        return shorten(text.encode(), limit)
    raise AssertionError(what)


def malformed(message_id, code):
    return f'[4, "{message_id}", "{code}", "malformed CALL", {{}}]'


# (docstring, settings (none), rows of (input, expected))
CASES = {
    "every_message_type": (
        "CALL, CALLRESULT, CALLERROR and OCPP 2.1's CALLRESULTERROR and SEND give what routing needs.",
        {},
        [
            (("parse", '[2,"1","Heartbeat",{}]'), ("CALL", "1", "Heartbeat", {})),
            (("parse", '[3,"1",{"currentTime":"x"}]'), ("CALLRESULT", "1", None, {"currentTime": "x"})),
            (("parse", '[4,"1","NotSupported","no",{}]'), ("CALLERROR", "1", None, "NotSupported")),
            (("parse", '[5,"1","InternalError","oops",{}]'), ("CALLRESULTERROR", "1", None, "InternalError")),
            (
                ("parse", '[6,"1","NotifyPeriodicEventStream",{"id":1}]'),
                ("SEND", "1", "NotifyPeriodicEventStream", {"id": 1}),
            ),
            (("parse", ' [ 2 , "é" , "A" , [] ] '), ("CALL", "é", "A", [])),
            (("parse", '[2,"1","A",{}]\r\n\t '), ("CALL", "1", "A", {})),
        ],
    ),
    "bad_frames_named": (
        "Each kind of bad frame is named in the reason the log line gives.",
        {},
        [
            (("parse", "hello"), ("bad", "not JSON")),
            (("parse", ""), ("bad", "not JSON")),
            (("parse", '[2,"1","Heartbeat",{}] [3]'), ("bad", "not JSON")),
            (("parse", '[2,"1","Heartbeat",{}]x'), ("bad", "not JSON")),
            (("parse", '[2,"1","Heartbeat",{'), ("bad", "not JSON")),
            (("parse", '{"a":1}'), ("bad", "not a JSON array")),
            (("parse", "[]"), ("bad", "not a JSON array")),
            (("parse", '[7,"1",{}]'), ("bad", "unknown message type 7")),
            (("parse", '[true,"1",{}]'), ("bad", "unknown message type True")),
            (("parse", '[{"key":"AuthorizationKey","value":"x"},"1",{}]'), ("bad", "unknown message type of type dict")),
            (("parse", '[[2],"1",{}]'), ("bad", "unknown message type of type list")),
            (("parse", '["' + "2" * 21 + '","1",{}]'), ("bad", "unknown message type of type str")),
            (("parse", '[2,"1","Heartbeat"]'), ("bad", "CALL must have 4 elements, has 3")),
            (("parse", '[3,"1",{},{}]'), ("bad", "CALLRESULT must have 3 elements, has 4")),
            (("parse", '[2,1,"Heartbeat",{}]'), ("bad", "message id is not a non-empty string")),
            (("parse", '[2,"","Heartbeat",{}]'), ("bad", "message id is not a non-empty string")),
            (("parse", '[2,"1","",{}]'), ("bad", "action is not a non-empty string")),
            (("parse", '[6,"1",null,{}]'), ("bad", "action is not a non-empty string")),
        ],
    ),
    "bad_call_answered_in_the_version_s_words": (
        "A bad CALL whose id can be read gets FormationViolation in OCPP 1.6 (and by default), FormatViolation in 2.x.",
        {},
        [
            (("reply", '[2,"9","Heartbeat"]', "ocpp1.6"), malformed("9", "FormationViolation")),
            (("reply", '[2,"9","Heartbeat"]', None), malformed("9", "FormationViolation")),
            (("reply", '[2,"9"]', "ocpp2.0.1"), malformed("9", "FormatViolation")),
            (("reply", '[2,"9",5,{}]', "ocpp2.1"), malformed("9", "FormatViolation")),
        ],
    ),
    "no_answer_without_a_readable_call_id": (
        "Not JSON, not a CALL, or no usable id (missing, empty, not a string, over 36 characters): no CALLERROR.",
        {},
        [
            (("reply", "hello", "ocpp1.6"), None),
            (("reply", '[3,"9"]', "ocpp1.6"), None),
            (("reply", "[2]", "ocpp1.6"), None),
            (("reply", '[2,""]', "ocpp1.6"), None),
            (("reply", "[2,9]", "ocpp1.6"), None),
            (("reply", f'[2,"{"x" * 37}"]', "ocpp1.6"), None),
            (("reply", f'[2,"{"x" * 36}"]', "ocpp1.6"), malformed("x" * 36, "FormationViolation")),
        ],
    ),
    "log_copies_bounded": (
        "Frames are copied into log lines shortened, undecodable bytes replaced.",
        {},
        [
            (("shorten", "short", 120), "short"),
            (("shorten", "x" * 130, 120), "x" * 120 + "..."),
        ],
    ),
}


class FrameTests(SynchronousTestCase):
    """One test per case of CASES."""

    def test_undecodable_bytes(self):
        """Bytes that are not UTF-8 are not JSON, and are shown replaced in the log copy."""
        with self.assertRaises(FrameError) as caught:
            parse_frame(b"\xff[2]")
        self.assertEqual(str(caught.exception), "not JSON")
        self.assertEqual(shorten(b"\xff[2]"), "\ufffd[2]")


add_table_tests(FrameTests, CASES, lambda settings: None, run_row)
