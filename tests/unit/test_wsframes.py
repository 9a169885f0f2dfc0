"""The single-frame text messages ocppproxy reads and writes itself (RFC 6455), and what it leaves to Autobahn."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.fastpath.wsframes import FAST_LIMIT, read_text_frame, text_frame, xor_mask

texts = st.text(max_size=300).map(lambda text: text.encode("utf-8"))
masks = st.binary(min_size=4, max_size=4)


class FrameTests(SynchronousTestCase):
    @given(texts, masks)
    def test_masked_round_trip(self, payload, mask):
        """A masked frame written is read back whole, and ends where the frame ends."""
        frame = text_frame(payload, mask)
        self.assertEqual(read_text_frame(frame + b"\x81", 0, True, FAST_LIMIT), (payload, len(frame)))

    @given(texts)
    def test_unmasked_round_trip(self, payload):
        frame = text_frame(payload)
        self.assertEqual(read_text_frame(frame, 0, False, FAST_LIMIT), (payload, len(frame)))

    @given(texts, masks, st.data())
    def test_incomplete_frame_left_alone(self, payload, mask, data):
        """Any strict prefix of a frame is not read (Autobahn buffers it)."""
        frame = text_frame(payload, mask)
        cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
        self.assertIsNone(read_text_frame(frame[:cut], 0, True, FAST_LIMIT))

    def test_rfc6455_examples(self):
        """RFC 6455 section 5.7: "Hello", unmasked and masked with 37 fa 21 3d."""
        self.assertEqual(text_frame(b"Hello"), bytes.fromhex("810548656c6c6f"))
        masked = bytes.fromhex("818537fa213d7f9f4d5158")
        self.assertEqual(text_frame(b"Hello", bytes.fromhex("37fa213d")), masked)
        self.assertEqual(read_text_frame(masked, 0, True, FAST_LIMIT), (b"Hello", len(masked)))

    def test_16_bit_length(self):
        payload = b"x" * 300
        frame = text_frame(payload)
        self.assertEqual(frame[:4], bytes((0x81, 126)) + (300).to_bytes(2, "big"))
        self.assertEqual(read_text_frame(frame, 0, False, FAST_LIMIT), (payload, len(frame)))

    def test_other_frames_left_to_autobahn(self):
        """Binary, fragments, control frames, RSV bits, 64-bit lengths, non-minimal lengths, wrong masking,
        oversized or invalid UTF-8 payloads are not read here."""
        hello = text_frame(b"Hello")
        for frame in (
            b"\x82\x05Hello",  # binary
            b"\x01\x05Hello",  # first fragment
            b"\x89\x00",  # ping
            b"\x88\x02\x03\xe8",  # close
            b"\xc1\x05Hello",  # RSV1 (compressed)
            b"\x81\x7f" + (5).to_bytes(8, "big") + b"Hello",  # 64-bit length
            b"\x81\x7e\x00\x05Hello",  # 16-bit length for 5 bytes
            b"\x81\x02\xc3\x28",  # invalid UTF-8
        ):
            self.assertIsNone(read_text_frame(frame, 0, False, FAST_LIMIT), frame)
        self.assertIsNone(read_text_frame(hello, 0, True, FAST_LIMIT), "unmasked where masked is required")
        self.assertIsNone(read_text_frame(text_frame(b"Hello", b"abcd"), 0, False, FAST_LIMIT), "masked from a server")
        self.assertIsNone(read_text_frame(hello, 0, False, 4), "over the size limit")

    def test_reads_from_an_offset(self):
        first, second = text_frame(b"[2]", b"\x01\x02\x03\x04"), text_frame(b"[3]", b"\x05\x06\x07\x08")
        data = first + second
        payload, position = read_text_frame(data, 0, True, FAST_LIMIT)
        self.assertEqual(read_text_frame(data, position, True, FAST_LIMIT), (b"[3]", len(data)))

    @given(st.binary(max_size=100), masks)
    def test_xor_mask_is_bytewise(self, payload, mask):
        self.assertEqual(xor_mask(payload, mask), bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
