"""
Tests for L{jailtwist.control}: the AMP control channel, its authorization
by peer credentials, the event stream and the single-instance check.
"""

import os
import socket
import struct

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase

import jailtwist
from jailtwist import control
from jailtwist.control import (ANONYMOUS, MAX_COMMAND, MAX_EVENTS_IN_FLIGHT,
                               AttachProbe, Authorization, BadRequest,
                               ControlClient, ControlFactory, EventStream,
                               IEventStream, IJailDirectory, IProbeControl,
                               ListJails, ListProbes, NotAuthorized,
                               NotServed, PeerCredentials, Ping, RemoveProbe,
                               Subscribe, UnknownProbe)
from jailtwist.errors import JailtwistError
from tests import harness

ROOT = PeerCredentials(pid=1, uid=0, gid=0)
USER = PeerCredentials(pid=2, uid=1000, gid=1000, groups=(100,))
ADMIN = PeerCredentials(pid=3, uid=1001, gid=1001, groups=(4242,))


@implementer(IProbeControl)
class FakeProbes:
    """
    Records what the control channel asks of a probe service.
    """

    def __init__(self):
        self.attached = []
        self.removed = []
        self.probes = {}

    def attach(self, request, owner):
        self.attached.append((request, owner))
        info = {"probe": len(self.attached), "jail": request.jail,
                "title": request.title or "t", "command": request.command,
                "respawn": request.respawn, "uid": request.uid or 0,
                "gid": request.gid or 0, "state": "planted", "pid": 4321,
                "fired": 0, "owner": owner.uid}
        self.probes[info["probe"]] = info
        return info

    def remove(self, probeId):
        if probeId not in self.probes:
            raise UnknownProbe(f"no probe {probeId}")
        del self.probes[probeId]
        self.removed.append(probeId)

    def describe(self):
        return list(self.probes.values())


@implementer(IJailDirectory)
class FakeJails:
    def jails(self):
        return [{"jid": 3, "name": "web", "path": "/srv/web",
                 "initPid": 77, "isolation": "pid,fs"}]


class Bogus(amp.Command):
    arguments = [(b"x", amp.Integer())]
    response = []


class ChannelTests(SynchronousTestCase):
    """
    The control channel between an AMP client and server connected in
    memory.
    """

    def connect(self, peer=ROOT, authorization=None, probes="fake",
                jails=None):
        self.clock = Clock()
        self.events = EventStream(self.clock)
        self.probes = FakeProbes() if probes == "fake" else probes
        self.received = []
        factory = ControlFactory(self.events, authorization,
                                 probes=self.probes, jails=jails,
                                 services=("control", "probes"),
                                 credentialsOf=lambda transport: peer)
        client, server, pump = connectedServerAndClient(
            lambda: factory.buildProtocol(None),
            lambda: ControlClient(self.received.append))
        self.server = server
        self.pump = pump
        return client

    def call(self, client, command, /, **kw):
        """
        Call C{command} and pump until it is answered.

        @return: a Deferred that has the answer already (AMP drops the
            connection for an error nobody handles when it arrives, so the
            outcome is taken before pumping).
        """
        outcome = []
        client.callRemote(command, **kw).addBoth(outcome.append)
        self.pump.flush()
        if not outcome:
            return Deferred()
        if isinstance(outcome[0], Failure):
            return fail(outcome[0])
        return succeed(outcome[0])

    def test_interfaces(self):
        verifyObject(IEventStream, EventStream(Clock()))
        verifyObject(IProbeControl, FakeProbes())
        verifyObject(IJailDirectory, FakeJails())

    def test_ping(self):
        client = self.connect(peer=ANONYMOUS)
        result = self.successResultOf(self.call(client, Ping))
        self.assertEqual(result["version"], jailtwist.__version__)
        self.assertEqual(result["pid"], os.getpid())
        self.assertEqual(result["services"], ["control", "probes"])

    def test_attachAsRoot(self):
        client = self.connect()
        result = self.successResultOf(self.call(
            client, AttachProbe, jail="web", command="reboot-web",
            respawn="after", uid=5, title="WEB_REBOOT"))
        self.assertEqual(result["probe"], 1)
        self.assertEqual(result["pid"], 4321)
        [(request, owner)] = self.probes.attached
        self.assertEqual((request.jail, request.command, request.respawn,
                          request.uid, request.gid, request.title),
                         ("web", "reboot-web", "after", 5, 5, "WEB_REBOOT"))
        self.assertIs(owner, ROOT)

    def test_attachDefaults(self):
        client = self.connect()
        self.successResultOf(self.call(client, AttachProbe, jail="3",
                                       command="true"))
        [(request, owner)] = self.probes.attached
        self.assertEqual((request.respawn, request.uid, request.gid,
                          request.title), ("none", None, None, None))

    def test_attachRefusedForOrdinaryUser(self):
        client = self.connect(peer=USER, authorization=Authorization(
            adminGid=4242, eventsForAll=True))
        failure = self.failureResultOf(
            self.call(client, AttachProbe, jail="web", command="true"),
            NotAuthorized)
        self.assertIn("root or the admin group", str(failure.value))
        self.assertEqual(self.probes.attached, [])

    def test_attachRefusedForAnonymous(self):
        client = self.connect(peer=ANONYMOUS)
        self.failureResultOf(
            self.call(client, AttachProbe, jail="web", command="true"),
            NotAuthorized)

    def test_attachByAdminGroup(self):
        client = self.connect(peer=ADMIN,
                              authorization=Authorization(adminGid=4242))
        self.successResultOf(self.call(client, AttachProbe, jail="web",
                                       command="true"))
        self.assertIs(self.probes.attached[0][1], ADMIN)

    def test_badRequests(self):
        client = self.connect()
        cases = [
            dict(jail="web", command="x" * (MAX_COMMAND + 1)),
            dict(jail="web", command="   "),
            dict(jail="web", command="a\0b"),
            dict(jail="", command="true"),
            dict(jail="we\nb", command="true"),
            dict(jail="web", command="true", respawn="sometimes"),
            dict(jail="web", command="true", uid=-1),
            dict(jail="web", command="true", gid=2 ** 32),
            dict(jail="web", command="true", title="a\x1b[2Jb"),
            dict(jail="web", command="true", title="x" * 201),
        ]
        for arguments in cases:
            failure = self.failureResultOf(
                self.call(client, AttachProbe, **arguments), BadRequest)
            self.assertTrue(str(failure.value), arguments)
        self.assertEqual(self.probes.attached, [])

    def test_remove(self):
        client = self.connect()
        self.successResultOf(self.call(client, AttachProbe, jail="web",
                                       command="true"))
        self.successResultOf(self.call(client, RemoveProbe, probe=1))
        self.assertEqual(self.probes.removed, [1])
        self.failureResultOf(self.call(client, RemoveProbe, probe=1),
                             UnknownProbe)

    def test_removeRefused(self):
        client = self.connect(peer=USER,
                              authorization=Authorization(eventsForAll=True))
        self.failureResultOf(self.call(client, RemoveProbe, probe=1),
                             NotAuthorized)

    def test_listProbes(self):
        client = self.connect()
        self.successResultOf(self.call(client, AttachProbe, jail="web",
                                       command="true", title="T"))
        result = self.successResultOf(self.call(client, ListProbes))
        [probe] = result["probes"]
        self.assertEqual((probe["probe"], probe["jail"], probe["title"],
                          probe["state"], probe["pid"]),
                         (1, "web", "T", "planted", 4321))

    def test_listNeedsWatcher(self):
        client = self.connect(peer=USER)
        self.failureResultOf(self.call(client, ListProbes), NotAuthorized)
        self.failureResultOf(self.call(client, ListJails), NotAuthorized)
        self.failureResultOf(self.call(client, Subscribe), NotAuthorized)

    def test_eventGroup(self):
        client = self.connect(peer=USER,
                              authorization=Authorization(eventGid=100))
        self.successResultOf(self.call(client, ListProbes))
        self.failureResultOf(
            self.call(client, AttachProbe, jail="web", command="true"),
            NotAuthorized)

    def test_listJails(self):
        client = self.connect(jails=FakeJails())
        result = self.successResultOf(self.call(client, ListJails))
        self.assertEqual(result["jails"], FakeJails().jails())

    def test_notServed(self):
        client = self.connect(probes=None)
        self.failureResultOf(
            self.call(client, AttachProbe, jail="web", command="true"),
            NotServed)
        self.failureResultOf(self.call(client, ListJails), NotServed)

    def test_unknownCommand(self):
        client = self.connect()
        self.failureResultOf(self.call(client, Bogus, x=1),
                             amp.UnhandledCommand)
        self.successResultOf(self.call(client, Ping))

    def test_events(self):
        client = self.connect()
        self.successResultOf(self.call(client, Subscribe))
        self.clock.advance(12.5)
        self.events.publish("probe-fired", probe=1, jail="web")
        self.pump.flush()
        [event] = self.received
        self.assertEqual((event.kind, event.time, event.fields),
                         ("probe-fired", 12.5, {"probe": 1, "jail": "web"}))

    def test_eventKinds(self):
        client = self.connect()
        self.successResultOf(self.call(client, Subscribe,
                                       kinds=["jail-gone"]))
        self.events.publish("probe-fired", probe=1)
        self.events.publish("jail-gone", probe=1)
        self.pump.flush()
        self.assertEqual([e.kind for e in self.received], ["jail-gone"])

    def test_subscriptionEndsWithConnection(self):
        client = self.connect()
        self.successResultOf(self.call(client, Subscribe))
        self.assertEqual(self.events.subscriberCount, 1)
        client.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.events.subscriberCount, 0)
        self.events.publish("probe-fired", probe=1)

    def test_slowSubscriber(self):
        """
        A subscriber that does not acknowledge events gets at most
        L{MAX_EVENTS_IN_FLIGHT} of them; the rest are counted and announced
        as one C{events-dropped} event once it catches up.
        """
        client = self.connect()
        self.successResultOf(self.call(client, Subscribe))
        for n in range(MAX_EVENTS_IN_FLIGHT + 10):
            self.events.publish("tick", n=n)
        self.assertEqual(self.server._inFlight, MAX_EVENTS_IN_FLIGHT)
        self.pump.flush()
        self.assertEqual(len(self.received), MAX_EVENTS_IN_FLIGHT)
        self.events.publish("tick", n=-1)
        self.pump.flush()
        self.assertEqual([(e.kind, e.fields) for e in self.received[-2:]],
                         [("events-dropped", {"count": 10}),
                          ("tick", {"n": -1})])

    def test_failingSubscriber(self):
        calls = []
        stream = EventStream(Clock())

        def broken(event):
            raise RuntimeError("boom")
        stream.subscribe(broken)
        stream.subscribe(calls.append)
        stream.publish("x")
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def _rawBox(pairs):
    return control._encodeBox(dict(pairs))


def _parseBoxes(data):
    boxes, box, key = [], {}, None
    while data:
        length = struct.unpack("!H", data[:2])[0]
        item, data = data[2:2 + length], data[2 + length:]
        if key is None:
            if not item:
                boxes.append(box)
                box = {}
            else:
                key = item
        else:
            box[key] = item
            key = None
    return boxes


class HostileInputTests(SynchronousTestCase):
    """
    Whatever a client sends, the server answers with an AMP error or closes
    that one connection: it never raises out of C{dataReceived}.
    """

    def server(self):
        factory = ControlFactory(EventStream(Clock()), probes=FakeProbes(),
                                 credentialsOf=lambda transport: ROOT)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_oversizedCommand(self):
        protocol, transport = self.server()
        protocol.dataReceived(_rawBox([
            (b"_command", b"AttachProbe"), (b"_ask", b"1"),
            (b"jail", b"web"), (b"command", b"x" * 60000)]))
        [box] = _parseBoxes(transport.value())
        self.assertEqual(box[b"_error_code"], b"BAD_REQUEST")
        self.assertFalse(transport.disconnecting)

    def test_badArgument(self):
        protocol, transport = self.server()
        protocol.dataReceived(_rawBox([
            (b"_command", b"RemoveProbe"), (b"_ask", b"7"),
            (b"probe", b"not-a-number")]))
        [box] = _parseBoxes(transport.value())
        self.assertEqual(box[b"_error"], b"7")
        self.assertEqual(box[b"_error_code"], b"BAD_REQUEST")
        self.assertIn(b"RemoveProbe: malformed argument",
                      box[b"_error_description"])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertFalse(transport.disconnecting)

    def test_missingArgument(self):
        protocol, transport = self.server()
        protocol.dataReceived(_rawBox([
            (b"_command", b"AttachProbe"), (b"_ask", b"8"),
            (b"jail", b"web")]))
        [box] = _parseBoxes(transport.value())
        self.assertEqual(box[b"_error"], b"8")
        self.assertEqual(box[b"_error_code"], b"BAD_REQUEST")
        self.assertEqual(box[b"_error_description"],
                         b"AttachProbe: missing argument 'command'")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertFalse(transport.disconnecting)

    def test_garbage(self):
        protocol, transport = self.server()
        protocol.dataReceived(b"\x01\x00" + b"k" * 256 + b"\xff\xff" * 10)
        protocol.dataReceived(os.urandom(2000))
        self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()

    def test_answerWithoutQuestion(self):
        """
        An answer or error to a question the server never asked closes the
        connection (AMP itself would raise out of C{dataReceived}).
        """
        for key in (b"_answer", b"_error"):
            protocol, transport = self.server()
            protocol.dataReceived(_rawBox([(key, b"99")]))
            self.assertTrue(transport.disconnecting)


class AuthorizationTests(SynchronousTestCase):

    def test_root(self):
        policy = Authorization()
        self.assertTrue(policy.mayAdminister(ROOT))
        self.assertTrue(policy.mayWatch(ROOT))
        self.assertFalse(policy.mayAdminister(USER))
        self.assertFalse(policy.mayWatch(USER))
        self.assertFalse(policy.mayWatch(ANONYMOUS))

    def test_groups(self):
        policy = Authorization(adminGid=4242, eventGid=100)
        self.assertTrue(policy.mayAdminister(ADMIN))
        self.assertTrue(policy.mayWatch(ADMIN))
        self.assertFalse(policy.mayAdminister(USER))
        self.assertTrue(policy.mayWatch(USER))
        primary = PeerCredentials(uid=5, gid=4242)
        self.assertTrue(policy.mayAdminister(primary))

    def test_eventsForAll(self):
        policy = Authorization(eventsForAll=True)
        self.assertTrue(policy.mayWatch(USER))
        self.assertFalse(policy.mayWatch(ANONYMOUS))
        self.assertFalse(policy.mayAdminister(USER))


class PeerCredentialsTests(SynchronousTestCase):

    def test_unixSocket(self):
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(left.close)
        self.addCleanup(right.close)

        class Transport:
            def getHandle(self):
                return left
        peer = control.peerCredentials(Transport())
        self.assertEqual((peer.pid, peer.uid, peer.gid),
                         (os.getpid(), os.getuid(), os.getgid()))
        self.assertTrue(set(os.getgroups()) <= peer.groups)

    def test_noSocket(self):
        self.assertIs(control.peerCredentials(StringTransport()), ANONYMOUS)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(tcp.close)

        class Transport:
            def getHandle(self):
                return tcp
        self.assertIs(control.peerCredentials(Transport()), ANONYMOUS)


class EndpointTests(SynchronousTestCase):

    def test_ipcEndpoint(self):
        self.assertEqual(control.ipcEndpoint("/run/x.pipe"),
                         "unix:/run/x.pipe:mode=600")
        self.assertEqual(control.ipcEndpoint("/run/a:b"),
                         "unix:/run/a\\:b:mode=600")
        self.assertEqual(control.ipcEndpoint("unix:/x:mode=660"),
                         "unix:/x:mode=660")
        self.assertEqual(control.ipcEndpoint("tcp:7000"), "tcp:7000")

    def test_endpointPath(self):
        self.assertEqual(control.endpointPath("unix:/run/x:mode=600"),
                         "/run/x")
        self.assertEqual(control.endpointPath("unix:address=/run/x"),
                         "/run/x")
        self.assertEqual(control.endpointPath("unix:/run/a\\:b:mode=600"),
                         "/run/a:b")
        self.assertIsNone(control.endpointPath("tcp:7000"))

    def test_clientDescription(self):
        self.assertEqual(
            control.clientEndpointDescription("unix:/run/x:mode=600"),
            "unix:path=/run/x")
        self.assertEqual(
            control.clientEndpointDescription(
                "tcp:7000:interface=127.0.0.2"),
            "tcp:host=127.0.0.2:port=7000")


class SingleInstanceTests(TestCase):
    """
    L{control.pingSocket} and L{control.claimSocket} against real sockets.
    """

    def setUp(self):
        self.directory = harness.shortTempDir(self)
        self.path = self.directory.child("ctl").path

    def test_nothing(self):
        self.assertIsNone(control.pingSocket(self.path))
        control.claimSocket(f"unix:{self.path}:mode=600")

    def test_notASocket(self):
        self.directory.child("ctl").setContent(b"x")
        error = self.assertRaises(JailtwistError, control.pingSocket,
                                  self.path)
        self.assertIn("is not a socket", str(error))

    def test_staleSocket(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.close()
        os.symlink("1", self.path + ".lock")
        self.assertIsNone(control.pingSocket(self.path))
        control.claimSocket(f"unix:{self.path}:mode=600")
        self.assertFalse(os.path.exists(self.path))
        self.assertFalse(os.path.lexists(self.path + ".lock"))

    def listen(self, factory):
        endpoint = serverFromString(reactor, f"unix:{self.path}:mode=600")
        d = endpoint.listen(factory)

        def listening(port):
            self.addCleanup(port.stopListening)
        return d.addCallback(listening)

    def test_liveDaemon(self):
        factory = ControlFactory(EventStream(Clock()))
        d = self.listen(factory)
        d.addCallback(lambda ignored: deferToThread(control.pingSocket,
                                                    self.path))
        d.addCallback(self.assertEqual, os.getpid())

        def claim(ignored):
            return deferToThread(control.claimSocket,
                                 f"unix:{self.path}:mode=600")
        d.addCallback(claim)

        def refused(failure):
            failure.trap(JailtwistError)
            self.assertIn(f"(pid {os.getpid()}) is running", str(failure.value))
            self.assertTrue(os.path.exists(self.path))
        d.addCallbacks(lambda ignored: self.fail("claimed a live socket"),
                       refused)
        return d

    def test_somethingElse(self):
        class Closer(Protocol):
            def dataReceived(self, data):
                self.transport.loseConnection()
        d = self.listen(Factory.forProtocol(Closer))
        d.addCallback(lambda ignored: deferToThread(control.pingSocket,
                                                    self.path))

        def refused(failure):
            failure.trap(JailtwistError)
            self.assertIn("does not answer a jailtwist ping",
                          str(failure.value))
        d.addCallbacks(lambda ignored: self.fail("pinged a non-daemon"),
                       refused)
        return d

