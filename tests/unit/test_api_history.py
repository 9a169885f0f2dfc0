"""The API's frame history (bounded, kept an hour after leaving) and its SSE streams (bounded buffer)."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ocppproxy.api.history import FrameTrace
from ocppproxy.api.sse import KEEPALIVE_COMMENT, EventStream, event_bytes
from ocppproxy.core.frame_history import FrameHistory
from ocppproxy.core.redact import Redactor


class HistoryTests(SynchronousTestCase):
    def test_bounded_per_station(self):
        """Only the last `limit` frames are kept, numbered on; `after` gives those above a number."""
        history = FrameHistory(3)
        for number in range(5):
            history.add("CP_1", "from_station", None, f"[{number}]".encode(), float(number))
        frames = history.frames("CP_1")
        self.assertEqual([frame.number for frame in frames], [3, 4, 5])
        self.assertEqual([frame.payload for frame in history.frames("CP_1", after=4)], [b"[4]"])

    def test_kept_an_hour_after_leaving(self):
        """A departed station's frames stay readable for an hour, then are forgotten; a return keeps them."""
        history = FrameHistory(10)
        history.add("CP_1", "from_station", None, b"[1]", 0.0)
        history.add("CP_2", "from_station", None, b"[2]", 0.0)
        history.left("CP_1", 10.0)
        history.left("CP_2", 10.0)
        history.add("CP_2", "from_station", None, b"[3]", 20.0)
        self.assertEqual(history.forget(3609.0), 0)
        self.assertTrue(history.known("CP_1"))
        self.assertEqual(history.forget(3610.0), 1)
        self.assertFalse(history.known("CP_1"))
        self.assertTrue(history.known("CP_2"))
        self.assertEqual(len(history), 1)


class FakeTransport:
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


def sse_request() -> DummyRequest:
    request = DummyRequest([b"api"])
    request.transport = FakeTransport()
    request.registerProducer = lambda producer, streaming: setattr(request, "producer", producer)
    request.unregisterProducer = lambda: None
    return request


class StreamTests(SynchronousTestCase):
    def test_event_format(self):
        """id, event and one data line per line of text."""
        self.assertEqual(event_bytes("a\nb", 7, "x"), b"id: 7\nevent: x\ndata: a\ndata: b\n\n")

    def test_slow_reader_cut_off_past_the_bound(self):
        """While the transport has paused the stream, events wait; past max_buffer bytes the reader is cut off."""
        closed = []
        request = sse_request()
        stream = EventStream(request, closed.append, max_buffer=100)
        stream.start()
        stream.send(b"x" * 60)
        written = len(request.written)
        stream.pauseProducing()
        stream.send(b"y" * 60)
        self.assertEqual(len(request.written), written)
        self.assertFalse(stream.closed)
        stream.send(b"z" * 60)
        self.assertTrue(stream.cut_off)
        self.assertTrue(request.transport.aborted)
        self.assertEqual(closed, [stream])

    def test_resumed_reader_gets_what_waited(self):
        """A reader that drains gets the waiting events, in order."""
        request = sse_request()
        stream = EventStream(request, lambda _: None, max_buffer=1000)
        stream.start()
        stream.pauseProducing()
        stream.send(b"a")
        stream.send(b"b")
        stream.resumeProducing()
        self.assertEqual(request.written[-2:], [b"a", b"b"])

    def test_silent_stream_sends_keepalive_comments(self):
        """Only a stream silent for a whole interval gets a comment line; none once closed, no timer left."""
        clock = Clock()
        request = sse_request()
        stream = EventStream(request, lambda _: None, clock=clock, keepalive=15.0)
        stream.start()
        clock.advance(15.0)
        self.assertEqual(request.written[-1], KEEPALIVE_COMMENT)
        stream.send(b"data: x\n\n")
        clock.advance(15.0)
        self.assertEqual(request.written[-1], b"data: x\n\n")  # an event went out in that interval
        clock.advance(15.0)
        self.assertEqual(request.written[-1], KEEPALIVE_COMMENT)
        self.assertEqual(request.written.count(KEEPALIVE_COMMENT), 2)
        stream.pauseProducing()
        clock.advance(15.0)
        self.assertEqual(request.written.count(KEEPALIVE_COMMENT), 2)  # a slow reader gets nothing more
        stream.stopProducing()
        self.assertEqual(clock.getDelayedCalls(), [])


class TraceTests(SynchronousTestCase):
    def test_follow_resumes_and_redacts(self):
        """A follower gets the kept frames above Last-Event-ID, then new ones, AuthorizationKey masked."""
        clock = Clock()
        trace = FrameTrace(FrameHistory(10), clock, Redactor())
        trace.frame_crossed("CP_1", "from_station", None, b'[2,"1","Heartbeat",{}]')
        trace.frame_crossed("CP_1", "to_station", None, b'[3,"1",{}]')
        request = sse_request()
        stream = EventStream(request, lambda closed: trace.unfollow("CP_1", closed))
        stream.start()
        trace.follow("CP_1", stream, after=1)
        secret = b'[2,"2","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cr3t"}]'
        trace.frame_crossed("CP_1", "from_upstream", "primary", secret)
        text = b"".join(request.written).decode()
        self.assertNotIn("Heartbeat", text)
        self.assertIn("id: 2\n", text)
        self.assertIn("id: 3\n", text)
        self.assertNotIn("s3cr3t", text)
        event = json.loads(text.rsplit("data: ", 1)[1])
        self.assertEqual((event["direction"], event["upstream"]), ("from_upstream", "primary"))
        self.assertEqual(trace.followers(), 1)
        stream.stopProducing()
        self.assertEqual(trace.followers(), 0)
