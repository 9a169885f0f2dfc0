"""
OCPP-J frames (the JSON-over-WebSocket RPC of OCPP 1.6, 2.0.1 and 2.1): parsing and the
few fields routing needs. Pure: no I/O, no reactor.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

CALL = 2
CALLRESULT = 3
CALLERROR = 4
CALLRESULTERROR = 5  # OCPP 2.1
SEND = 6  # OCPP 2.1, unconfirmed

ANSWERS = frozenset((CALLRESULT, CALLERROR, CALLRESULTERROR))
REQUESTS = frozenset((CALL, SEND))
_LENGTHS = {CALL: 4, CALLRESULT: 3, CALLERROR: 5, CALLRESULTERROR: 5, SEND: 4}
_NAMES = {
    CALL: "CALL",
    CALLRESULT: "CALLRESULT",
    CALLERROR: "CALLERROR",
    CALLRESULTERROR: "CALLRESULTERROR",
    SEND: "SEND",
}


class FrameError(ValueError):
    """A text that is not a valid OCPP-J frame; the message says what is wrong."""


# json.loads without its two Python layers (one frame in costs three decodes); see L{_decode}.
_raw_decode = json.JSONDecoder().raw_decode


class Frame(NamedTuple):
    """One OCPP-J message: its type, message id, action (requests only) and decoded body."""

    kind: int
    message_id: str
    action: str | None
    body: Any

    @property
    def kind_name(self) -> str:
        """The message type's name as in the specification (CALL, CALLRESULT, ...)."""
        return _NAMES[self.kind]


# Frame(...) passes through the named tuple's Python __new__: built directly, three frames
# per relayed CALL cost about 0.2 us less.
_new_tuple = tuple.__new__


def parse_frame(data: bytes | str) -> Frame:
    """Parse one WebSocket text message; raises L{FrameError} naming the problem."""
    # The common case of L{_decode} written in (one call less per frame): UTF-8 bytes
    # holding one JSON value and nothing around it.
    try:
        message, end = _raw_decode(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (ValueError, UnicodeDecodeError):
        end = -1
    if end != len(data):
        message = _decode(data)
    if not isinstance(message, list) or not message:
        raise FrameError("not a JSON array")
    kind = message[0]
    try:
        length = None if isinstance(kind, bool) else _LENGTHS.get(kind)
    except TypeError:  # an object or a list: not hashable, and no message type
        length = None
    if length is None:
        # Quoted only when short and plain: the reason is logged, and the frame may hold a secret.
        shown = repr(kind) if isinstance(kind, (int, float)) or (isinstance(kind, str) and len(kind) <= 20) else None
        raise FrameError(f"unknown message type {shown or 'of type ' + type(kind).__name__}")
    if len(message) != length:
        raise FrameError(f"{_NAMES[kind]} must have {length} elements, has {len(message)}")
    message_id = message[1]
    if not isinstance(message_id, str) or not message_id:
        raise FrameError("message id is not a non-empty string")
    if kind in REQUESTS:
        action = message[2]
        if not isinstance(action, str) or not action:
            raise FrameError("action is not a non-empty string")
        return _new_tuple(Frame, (kind, message_id, action, message[3]))
    return _new_tuple(Frame, (kind, message_id, None, message[2]))


def _decode(data: bytes | str) -> Any:
    """The JSON value of a frame, as C{json.loads} reads it; raises L{FrameError}."""
    try:
        # Decoded first: json.loads would otherwise guess the encoding of bytes each time.
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise FrameError("not JSON") from None
    try:
        value, end = _raw_decode(text)
    except ValueError:
        end = -1
    if end != len(text):  # white space around it, more after it, or not JSON: as json.loads decides
        try:
            value = json.loads(text)
        except ValueError:
            raise FrameError("not JSON") from None
    return value


def shorten(data: bytes | str, limit: int = 120) -> str:
    """A printable, bounded copy of a frame for log lines."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else text[:limit] + "..."


def call_error(message_id: str, code: str, description: str) -> bytes:
    """A CALLERROR frame answering C{message_id}."""
    return json.dumps([CALLERROR, message_id, code, description, {}]).encode()


def format_error_reply(data: bytes | str, subprotocol: str | None) -> bytes | None:
    """
    The CALLERROR answering a malformed CALL whose message id can still be read, in the
    words of the negotiated OCPP version (FormationViolation in 1.6, FormatViolation in
    2.x); None when no id can be read or the frame was not meant as a CALL.
    """
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, list) or len(message) < 2 or message[0] != CALL:
        return None
    message_id = message[1]
    if not isinstance(message_id, str) or not message_id or len(message_id) > 36:
        return None
    code = "FormationViolation" if (subprotocol or "ocpp1.6").startswith("ocpp1.") else "FormatViolation"
    return call_error(message_id, code, "malformed CALL")
