"""
Tests for L{jailtwist.notify}: the sd_notify datagram and the service that
sends READY=1 only once every sibling listens.
"""

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.notify import (MANAGER_VARIABLES, ReadinessService,
                              ServiceNotifier, notifyAddress)
from tests import harness


class AddressTests(SynchronousTestCase):

    def test_forms(self):
        self.assertEqual(notifyAddress("/run/systemd/notify"),
                         "/run/systemd/notify")
        self.assertEqual(notifyAddress("@sd-notify"), b"\0sd-notify")
        for bad in ("", "@", "relative", "vsock:2:1234"):
            self.assertIsNone(notifyAddress(bad), bad)


class NotifierTests(SynchronousTestCase):

    def test_noSocket(self):
        """
        Without NOTIFY_SOCKET nothing is sent and nothing fails.
        """
        notifier = ServiceNotifier(environ={})
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.notify(READY=1))

    def test_pathAndAbstract(self):
        for abstract in (False, True):
            listener = harness.NotifySocket(self, abstract=abstract)
            environ = dict(listener.environ, WATCHDOG_USEC="1000",
                           PATH="/bin")
            notifier = ServiceNotifier(environ=environ)
            self.addCleanup(notifier.close)
            self.assertTrue(notifier.notify(READY=1, STATUS="up"))
            self.assertEqual(listener.receive(5),
                             {"READY": "1", "STATUS": "up"})
            # Taken out, so that no child can notify as the daemon.
            self.assertEqual(environ, {"PATH": "/bin"})
        self.assertIn("NOTIFY_SOCKET", MANAGER_VARIABLES)

    def test_unreachable(self):
        notifier = ServiceNotifier(environ={"NOTIFY_SOCKET": "/nonexistent"})
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.notify(READY=1))

    def test_mainPidAfterFork(self):
        """
        A daemon whose pid changed since the notifier was made (twistd's
        own fork) names its new pid.
        """
        listener = harness.NotifySocket(self)
        pids = [100]
        notifier = ServiceNotifier(environ=dict(listener.environ),
                                   getpid=lambda: pids[0])
        self.addCleanup(notifier.close)
        notifier.notify(READY=1)
        pids[0] = 200
        notifier.notify(STOPPING=1)
        self.assertEqual(listener.receive(5), {"READY": "1"})
        self.assertEqual(listener.receive(5),
                         {"STOPPING": "1", "MAINPID": "200"})


class SlowEndpoint:
    """
    A server endpoint whose listen() fires only when the test says.
    """

    def __init__(self):
        self.waiting = defer.Deferred()
        self.port = None

    def listen(self, factory):
        return self.waiting

    def __str__(self):
        return "slow:endpoint"


class FakePort:
    stopped = False

    def stopListening(self):
        self.stopped = True


class RecordingNotifier:
    def __init__(self):
        self.sent = []

    def notify(self, **fields):
        self.sent.append(fields)
        return True


class ReadinessTests(SynchronousTestCase):

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.top = service.MultiService()
        inner = service.MultiService()
        inner.setServiceParent(self.top)
        self.endpoint = SlowEndpoint()
        self.port = StreamServerEndpointService(
            self.endpoint, Factory())
        self.port.setServiceParent(inner)
        self.notifier = RecordingNotifier()
        self.readiness = ReadinessService(self.notifier, "serving",
                                          self.reactor)
        self.readiness.setServiceParent(self.top)

    def test_readyOnlyOnceListening(self):
        """
        READY=1 waits for a nested endpoint's listen() Deferred; stopping
        sends STOPPING=1 first and still stops the real port.
        """
        self.top.privilegedStartService()
        self.top.startService()
        self.assertEqual(self.notifier.sent, [])
        port = FakePort()
        self.endpoint.waiting.callback(port)
        self.assertEqual(self.notifier.sent,
                         [{"READY": 1, "STATUS": "serving"}])
        self.assertTrue(self.successResultOf(self.readiness.ready))
        self.top.stopService()
        self.assertEqual(self.notifier.sent[-1],
                         {"STOPPING": 1, "STATUS": "stopping"})
        self.assertTrue(port.stopped)

    def test_failedListen(self):
        """
        A port that cannot listen: no READY=1, a STATUS saying why, and the
        daemon stops.
        """
        self.top.privilegedStartService()
        self.top.startService()
        self.endpoint.waiting.errback(OSError("address in use"))
        self.flushLoggedErrors(OSError)
        self.assertEqual(self.notifier.sent,
                         [{"STATUS": "could not listen: slow:endpoint"}])
        self.assertFalse(self.successResultOf(self.readiness.ready))
        self.assertFalse(self.reactor.hasStopped)
        self.reactor.run()
        self.assertTrue(self.reactor.hasStopped)

    def test_callableStatus(self):
        readiness = ReadinessService(self.notifier, lambda: "late")
        readiness.startService()
        self.assertEqual(self.notifier.sent, [{"READY": 1,
                                               "STATUS": "late"}])
