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

    def test_invalid(self):
        self.assertRaises(ValueError, RateLimiter, 0, 10, 1.0, self.clock)
        self.assertRaises(ValueError, RateLimiter, 20, 10, 1.0, self.clock)
        self.assertRaises(ValueError, RateLimiter, 1, 10, 0, self.clock)
