# -*- test-case-name: tests.test_relay -*-
"""
The jail C{/dev/log} relay behind C{jk_socketd}: one unix datagram socket
per jail, each with its own L{RateLimiter}, all forwarding to one
L{SyslogSink} on one reactor.

Over its budget a socket either stops reading until its next window
(C{block}, jailkit's behaviour: the kernel queue fills and a blocking sender
inside the jail waits) or discards and counts what does not fit (C{drop}).
A datagram that was read is never lost in C{block} mode: it is held and sent
first when the socket resumes.
"""

import collections
import errno
import os
import re
import socket
import stat
from dataclasses import dataclass

from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, formatEvent, globalLogPublisher

from zope.interface import implementer

from jailtwist.config import readIni
from jailtwist.control import IRelayBooks
from jailtwist.errors import JailtwistError
from jailtwist.limiter import RateLimiter
from jailtwist.mmsg import DatagramBatch
from jailtwist.syslogsink import SyslogSink, formatSyslog

DEFAULT_CONFIG = "/etc/jailkit/jk_socketd.ini"
DEFAULT_SYSLOG = "/dev/log"
OVERFLOW = ("block", "drop")
# Datagrams read with one recvmmsg, and batches read from one socket before
# the reactor serves the others: hundreds of jails share one process.
_SLOTS = 16
_ROUNDS = 4
# The largest datagram relayed intact (unix datagrams are bounded by the
# sender's socket buffer, about 208 KiB by default).
MAX_DATAGRAM = 256 * 1024
_SEVERITY = {"critical": 2, "error": 3, "warn": 4, "info": 6, "debug": 7}
_MARK = re.compile(r"[A-Za-z0-9_.@+-]{1,64}\Z")


@dataclass(frozen=True)
class SocketSettings:
    """
    One jail socket and its limits, as in a C{jk_socketd.ini} section.
    """

    path: str
    base: int = 511
    peak: int = 2048
    interval: float = 5.0
    overflow: str = "block"
    mark: str = None


def settingsFromSection(section):
    """
    Validate one ini section (named after the socket path).

    @raise jailtwist.config.ConfigError: naming file, section and key.
    """
    section.checkKeys({"base", "peak", "interval", "overflow", "mark"})
    if not section.name.startswith("/"):
        raise section.error("the section name must be the absolute path of "
                            "the socket to create")
    base = section.getInt("base", 511, minimum=1, maximum=10 ** 9)
    peak = section.getInt("peak", max(2048, base), minimum=1,
                          maximum=10 ** 9)
    if peak < base:
        raise section.error(f"peak ({peak}) is below base ({base})", "peak")
    interval = section.getFloat("interval", 5.0, minimum=0.01,
                                maximum=86400)
    overflow = section.getChoice("overflow", "block", OVERFLOW)
    mark = section.getString("mark")
    if mark is not None:
        mark = mark.strip()
        if not _MARK.match(mark):
            raise section.error(
                f"{mark!r} must be 1-64 letters, digits or _.@+-", "mark")
    return SocketSettings(os.path.normpath(section.name), base, peak,
                          interval, overflow, mark)


def readSocketSettings(path):
    """
    Read every socket of a C{jk_socketd.ini} file.

    @raise jailtwist.config.ConfigError: if the file or a section is bad.
    """
    ini = readIni(path)
    settings = [settingsFromSection(section) for section in ini]
    if not settings:
        raise JailtwistError(f"{path}: no sockets configured (add a "
                             f"[/path/to/jail/dev/log] section)")
    return settings


def markMessage(data, mark):
    """
    Prefix the syslog tag of C{data} with C{mark}/ so that the host log
    shows which jail sent it; the jail cannot remove or forge the prefix.

    Handles glibc's local format (C{<PRI>Mmm dd hh:mm:ss TAG: text}), RFC
    5424 (C{<PRI>1 TIME HOST APP ...}, where APP gets the prefix) and
    anything else (the prefix goes after C{<PRI>}).
    """
    data = bytes(data)
    prefix = mark.encode("ascii") + b"/"
    at = 0
    if data[:1] == b"<":
        end = data.find(b">", 1, 5)
        if end > 1 and data[1:end].isdigit():
            at = end + 1
    if data[at:at + 2] == b"1 ":
        fields = data[at:].split(b" ", 4)
        if len(fields) >= 4:
            fields[3] = prefix + fields[3]
            return data[:at] + b" ".join(fields)
    stamp = data[at:at + 16]
    if (len(stamp) == 16 and stamp[3:4] == b" " and stamp[6:7] == b" "
            and stamp[9:10] == b":" and stamp[12:13] == b":"
            and stamp[15:16] == b" "):
        at += 16
    return data[:at] + prefix + data[at:]


def _openParent(path):
    """
    Open the directory C{path} is to be created in, without following a
    symlink as its last component (a jail's owner may plant one).

    @return: an C{O_PATH} directory descriptor and the socket's file name.
    """
    parent, name = os.path.split(path)
    try:
        dirfd = os.open(parent or "/",
                        os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise JailtwistError(f"{path}: directory {parent} does not exist "
                             f"(create the jail's dev directory first)")
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise JailtwistError(f"{path}: {parent} is a symlink or not a "
                                 f"directory; refusing to follow it")
        raise JailtwistError(f"{path}: cannot open {parent}: "
                             f"{os.strerror(e.errno)}")
    return dirfd, name


def _staleSocket(path, dirfd, name):
    """
    @return: C{True} if an old socket is at C{name}, C{False} if nothing is.
    @raise JailtwistError: if something else is there.
    """
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISSOCK(st.st_mode):
        return True
    kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else
            "a directory" if stat.S_ISDIR(st.st_mode) else "not a socket")
    raise JailtwistError(f"{path} is {kind}; refusing to remove or follow "
                         f"it (remove it yourself if that is safe)")


def checkSocketPath(path):
    """
    Check, before anything starts, that a socket can be created at C{path}.

    @raise JailtwistError: naming the problem.
    """
    dirfd, name = _openParent(path)
    try:
        _staleSocket(path, dirfd, name)
    finally:
        os.close(dirfd)


def _bindDatagram(path):
    """
    Bind a fresh 0666 unix datagram socket at C{path}.

    An old socket there is removed; anything else is an error and left
    alone.  The bind goes through the parent's descriptor, and C{bind} never
    follows or replaces an existing path, so a symlink swapped in at the
    last moment makes it fail instead of creating a socket elsewhere.
    """
    dirfd, name = _openParent(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if _staleSocket(path, dirfd, name):
            os.unlink(name, dir_fd=dirfd)
        old = os.umask(0o111)
        try:
            sock.bind(f"/proc/self/fd/{dirfd}/{name}")
        finally:
            os.umask(old)
        sock.setblocking(False)
    except JailtwistError:
        sock.close()
        raise
    except OSError as e:
        sock.close()
        raise JailtwistError(f"{path}: cannot create the socket: "
                             f"{os.strerror(e.errno)}")
    finally:
        os.close(dirfd)
    return sock


class RelaySocket(Service):
    """
    One jail's log socket: read, rate-limit, forward.

    Datagrams are read in batches (L{DatagramBatch}); when one does not fit
    the budget, it and the rest of its batch (at most 15 more) are held in
    order and the socket is not read again until they are all sent.

    Its books always balance: C{read = messages + held + suppressed +
    empty} (see L{books}).

    @ivar read: datagrams read from the jail.
    @ivar messages: datagrams handed to the host syslog socket (or to the
        sink's queue while that is away).
    @ivar bytes: bytes handed on.
    @ivar throttled: times the socket was paused for its limit.
    @ivar suppressed: datagrams discarded in C{drop} mode.
    @ivar empty: empty datagrams, read and not relayed (there is nothing
        to relay).
    @ivar truncated: datagrams longer than the largest relayed, cut.
    """

    log = Logger()

    def __init__(self, settings, sink, reactor, batch=None, events=None):
        self.settings = settings
        self.events = events
        self.name = settings.path
        self.sink = sink
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self._batch = batch if batch is not None else DatagramBatch(
            _SLOTS, MAX_DATAGRAM)
        self.limiter = RateLimiter(settings.base, settings.peak,
                                   settings.interval, self._clock)
        self._socket = None
        self._reading = False
        # [data, admitted, size]: read but not sent yet, in order.
        self._held = collections.deque()
        self._resumeCall = None
        self._suppressedInWindow = 0
        self._reportCall = None
        self._size = self._batch.size
        self._fd = -1
        self._plain = settings.mark is None
        self.messages = self.bytes = self.throttled = 0
        self.suppressed = self.truncated = self.read = self.empty = 0

    # Service
    def privilegedStartService(self):
        if self._socket is None:
            self._socket = _bindDatagram(self.settings.path)
        self.log.info(
            "listening on {socket} with rates [{base}:{peak}]/{interval}s, "
            "{overflow} when over", socket=self.name,
            base=self.settings.base, peak=self.settings.peak,
            interval=self.settings.interval, overflow=self.settings.overflow)
        Service.privilegedStartService(self)

    def startService(self):
        Service.startService(self)
        if self._socket is None:
            self.privilegedStartService()
        self.limiter = RateLimiter(self.settings.base, self.settings.peak,
                                   self.settings.interval, self._clock)
        self.startReading()

    def stopService(self):
        Service.stopService(self)
        for call in (self._resumeCall, self._reportCall):
            if call is not None and call.active():
                call.cancel()
        self._resumeCall = self._reportCall = None
        # Hand what is held to the sink's queue, budget or not: stopping
        # must not lose what was read.
        while self._held:
            entry = self._held[0]
            if not entry[1] and self.settings.mark is not None:
                entry[0] = markMessage(entry[0], self.settings.mark)
                entry[1] = True
            if not self.sink.send(entry[0]):
                break
            self._countSent(self._held.popleft()[2])
        if self._held:
            self.log.warn("{socket}: {count} messages could not be handed "
                          "to the host syslog at shutdown", socket=self.name,
                          count=len(self._held))
        self._reportSuppressed()
        self.stopReading()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.log.info(
            "{socket}: {messages} messages, {bytes} bytes relayed, throttled "
            "{throttled} times, {suppressed} suppressed; books: {read} read = "
            "{messages} handed on + {held} held + {suppressed} dropped + "
            "{empty} empty", socket=self.name, messages=self.messages,
            bytes=self.bytes, throttled=self.throttled,
            suppressed=self.suppressed, read=self.read, held=len(self._held),
            empty=self.empty)

    def books(self):
        """
        What this socket has done with what it read.

        @return: a C{dict}: C{socket}, C{read}, C{handed} (to the host
            syslog socket or the sink's queue), C{held} (read, waiting for
            budget or room), C{dropped} (C{drop} mode), C{empty}, and
            C{balanced}: whether C{read} is the sum of the other four.
        """
        books = {"socket": self.name, "read": self.read,
                 "handed": self.messages, "held": len(self._held),
                 "dropped": self.suppressed, "empty": self.empty}
        books["balanced"] = books["read"] == (
            books["handed"] + books["held"] + books["dropped"]
            + books["empty"])
        return books

    # IReadDescriptor
    def fileno(self):
        return self._socket.fileno() if self._socket is not None else -1

    def logPrefix(self):
        return self.name

    def connectionLost(self, reason):
        self._reading = False

    def startReading(self):
        if not self._reading and self._socket is not None:
            self._fd = self._socket.fileno()
            self._reading = True
            self._reactor.addReader(self)

    def stopReading(self):
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def doRead(self):
        # A blocked sender refills the kernel queue while a batch is sent:
        # reading again at once is cheaper than another reactor wake-up.
        for _ in range(_ROUNDS):
            if not self._readBatch() or self._held:
                return

    def _readBatch(self):
        """
        The hot path: one recvmmsg; when the whole batch fits the budget,
        nothing is held, no datagram is empty or cut and no mark is to be
        inserted, one sendmmsg straight to the syslog socket.  Anything
        else takes L{_sortBatch}.

        @return: how many datagrams were read.
        """
        batch = self._batch
        lengths = batch.receive(self._fd)
        count = len(lengths)
        if not count:
            return 0
        self.read += count
        if self._plain and not self._held:
            total = sum(lengths)
            if (total <= self.limiter.room() and min(lengths)
                    and max(lengths) <= self._size):
                direct = self.sink.directFd()
                if direct is not None:
                    self.limiter.spend(total)
                    sent = batch.sendAll(direct, count)
                    if sent == count:
                        self.messages += count
                        self.bytes += total
                        return count
                    self.messages += sent
                    self.bytes += sum(lengths[:sent])
                    self._sortBatch(lengths, sent, count)
                    return count
        self._sortBatch(lengths, 0, 0)
        return count

    def _sortBatch(self, lengths, start, admitted):
        """
        The slow path for slots C{start} onwards of the batch just read:
        check each datagram against the budget (slots below C{admitted}
        already were), forward what fits in order, and hold (or in C{drop}
        mode discard) the rest.
        """
        batch, limiter, sink, held = (self._batch, self.limiter, self.sink,
                                      self._held)
        mark = self.settings.mark
        drop = self.settings.overflow == "drop"
        room = limiter.room()
        fresh = limiter.used == 0
        spent = refused = 0
        forward = []
        overBudget = False
        for slot in range(start, len(lengths)):
            size = lengths[slot]
            if size > self._size:
                self._truncated()
                size = self._size
            if not size:
                self.empty += 1
                continue
            if slot < admitted:
                forward.append((slot, size))
                continue
            if held or (size > room and not (fresh and not spent)):
                refused += size
                if drop and not held:
                    self._suppress()
                    continue
                overBudget = overBudget or not held
                held.append([bytes(batch.data(slot, size)), False, size])
                continue
            room -= size
            spent += size
            forward.append((slot, size))
        limiter.spend(spent)
        if refused:
            limiter.refuse(refused)
        direct = sink.directFd() if mark is None else None
        first = 0
        if direct is not None and forward:
            for slot, size in forward:
                batch.queue(slot, size)
            first = batch.send(direct)
            self.messages += first
            self.bytes += sum(size for _, size in forward[:first])
        stuck = []
        for slot, size in forward[first:]:
            data = batch.data(slot, size)
            # Marked before it may be held: what is held as admitted is
            # sent as it is.
            if mark is not None:
                data = markMessage(data, mark)
            if stuck:
                stuck.append([bytes(data), True, size])
                continue
            if sink.send(data):
                self._countSent(size)
            else:
                stuck.append([bytes(data), True, size])
        # What the sink refused was read before what the budget held.
        held.extendleft(reversed(stuck))
        if held:
            self.stopReading()
            if overBudget:
                self._throttle()
            elif stuck:
                sink.whenRoom(self._resume)

    def _countSent(self, size):
        self.messages += 1
        self.bytes += size

    def _truncated(self):
        self.truncated += 1
        self.log.warn("{socket}: a datagram longer than {limit} bytes was "
                      "cut", socket=self.name, limit=self._size)

    def _throttle(self):
        self.throttled += 1
        if self.events is not None:
            self.events.publish("relay-throttled", socket=self.name,
                                used=self.limiter.used,
                                allowance=self.limiter.allowance(),
                                interval=self.settings.interval)
        self.log.warn(
            "{socket} is over its limit ({used} of {allowance} bytes in "
            "{interval}s); not reading it until the next interval",
            socket=self.name, used=self.limiter.used,
            allowance=self.limiter.allowance(),
            interval=self.settings.interval)
        self._resumeAtNextWindow()

    def _resumeAtNextWindow(self):
        delay = max(0.0, self.limiter.nextWindow() - self._clock.seconds())
        self._resumeCall = self._clock.callLater(delay, self._resume)

    def _resume(self):
        """
        Send what is held, in order, as budget and sink allow; read again
        once it is all gone.
        """
        self._resumeCall = None
        if not self.running:
            return
        held = self._held
        while held:
            entry = held[0]
            if not entry[1]:
                if not self.limiter.admit(entry[2]):
                    self._throttle()
                    return
                if self.settings.mark is not None:
                    entry[0] = markMessage(entry[0], self.settings.mark)
                entry[1] = True
            if not self.sink.send(entry[0]):
                self.sink.whenRoom(self._resume)
                return
            held.popleft()
            self._countSent(entry[2])
        self.startReading()

    def _suppress(self):
        self.suppressed += 1
        self._suppressedInWindow += 1
        if self._reportCall is None:
            delay = max(0.0, self.limiter.nextWindow() - self._clock.seconds())
            self._reportCall = self._clock.callLater(delay,
                                                     self._reportSuppressed)

    def _reportSuppressed(self):
        self._reportCall = None
        if self._suppressedInWindow:
            if self.events is not None:
                self.events.publish("relay-suppressed", socket=self.name,
                                    count=self._suppressedInWindow,
                                    interval=self.settings.interval)
            self.log.warn(
                "{socket} is over its limit: suppressed {count} messages in "
                "the last {interval}s", socket=self.name,
                count=self._suppressedInWindow,
                interval=self.settings.interval)
            self._suppressedInWindow = 0


def writePidfile(path):
    """
    Write this process's pid to C{path} atomically (jailkit's C{-p}); done
    as root, before confinement, so it can be anywhere root can write.
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError as e:
        raise JailtwistError(f"cannot write pidfile {path}: "
                             f"{os.strerror(e.errno)}")


@implementer(IRelayBooks)
class RelayService(MultiService):
    """
    All the jail sockets of one C{jk_socketd}, forwarding to the host syslog.

    Sockets are bound in L{privilegedStartService}; then, when running as
    root, the process confines itself (see L{jailtwist.enter.confineRelay}):
    it can still reconnect to the host syslog but nothing else.

    @ivar user: the account to become after binding, or C{None} to stay.
    @ivar events: an optional L{jailtwist.control.IEventStream}; sockets
        publish C{relay-throttled} and C{relay-suppressed} events to it
        (the suite's control channel streams them to subscribers).
    """

    log = Logger()

    def __init__(self, settings, reactor, syslogPath=DEFAULT_SYSLOG,
                 user="nobody", confine=True, logToSyslog=False,
                 pidfile=None, events=None):
        MultiService.__init__(self)
        self.pidfile = pidfile
        self._reactor = reactor
        self.syslogPath = syslogPath
        self.user = user
        self.confine = confine
        self.logToSyslog = logToSyslog
        self.sink = SyslogSink(syslogPath, reactor)
        self.sockets = []
        batch = DatagramBatch(_SLOTS, MAX_DATAGRAM)
        for each in settings:
            relay = RelaySocket(each, self.sink, reactor, batch, events)
            relay.setServiceParent(self)
            self.sockets.append(relay)
        self._observer = None

    def privilegedStartService(self):
        if self.logToSyslog and self._observer is None:
            self._observer = self._syslogObserver
            globalLogPublisher.addObserver(self._observer)
        if self.pidfile is not None:
            writePidfile(self.pidfile)
        try:
            self.sink.connect()
        except OSError as e:
            self.log.warn(
                "cannot reach host syslog {path} yet ({error}); messages "
                "are held until it appears", path=self.syslogPath,
                error=os.strerror(e.errno))
        MultiService.privilegedStartService(self)
        if self.confine and os.geteuid() == 0:
            # Imported here, still unconfined: nothing can be imported after.
            from jailtwist.enter import confineRelay
            where = confineRelay(self.syslogPath, self.user)
            self.sink.relocate(where)
            self.log.info("confined to {root} as {user}, no groups",
                          root=os.path.dirname(os.path.realpath(
                              self.syslogPath)),
                          user=self.user)

    def _syslogObserver(self, event):
        text = formatEvent(event)
        if text:
            level = event.get("log_level")
            severity = _SEVERITY.get(getattr(level, "name", None), 6)
            self.sink.send(formatSyslog(text, severity=severity))

    def books(self):
        """
        The books of every socket and their totals.

        @return: a C{dict} with C{sockets} (each socket's
            L{RelaySocket.books}), the totals C{read}, C{handed}, C{held},
            C{dropped} and C{empty}, C{balanced} (every socket's books
            balance), and the sink's C{queued} (handed on, waiting for the
            host syslog), C{refused} (refused by it outright, logged) and
            C{reconnects}.
        """
        sockets = [relay.books() for relay in self.sockets]
        totals = {key: sum(each[key] for each in sockets)
                  for key in ("read", "handed", "held", "dropped", "empty")}
        totals.update(sockets=sockets,
                      balanced=all(each["balanced"] for each in sockets),
                      queued=self.sink.queued, refused=self.sink.refused,
                      reconnects=self.sink.reconnects)
        return totals

    def stopService(self):
        result = MultiService.stopService(self)
        books = self.books()
        self.log.info(
            "books of {count} sockets: {read} read = {handed} handed to the "
            "host syslog + {held} held + {dropped} dropped + {empty} empty "
            "({state}); {queued} of those handed on still queued, {refused} "
            "refused by the host syslog, {reconnects} reconnects",
            count=len(books["sockets"]),
            state="balanced" if books["balanced"] else "NOT balanced",
            **{key: value for key, value in books.items()
               if key not in ("sockets", "balanced")})
        if self.sink.queued:
            self.log.warn("{count} messages for the host syslog were still "
                          "queued at shutdown", count=self.sink.queued)
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
            self._observer = None
        self.sink.close()
        return result
