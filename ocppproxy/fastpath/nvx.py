"""
Frame masking in C: Autobahn's NVX masker, in its wheels since 25.9.1 as the private
module C{_nvx_xormasker} (a cffi binding: C{nvx_xormask_new}, C{nvx_xormask_process},
C{nvx_xormask_free}, which autobahn/nvx/_xormasker.py wraps for Autobahn's own frames).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from .wsframes import xor_mask

# Payloads this long and longer are masked in C: below, the C call's set-up costs more
# than L{xor_mask}'s Python integers (0.43 against 0.62 µs at 30 bytes, equal at 128).
NVX_FROM = 128


@cache
def nvx_xor_mask() -> Callable[[bytes, bytes], bytes] | None:
    """
    L{xor_mask} done by Autobahn's NVX C masker from L{NVX_FROM} bytes, or None where this
    Autobahn has none (one function, whoever asks: protocols with equal options share a
    class only if they mask with the same one). As quick as L{xor_mask}'s Python integers at 128 bytes, twice as
    quick at 500, five times at 2 KB (see the performance report).
    """
    try:
        from _nvx_xormasker import ffi, lib
    except ImportError:
        return None
    new, process, free, null, from_buffer = (
        lib.nvx_xormask_new,
        lib.nvx_xormask_process,
        lib.nvx_xormask_free,
        ffi.NULL,
        ffi.from_buffer,
    )

    def nvx_mask(payload: bytes, key: bytes) -> bytes:
        """C{payload} XOR the 4-byte C{key} repeated, in C (below L{NVX_FROM} bytes, L{xor_mask} is quicker)."""
        if len(payload) < NVX_FROM:
            return xor_mask(payload, key)
        masker = new(key)
        if masker == null:  # out of memory: the slow way still works
            return xor_mask(payload, key)
        data = bytearray(payload)
        process(masker, from_buffer(data), len(data))
        free(masker)
        return bytes(data)

    return nvx_mask
