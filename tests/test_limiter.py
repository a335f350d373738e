"""
Tests for L{jailtwist.limiter}: jailkit's budget on an injected clock.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from jailtwist.limiter import IRateLimiter, RateLimiter


class RateLimiterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.limiter = RateLimiter(500, 1000, 1.0, self.clock)

    def admitMany(self, count, size=100):
        return [self.limiter.admit(size) for _ in range(count)]

    def test_interface(self):
        verifyObject(IRateLimiter, self.limiter)

    def test_firstWindowMayPeak(self):
        """
        Nothing came before the first window, so it may carry C{peak}.
        """
        self.assertEqual(self.admitMany(11), [True] * 10 + [False])
        self.assertEqual(self.limiter.nextWindow(), 1001.0)

    def test_afterPeakOnlyBase(self):
        """
        A window that follows one above C{base} carries only C{base}.
        """
        self.admitMany(10)
        self.clock.advance(1.0)
        self.assertEqual(self.admitMany(6), [True] * 5 + [False])

    def test_peakAgainAfterQuietWindow(self):
        """
        After a window at or below C{base}, a peak is allowed again.
        """
        self.admitMany(10)
        self.clock.advance(1.0)
        self.admitMany(5)
        self.clock.advance(1.0)
        self.assertEqual(self.admitMany(11), [True] * 10 + [False])

    def test_emptyWindowsAreQuiet(self):
        """
        Several windows without traffic count as quiet.
        """
        self.admitMany(10)
        self.clock.advance(2.5)
        self.assertEqual(self.admitMany(11), [True] * 10 + [False])

    def test_fixedWindows(self):
        """
        Windows start when the limiter is made, not at the first message.
        """
        self.clock.advance(0.9)
        self.admitMany(10)
        self.assertFalse(self.limiter.admit(100))
        self.assertEqual(self.limiter.nextWindow(), 1001.0)
        self.clock.advance(0.1)
        self.assertTrue(self.limiter.admit(100))
        self.assertEqual(self.limiter.nextWindow(), 1002.0)

    def test_oversizedDatagramInFreshWindow(self):
        """
        A datagram larger than the whole budget passes in an empty window,
        so it is delayed but never starved.
        """
        self.assertTrue(self.limiter.admit(5000))
        self.assertFalse(self.limiter.admit(1))
        self.clock.advance(1.0)
        self.assertTrue(self.limiter.admit(5000))

    def test_boundaryIsInclusive(self):
        """
        Exactly C{base} bytes keep a window quiet (jailkit: over means >).
        """
        self.admitMany(5)
        self.clock.advance(1.0)
        self.assertEqual(self.admitMany(11), [True] * 10 + [False])

    def test_heldBackWindowNotQuiet(self):
        """
        A window that ends exactly at C{base} because a datagram was held
        back is not quiet: its demand was above C{base}.
        """
        self.admitMany(10)
        self.clock.advance(1.0)
        self.assertEqual(self.admitMany(6), [True] * 5 + [False])
        self.assertEqual((self.limiter.used, self.limiter.demand), (500, 600))
        self.clock.advance(1.0)
        self.assertEqual(self.admitMany(6), [True] * 5 + [False])

    def test_refusedWindowNotQuiet(self):
        """
        Bytes a caller of L{RateLimiter.room} held back or dropped count
        against the window being quiet, even while it carried little.
        """
        self.admitMany(10)
        self.clock.advance(1.0)
        self.assertEqual(self.limiter.room(), 500)
        self.limiter.spend(100)
        self.limiter.refuse(450)
        self.clock.advance(1.0)
        self.assertEqual(self.limiter.room(), 500)

    def test_invalid(self):
        self.assertRaises(ValueError, RateLimiter, 0, 10, 1.0, self.clock)
        self.assertRaises(ValueError, RateLimiter, 20, 10, 1.0, self.clock)
        self.assertRaises(ValueError, RateLimiter, 1, 10, 0, self.clock)


class FloodPatternTests(SynchronousTestCase):
    """
    Many windows of a sender that floods, pauses and floods again, with the
    limiter driven the way the relay drives it: in C{block} mode what does
    not fit waits (held, or a blocked sender) and is offered first in the
    next window; in C{drop} mode it is discarded.
    """

    def perWindow(self, overflow, pattern, size=100):
        """
        @param pattern: per window, how many new datagrams the sender has.
        @return: per window, how many bytes were admitted.
        """
        clock = Clock()
        limiter = RateLimiter(500, 1000, 1.0, clock)
        waiting = 0
        carried = []
        for new in pattern:
            waiting += new
            admitted = 0
            while waiting:
                if not limiter.admit(size):
                    break
                admitted += size
                waiting -= 1
            if overflow == "drop":
                waiting = 0
            carried.append(admitted)
            clock.advance(1.0)
        return carried

    def test_blockFlood(self):
        """
        A sender with more than C{base} every window gets C{peak} once and
        then C{base} per window, not C{(base + peak) / 2}.
        """
        self.assertEqual(self.perWindow("block", [10] * 8),
                         [1000] + [500] * 7)

    def test_blockFloodPauseFlood(self):
        """
        The backlog of a burst drains at C{base}; the window that empties
        it (demand at most C{base}) is quiet, so after the pause the next
        burst peaks again.
        """
        burst = [25, 0, 0, 0, 0, 0]
        self.assertEqual(self.perWindow("block", burst * 3),
                         [1000, 500, 500, 500, 0, 0] * 3)

    def test_blockHeldAtBaseNotQuiet(self):
        """
        A window that ends at exactly C{base} because a datagram waits is
        not quiet (the bug: it let a flood peak every other window).
        """
        self.assertEqual(self.perWindow("block", [26, 0, 0, 0, 0]),
                         [1000, 500, 500, 500, 100])

    def test_dropFloodPauseFlood(self):
        flood = [10] * 4
        self.assertEqual(self.perWindow("drop", flood + [0] + flood + [3, 20]),
                         [1000, 500, 500, 500, 0,
                          1000, 500, 500, 500, 300, 1000])

    def test_belowBaseNeverThrottled(self):
        """
        A sender whose demand never exceeds C{base} always has C{peak}
        available, in both modes.
        """
        for overflow in ("block", "drop"):
            self.assertEqual(self.perWindow(overflow, [5] * 6), [500] * 6)
