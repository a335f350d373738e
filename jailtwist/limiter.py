# -*- test-case-name: tests.test_limiter -*-
"""
jailkit's base/peak/interval byte budget, on an injected clock.

A socket may pass C{base} bytes per C{interval} seconds.  A window may carry
C{peak} bytes only if the window before it was I{quiet}: its demand (the
bytes admitted plus the bytes held back or dropped because they did not
fit) stayed at or below C{base}.  A window in which anything was held back
or dropped is therefore never quiet, so a socket that floods gets C{peak}
once and then C{base} per window until its demand falls below C{base} for a
whole window.  A window with no traffic at all is quiet.  Intervals are
fixed windows that start when the limiter is made (jailkit starts them when
the socket is created), not at the first message.

Unlike jailkit, which forwards the datagram that crosses a limit and then
sleeps, the limiter answers I{before} anything is sent: a datagram that does
not fit waits for the next window.  A window that is still empty admits one
datagram whatever its size, so a datagram larger than the whole budget is
delayed, never starved.
"""

from zope.interface import Attribute, Interface, implementer


class IRateLimiter(Interface):
    """
    A byte budget that renews itself in fixed windows.
    """

    base = Attribute("Bytes allowed per interval.")
    peak = Attribute("Bytes allowed in an interval after a quiet one.")
    interval = Attribute("The window length, in seconds.")
    used = Attribute("Bytes admitted in the current window.")
    demand = Attribute("Bytes admitted, held back or dropped in the current "
                       "window.")

    def admit(size):
        """
        Spend C{size} bytes now if the current window allows it; if not,
        count them as held back (see L{refuse}).

        @return: C{True} if admitted; C{False} if it must wait for
            L{nextWindow}.
        """

    def nextWindow():
        """
        @return: the clock time at which the current window ends.
        """

    def room():
        """
        The bytes the current window still allows, for a caller that admits
        a batch itself and then calls L{spend} and L{refuse}; negative when
        overspent.  While L{used} is 0 one datagram of any size fits.
        """

    def spend(size):
        """
        Count C{size} admitted bytes against the current window (see
        L{room}).
        """

    def refuse(size):
        """
        Count C{size} bytes that did not fit the current window and were
        held back or dropped: the window is not quiet.
        """


@implementer(IRateLimiter)
class RateLimiter:
    """
    The budget of one socket.
    """

    def __init__(self, base, peak, interval, clock):
        if not 0 < base <= peak:
            raise ValueError("need 0 < base <= peak")
        if not interval > 0:
            raise ValueError("need interval > 0")
        self.base = base
        self.peak = peak
        self.interval = interval
        self._clock = clock
        self.windowStart = clock.seconds()
        self.used = 0
        self.demand = 0
        # Nothing came before the first window: it may peak.
        self._quietBefore = True

    def allowance(self):
        """
        @return: the bytes the current window may carry in all.
        """
        return self.peak if self._quietBefore else self.base

    def _roll(self, now):
        elapsed = int((now - self.windowStart) // self.interval)
        if elapsed <= 0:
            return
        # The window just before the new one is the current one when exactly
        # one ended, or an empty (so quiet) one when more did.
        self._quietBefore = elapsed > 1 or self.demand <= self.base
        self.windowStart += elapsed * self.interval
        self.used = self.demand = 0

    def admit(self, size):
        now = self._clock.seconds()
        if now >= self.windowStart + self.interval:
            self._roll(now)
        self.demand += size
        if self.used and self.used + size > (
                self.peak if self._quietBefore else self.base):
            return False
        self.used += size
        return True

    def room(self):
        now = self._clock.seconds()
        if now >= self.windowStart + self.interval:
            self._roll(now)
        return (self.peak if self._quietBefore else self.base) - self.used

    def spend(self, size):
        self.used += size
        self.demand += size

    def refuse(self, size):
        now = self._clock.seconds()
        if now >= self.windowStart + self.interval:
            self._roll(now)
        self.demand += size

    def nextWindow(self):
        now = self._clock.seconds()
        if now >= self.windowStart + self.interval:
            self._roll(now)
        return self.windowStart + self.interval
