# -*- test-case-name: tests.test_control -*-
"""
The control channel every jailtwist service shares: AMP over a stream
socket (normally a unix socket), with peer-credential authorization and a
stream of jail events.

Commands (all defined here, so a client needs only this module):

  - L{Ping}: version and pid of the daemon; anyone connected may ask (the
    single-instance check of C{jaildaemon -D} is a L{Ping}).
  - L{AttachProbe}, L{RemoveProbe}: plant or remove a jaildaemon probe;
    root or members of the configured admin group only.
  - L{ListProbes}, L{ListJails}: what is planted, which jails are
    registered; admins and event readers.
  - L{Subscribe}: from now on the server sends L{Event} boxes to this
    connection (probe planted, fired, command finished, probe lost, jail
    gone, logins through the login service and their refusals, and
    whatever later services publish).
  - L{RelayBooks}: what the C{jk_socketd} relays did with every datagram
    they read; admins and event readers.

Who the peer is comes from the kernel (C{SO_PEERCRED}, C{SO_PEERGROUPS}),
never from anything the peer says.  A peer on a transport without
credentials (TCP) is anonymous and may only L{Ping}.

A malformed box, an unknown command or an oversized value is answered
with an AMP error (or, for a box that cannot even be parsed, the
connection is closed): the daemon never crashes and never waits on a
client.
"""

import json
import os
import socket
import stat
import struct

from zope.interface import Interface, implementer

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

import jailtwist
from jailtwist.errors import JailtwistError
# Shared with the login commands, which cannot import this module.
from jailtwist.loginwire import endpointPath  # noqa: F401

DEFAULT_IPC = "unix:/var/run/jaildaemon.pipe:mode=600"
DEFAULT_IPC_PATH = "/var/run/jaildaemon.pipe"

# Limits on what a client may send (AMP itself limits a value to 65535
# bytes): long enough for any sane command line, short enough for a ps line.
MAX_COMMAND = 4096
MAX_TITLE = 200
MAX_JAIL = 255

# Events sent to one subscriber and not yet acknowledged; beyond this the
# subscriber is too slow and events are dropped (and counted) for it.
MAX_EVENTS_IN_FLIGHT = 256

RESPAWN_MODES = ("none", "after", "immediate")

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


class ControlError(JailtwistError):
    """
    A refusal the control channel sends back to its client as an AMP error.
    """


class NotAuthorized(ControlError):
    """
    The peer's credentials do not allow this command.
    """


class BadRequest(ControlError):
    """
    An argument out of range: too long, an unknown mode, a bad character.
    """


class UnknownJail(ControlError):
    """
    No running jail matches what the client named.
    """


class UnknownProbe(ControlError):
    """
    No probe has this id.
    """


class ProbeFailed(ControlError):
    """
    The probe could not be planted (the jail is dying, ids not mapped...).
    """


class NotServed(ControlError):
    """
    This daemon does not run the service the command is for.
    """


_ERRORS = {
    NotAuthorized: b"NOT_AUTHORIZED",
    BadRequest: b"BAD_REQUEST",
    UnknownJail: b"UNKNOWN_JAIL",
    UnknownProbe: b"UNKNOWN_PROBE",
    ProbeFailed: b"PROBE_FAILED",
    NotServed: b"NOT_SERVED",
}


class ControlCommand(amp.Command):
    """
    A command of the control channel.  Arguments that are missing or do not
    parse are answered with a C{BAD_REQUEST} error that names them (plain
    AMP answers "Unknown Error" and logs a traceback).
    """

    @classmethod
    def parseArguments(cls, box, protocol):
        try:
            return super().parseArguments(box, protocol)
        except KeyError as e:
            name = e.args[0]
            if isinstance(name, bytes):
                name = name.decode("ascii", "replace")
            raise amp.RemoteAmpError(
                b"BAD_REQUEST",
                f"{cls.__name__}: missing argument {name!r}") from None
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            raise amp.RemoteAmpError(
                b"BAD_REQUEST",
                f"{cls.__name__}: malformed argument ({e})") from None


class Ping(ControlCommand):
    """
    Is a jailtwist daemon listening, and which?
    """
    arguments = []
    response = [(b"version", amp.Unicode()), (b"pid", amp.Integer()),
                (b"services", amp.ListOf(amp.Unicode()))]


_PROBE_FIELDS = [
    (b"probe", amp.Integer()),
    (b"jail", amp.Unicode()),
    (b"title", amp.Unicode()),
    (b"command", amp.Unicode()),
    (b"respawn", amp.Unicode()),
    (b"uid", amp.Integer()),
    (b"gid", amp.Integer()),
    (b"state", amp.Unicode()),
    (b"pid", amp.Integer(optional=True)),
    (b"fired", amp.Integer()),
    (b"owner", amp.Integer()),
]


class AttachProbe(ControlCommand):
    """
    Plant a probe in a running jail: on SIGHUP the host runs C{command}.
    """
    arguments = [
        (b"jail", amp.Unicode()),
        (b"command", amp.Unicode()),
        (b"respawn", amp.Unicode(optional=True)),
        (b"uid", amp.Integer(optional=True)),
        (b"gid", amp.Integer(optional=True)),
        (b"title", amp.Unicode(optional=True)),
    ]
    response = _PROBE_FIELDS
    errors = _ERRORS


class RemoveProbe(ControlCommand):
    """
    Kill a probe and forget it; its command does not run.
    """
    arguments = [(b"probe", amp.Integer())]
    response = []
    errors = _ERRORS


class ListProbes(ControlCommand):
    """
    Every probe the daemon knows, planted or waiting to respawn.
    """
    arguments = []
    response = [(b"probes", amp.AmpList(_PROBE_FIELDS))]
    errors = _ERRORS


class ListJails(ControlCommand):
    """
    The jails in jailtwist's registry of running jails.
    """
    arguments = []
    response = [(b"jails", amp.AmpList([
        (b"jid", amp.Integer()),
        (b"name", amp.Unicode()),
        (b"path", amp.Unicode()),
        (b"initPid", amp.Integer()),
        (b"isolation", amp.Unicode()),
    ]))]
    errors = _ERRORS


_BOOK_FIELDS = [(b"read", amp.Integer()), (b"handed", amp.Integer()),
                (b"held", amp.Integer()), (b"dropped", amp.Integer()),
                (b"empty", amp.Integer())]


class RelayBooks(ControlCommand):
    """
    The books of the C{jk_socketd} relays, per socket and in total: read =
    handed (to the host syslog) + held + dropped (C{drop} mode) + empty.
    C{queued} counts what was handed on but still waits for the host
    syslog, C{refused} what it refused outright.
    """
    arguments = []
    response = [(b"sockets", amp.AmpList(
        [(b"socket", amp.Unicode())] + _BOOK_FIELDS
        + [(b"balanced", amp.Boolean())]))] + _BOOK_FIELDS + [
        (b"balanced", amp.Boolean()), (b"queued", amp.Integer()),
        (b"refused", amp.Integer()), (b"reconnects", amp.Integer())]
    errors = _ERRORS


class Subscribe(ControlCommand):
    """
    Ask for L{Event} boxes from now on (optionally only some kinds).
    """
    arguments = [(b"kinds", amp.ListOf(amp.Unicode(), optional=True))]
    response = []
    errors = _ERRORS


class Event(ControlCommand):
    """
    Server to client: one jail event.  C{fields} is a JSON object.
    """
    arguments = [(b"kind", amp.Unicode()), (b"time", amp.Float()),
                 (b"fields", amp.Unicode())]
    response = []


class JailEvent:
    """
    One thing that happened to a jail or a probe.

    @ivar kind: what happened, e.g. C{"probe-fired"}.
    @ivar time: when, in the seconds of the publishing service's clock.
    @ivar fields: a C{dict} of JSON-serialisable details.
    """

    def __init__(self, kind, time, fields):
        self.kind = kind
        self.time = time
        self.fields = fields

    def asDict(self):
        return {"kind": self.kind, "time": self.time, **self.fields}

    def __repr__(self):
        return f"<JailEvent {self.kind} {self.fields!r}>"


class IEventStream(Interface):
    """
    Where services publish jail events and clients subscribe to them.
    """

    def publish(kind, **fields):
        """
        Send one event to every subscriber.

        @return: the L{JailEvent}.
        """

    def subscribe(callback):
        """
        Call C{callback(event)} for every later event.

        @return: a no-argument callable that ends the subscription.
        """


@implementer(IEventStream)
class EventStream:
    """
    Fan-out of L{JailEvent}s to subscribers.  The services that publish
    log what happened in their own words; the stream itself logs only a
    subscriber that fails.
    """

    log = Logger()

    def __init__(self, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock = clock
        self._subscribers = []

    def publish(self, kind, **fields):
        event = JailEvent(kind, self._clock.seconds(), fields)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                self.log.failure("event subscriber {callback} failed",
                                 callback=callback)
        return event

    def subscribe(self, callback):
        self._subscribers.append(callback)

        def unsubscribe():
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    @property
    def subscriberCount(self):
        return len(self._subscribers)


class PeerCredentials:
    """
    Who is at the other end of a connection, as the kernel says.

    @ivar uid: C{None} for a peer without credentials (not a unix socket).
    @ivar groups: the peer's gid and supplementary gids, a C{frozenset}.
    """

    def __init__(self, pid=None, uid=None, gid=None, groups=()):
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = frozenset(groups) | (
            {gid} if gid is not None else set())

    def __repr__(self):
        return (f"<PeerCredentials pid={self.pid} uid={self.uid} "
                f"gid={self.gid}>")


ANONYMOUS = PeerCredentials()


def peerCredentials(transport):
    """
    Read the credentials of the peer of a connected unix stream socket.

    @return: L{PeerCredentials}; L{ANONYMOUS} when the transport has no
        unix socket under it.
    """
    getHandle = getattr(transport, "getHandle", None)
    sock = getHandle() if getHandle is not None else None
    if not isinstance(sock, socket.socket) or sock.family != socket.AF_UNIX:
        return ANONYMOUS
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                              struct.calcsize("3i"))
    except OSError:
        return ANONYMOUS
    pid, uid, gid = struct.unpack("3i", raw)
    groups = ()
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        groups = struct.unpack(f"{len(raw) // 4}I", raw)
    except OSError:
        pass
    return PeerCredentials(pid, uid, gid, groups)


class Authorization:
    """
    Who may do what on the control channel.

    Root may do everything.  C{adminGid}: members of this group may attach
    and remove probes (the commands they attach then run as themselves, see
    L{jailtwist.probe}).  C{eventGid}: members of this group may subscribe
    to events and list probes and jails; C{eventsForAll}: every peer with
    credentials may.
    """

    def __init__(self, adminGid=None, eventGid=None, eventsForAll=False):
        self.adminGid = adminGid
        self.eventGid = eventGid
        self.eventsForAll = eventsForAll

    def mayAdminister(self, peer):
        if peer.uid is None:
            return False
        return peer.uid == 0 or (self.adminGid is not None
                                 and self.adminGid in peer.groups)

    def mayWatch(self, peer):
        if self.mayAdminister(peer):
            return True
        if peer.uid is None:
            return False
        return self.eventsForAll or (self.eventGid is not None
                                     and self.eventGid in peer.groups)


class IProbeControl(Interface):
    """
    What the control channel needs from a probe service.
    """

    def attach(request, owner):
        """
        Plant a probe.

        @param request: a L{ProbeRequest}.
        @param owner: the L{PeerCredentials} of the client asking.
        @return: a C{dict} with the keys of L{AttachProbe}'s response.
        @raise ControlError: for a refusal the client should see.
        """

    def remove(probeId):
        """
        Kill and forget a probe.

        @raise UnknownProbe: no such probe.
        """

    def describe():
        """
        @return: a C{list} of C{dict}s, one per probe, with the keys of
            L{ListProbes}'s entries.
        """


class IJailDirectory(Interface):
    """
    What the control channel needs to list jails.
    """

    def jails():
        """
        @return: a C{list} of C{dict}s with C{jid}, C{name}, C{path},
            C{initPid}, C{isolation}.
        """


class IRelayBooks(Interface):
    """
    What the control channel needs from the relays for L{RelayBooks}.
    """

    def books():
        """
        @return: a C{dict} with the keys of L{RelayBooks}'s response.
        """


class ProbeRequest:
    """
    A client's L{AttachProbe} arguments, checked.
    """

    def __init__(self, jail, command, respawn="none", uid=None, gid=None,
                 title=None):
        self.jail = jail
        self.command = command
        self.respawn = respawn
        self.uid = uid
        self.gid = gid
        self.title = title

    @classmethod
    def checked(cls, jail, command, respawn=None, uid=None, gid=None,
                title=None):
        """
        @raise BadRequest: an argument out of range, naming it.
        """
        if not jail or len(jail) > MAX_JAIL or not jail.isprintable():
            raise BadRequest(
                f"jail must be a jid, name or pid of 1 to {MAX_JAIL} "
                f"printable characters")
        if not command.strip():
            raise BadRequest("command is empty")
        if len(command.encode("utf-8", "surrogateescape")) > MAX_COMMAND:
            raise BadRequest(f"command is longer than {MAX_COMMAND} bytes")
        if "\0" in command:
            raise BadRequest("command contains a NUL character")
        if respawn is None:
            respawn = "none"
        if respawn not in RESPAWN_MODES:
            raise BadRequest(f"respawn must be one of "
                             f"{', '.join(RESPAWN_MODES)}, not {respawn!r}")
        for name, value in (("uid", uid), ("gid", gid)):
            if value is not None and not 0 <= value < 2 ** 32 - 1:
                raise BadRequest(f"{name} {value} is out of range")
        if gid is None and uid is not None:
            gid = uid
        if title is not None:
            if not title or len(title) > MAX_TITLE:
                raise BadRequest(f"title must have 1 to {MAX_TITLE} "
                                 f"characters")
            if not title.isprintable():
                raise BadRequest("title must be printable (no control "
                                 "characters)")
        return cls(jail, command, respawn, uid, gid, title)


class ControlProtocol(amp.AMP):
    """
    The server side of one control connection.
    """

    log = Logger()

    def __init__(self, factory):
        super().__init__()
        self.factory = factory
        self.peer = ANONYMOUS
        self._unsubscribe = None
        self._kinds = None
        self._inFlight = 0
        self._dropped = 0

    def connectionMade(self):
        super().connectionMade()
        self.peer = self.factory.credentialsOf(self.transport)

    def ampBoxReceived(self, box):
        try:
            super().ampBoxReceived(box)
        except KeyError:
            # AMP looks answers and errors up by the id of the question;
            # one the server never asked must not raise out of dataReceived.
            self.log.warn("{peer} answered a question never asked: closing "
                          "the connection", peer=self.peer)
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().connectionLost(reason)

    def _requireAdmin(self, what):
        if not self.factory.authorization.mayAdminister(self.peer):
            self.log.warn("refused {what} to {peer}", what=what,
                          peer=self.peer)
            raise NotAuthorized(f"{what} needs root or the admin group")

    def _requireWatcher(self, what):
        if not self.factory.authorization.mayWatch(self.peer):
            self.log.warn("refused {what} to {peer}", what=what,
                          peer=self.peer)
            raise NotAuthorized(f"{what} is not allowed for uid "
                                f"{self.peer.uid}")

    def _probes(self):
        if self.factory.probes is None:
            raise NotServed("this daemon runs no probe service")
        return self.factory.probes

    @Ping.responder
    def ping(self):
        return {"version": jailtwist.__version__, "pid": os.getpid(),
                "services": list(self.factory.services)}

    @AttachProbe.responder
    def attachProbe(self, jail, command, respawn=None, uid=None, gid=None,
                    title=None):
        self._requireAdmin("attaching a probe")
        request = ProbeRequest.checked(jail, command, respawn, uid, gid,
                                       title)
        return self._probes().attach(request, self.peer)

    @RemoveProbe.responder
    def removeProbe(self, probe):
        self._requireAdmin("removing a probe")
        self._probes().remove(probe)
        return {}

    @ListProbes.responder
    def listProbes(self):
        self._requireWatcher("listing probes")
        return {"probes": self._probes().describe()}

    @ListJails.responder
    def listJails(self):
        self._requireWatcher("listing jails")
        if self.factory.jails is None:
            raise NotServed("this daemon has no jail registry")
        return {"jails": self.factory.jails.jails()}

    @RelayBooks.responder
    def relayBooks(self):
        self._requireWatcher("reading the relay books")
        if self.factory.relays is None:
            raise NotServed("this daemon runs no jk_socketd relays")
        return self.factory.relays.books()

    @Subscribe.responder
    def subscribe(self, kinds=None):
        self._requireWatcher("reading events")
        self._kinds = set(kinds) if kinds else None
        if self._unsubscribe is None:
            self._unsubscribe = self.factory.events.subscribe(self._send)
            self.log.info("uid {uid} (pid {pid}) follows events",
                          uid=self.peer.uid, pid=self.peer.pid)
        return {}

    def _send(self, event):
        if self._kinds is not None and event.kind not in self._kinds:
            return
        if self._inFlight >= MAX_EVENTS_IN_FLIGHT:
            self._dropped += 1
            return
        if self._dropped and event.kind != "events-dropped":
            dropped, self._dropped = self._dropped, 0
            self._send(JailEvent("events-dropped", event.time,
                                 {"count": dropped}))
        self._inFlight += 1
        fields = json.dumps(event.fields, sort_keys=True, default=str)
        d = self.callRemote(Event, kind=event.kind, time=event.time,
                            fields=fields)
        d.addErrback(lambda f: None)
        d.addBoth(self._acknowledged)

    def _acknowledged(self, ignored):
        self._inFlight -= 1


class ControlFactory(Factory):
    """
    Makes L{ControlProtocol}s sharing the services one daemon runs.

    @ivar services: names of the services this daemon runs (for L{Ping}).
    @ivar relays: an L{IRelayBooks} (the relays), or C{None}.
    @ivar credentialsOf: how to learn a transport's peer; tests replace it.
    """

    def __init__(self, events, authorization=None, probes=None, jails=None,
                 services=(), credentialsOf=peerCredentials, relays=None):
        self.events = events
        self.authorization = authorization or Authorization()
        self.probes = probes
        self.jails = jails
        self.relays = relays
        self.services = tuple(services)
        self.credentialsOf = credentialsOf

    def buildProtocol(self, addr):
        return ControlProtocol(self)


class ControlClient(amp.AMP):
    """
    The client side: call commands with C{callRemote}; events subscribed to
    go to C{onEvent(JailEvent)}.
    """

    def __init__(self, onEvent=None):
        super().__init__()
        self.onEvent = onEvent

    @Event.responder
    def event(self, kind, time, fields):
        try:
            details = json.loads(fields)
        except ValueError:
            details = {"raw": fields}
        if not isinstance(details, dict):
            details = {"value": details}
        if self.onEvent is not None:
            self.onEvent(JailEvent(kind, time, details))
        return {}


def ipcEndpoint(value):
    """
    Turn an C{-f} value into an endpoint description: a plain path becomes
    C{unix:PATH:mode=600}; a description (C{unix:...}, C{tcp:...}) is kept.
    """
    if value.startswith(("unix:", "tcp:", "tcp6:", "systemd:", "ssl:")):
        return value
    escaped = value.replace("\\", "\\\\").replace(":", "\\:")
    return f"unix:{escaped}:mode=600"


def clientEndpointDescription(description):
    """
    Turn a server endpoint description into the client one that reaches it
    (C{unix:PATH:mode=600} -> C{unix:path=PATH}).
    """
    path = endpointPath(description)
    if path is not None:
        escaped = path.replace("\\", "\\\\").replace(":", "\\:")
        return f"unix:path={escaped}"
    if description.startswith("tcp:"):
        parts = description.split(":")
        port = parts[1]
        host = "127.0.0.1"
        for part in parts[2:]:
            if part.startswith("interface="):
                host = part[len("interface="):]
        return f"tcp:host={host}:port={port}"
    return description


def _encodeBox(box):
    out = []
    for key, value in box.items():
        out.append(struct.pack("!H", len(key)) + key)
        out.append(struct.pack("!H", len(value)) + value)
    out.append(b"\0\0")
    return b"".join(out)


def _readBox(sock):
    data = b""
    box = {}
    key = None
    while True:
        while len(data) < 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-answer")
            data += chunk
        length = struct.unpack("!H", data[:2])[0]
        while len(data) < 2 + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-answer")
            data += chunk
        item, data = data[2:2 + length], data[2 + length:]
        if key is None:
            if not item:
                return box
            key = item
        else:
            box[key] = item
            key = None


def pingSocket(path, timeout=3.0):
    """
    Ask whatever listens on the unix socket C{path} for L{Ping}, without a
    reactor (used before a daemon starts, to refuse to start twice).

    @return: the pid of the daemon answering, or C{None} when nothing
        listens there (no file, or a stale socket nobody accepts on).
    @raise JailtwistError: something listens but does not answer a
        jailtwist L{Ping}, or the path is not a socket.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        raise JailtwistError(f"{path} exists and is not a socket: "
                             f"remove it or choose another path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        try:
            sock.sendall(_encodeBox({b"_command": b"Ping", b"_ask": b"1"}))
            answer = _readBox(sock)
        except (OSError, ConnectionError) as e:
            raise JailtwistError(
                f"something listens on {path} but does not answer a "
                f"jailtwist ping ({e}): stop it or choose another path")
        if b"_answer" not in answer or b"pid" not in answer:
            raise JailtwistError(
                f"something listens on {path} but does not answer a "
                f"jailtwist ping: stop it or choose another path")
        return int(answer[b"pid"])
    finally:
        sock.close()


def askSocket(path, command, timeout=10.0):
    """
    Ask the daemon on the unix socket C{path} an argument-free C{command}
    without a reactor (for scripts and tests).

    @return: the parsed answer.
    @raise amp.RemoteAmpError: the daemon answered with an error.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(_encodeBox({b"_command": command.commandName,
                                 b"_ask": b"1"}))
        answer = _readBox(sock)
    if b"_error" in answer:
        raise amp.RemoteAmpError(answer[b"_error_code"],
                                 answer[b"_error_description"].decode())
    return command.parseResponse(answer, None)


def claimSocket(description):
    """
    Make sure no other daemon serves C{description}, and remove a stale
    unix socket left by a dead one so that listening can succeed.

    @raise JailtwistError: another daemon answers there.
    """
    path = endpointPath(description)
    if path is None:
        return
    pid = pingSocket(path)
    if pid is not None:
        raise JailtwistError(
            f"another jailtwist daemon (pid {pid}) is running on {path}: "
            f"stop it first or use another socket")
    # Nobody answers: the socket is stale, and so is the lock Twisted's
    # unix endpoint keeps beside it (its pid may be a zombie or reused).
    for stale in (path, path + ".lock"):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
