"""
The WebSocket frames of a relayed OCPP-J message, read and written without Autobahn's
general machinery. Pure: bytes in, bytes out.

Nearly every frame the proxy sees is one whole text message in one frame (FIN set, no
extension bits, no fragmentation), under 64 KiB. L{read_text_frame} and L{text_frame}
handle exactly those, as RFC 6455 says, and nothing else: any other frame (control,
binary, fragmented, oversized, badly masked, invalid UTF-8, or incomplete) is left to
Autobahn, which then applies its own rules (close codes included) as before.
"""

from __future__ import annotations

from collections.abc import Callable

_TEXT_FIN = 0x81  # FIN, no RSV bits, opcode 1 (text)
_MASK_BIT = 0x80
FAST_LIMIT = 0xFFFF  # payloads up to this size (a 16-bit length at most)


# int.from_bytes as a global: through the type, each call would cost an attribute lookup
# CPython 3.11 does not specialise; and the bit masks of the short lengths (where Python
# integers mask quicker than a C call, see ocppproxy.fastpath.nvx) made once (about 12 KiB).
_from_bytes = int.from_bytes
SHORT = 128
"""Payloads shorter than this are masked here with Python integers, whatever masker is given: quicker than any call."""
_LOW_BITS = tuple((1 << (length << 3)) - 1 for length in range(SHORT))
# The two header bytes of a short frame, unmasked and masked.
_HEADERS = tuple(bytes((_TEXT_FIN, length)) for length in range(126))
_MASKED_HEADERS = tuple(bytes((_TEXT_FIN, _MASK_BIT | length)) for length in range(126))


def xor_mask(payload: bytes, key: bytes) -> bytes:
    """C{payload} XOR the 4-byte C{key} repeated (masking and unmasking are the same)."""
    length = len(payload)
    # The key repeated to whole words, cut to the payload's length by the bit mask.
    stream = _from_bytes(key * ((length + 3) >> 2), "little")
    low_bits = _LOW_BITS[length] if length < SHORT else (1 << (length << 3)) - 1
    return (_from_bytes(payload, "little") ^ (stream & low_bits)).to_bytes(length, "little")


def read_text_frame(
    data: bytes, start: int, masked: bool, limit: int, unmask: Callable[[bytes, bytes], bytes] = xor_mask
) -> tuple[bytes, int] | None:
    """
    The payload of the single-frame text message at C{data[start:]} and where the next
    frame starts, or None if what is there is not a complete such frame (or is masked
    when C{masked} is false or the other way round, longer than C{limit}, or not UTF-8).
    A masked payload is unmasked with C{unmask} (L{xor_mask} or an equal, quicker one)
    from L{SHORT} bytes, below as L{xor_mask} does.
    """
    end = len(data)
    if end - start < 2 or data[start] != _TEXT_FIN:
        return None
    second = data[start + 1]
    if bool(second & _MASK_BIT) != masked:
        return None
    length = second & 0x7F
    position = start + 2
    if length == 126:
        if end - position < 2:
            return None
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 126:  # not the minimal encoding: Autobahn decides
            return None
        position += 2
    elif length == 127:
        return None
    if length > limit:
        return None
    if masked:
        key = data[position : position + 4]
        position += 4
    stop = position + length
    if stop > end:
        return None
    payload = data[position:stop]
    if masked:
        if length < SHORT:  # L{xor_mask}, without the call
            stream = _from_bytes(key * ((length + 3) >> 2), "little") & _LOW_BITS[length]
            payload = (_from_bytes(payload, "little") ^ stream).to_bytes(length, "little")
        else:
            payload = unmask(payload, key)
    if not payload.isascii():  # ASCII (nearly every OCPP-J frame) is UTF-8, checked without decoding
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return payload, stop


def text_frame(
    payload: bytes, mask: bytes | None = None, apply_mask: Callable[[bytes, bytes], bytes] = xor_mask
) -> bytes:
    """
    One FIN text frame carrying C{payload} (at most L{FAST_LIMIT} bytes), masked with
    C{mask} if given (by C{apply_mask}: L{xor_mask} or an equal, quicker one, from
    L{SHORT} bytes; below as L{xor_mask} does).
    """
    length = len(payload)
    if mask is None:
        if length <= 125:
            return _HEADERS[length] + payload
        return bytes((_TEXT_FIN, 126)) + length.to_bytes(2, "big") + payload
    if length < SHORT:  # L{xor_mask}, without the call
        stream = _from_bytes(mask * ((length + 3) >> 2), "little") & _LOW_BITS[length]
        masked = (_from_bytes(payload, "little") ^ stream).to_bytes(length, "little")
    else:
        masked = apply_mask(payload, mask)
    if length <= 125:
        return _MASKED_HEADERS[length] + mask + masked
    return bytes((_TEXT_FIN, _MASK_BIT | 126)) + length.to_bytes(2, "big") + mask + masked
