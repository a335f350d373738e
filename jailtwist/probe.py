# -*- test-case-name: tests.test_probe -*-
"""
jaildaemon's probes: plant a tiny process in a running jail; when something
in the jail sends it SIGHUP, it dies, and the host runs a command fixed in
advance.  The jail can only pull the trigger: it never supplies data.

The life of a probe (L{ProbeService}):

  1. I{plant}: the jail is pinned (L{IProbeLauncher.pin}), and a probe
     process is started inside it (L{IProbeLauncher.plant}) as a child of
     this daemon, so its wait status reaches us and nothing written in the
     jail is ever read.
  2. I{watch}: the probe waits.  The jail going away (its pinned process
     ending) is reported as C{jail-gone}; the probe is killed and nothing
     runs.
  3. I{fire}: the probe's wait status is "killed by SIGHUP" (the probe
     program never handles the signal, so nothing else produces that
     status).  The daemon runs the command with C{/bin/sh -c} on the host,
     as the client who attached the probe, and logs its output and status.
     Any other end is C{probe-lost}: nothing runs.
  4. I{respawn}: C{none} (jaildaemon's default: single shot, the probe is
     forgotten once its command ends), C{after} (C{-r}: a new probe once the
     command has finished, so the command never runs twice at once) or
     C{immediate} (C{-R}: a new probe at once).  Respawns are throttled:
     at most C{burst} within any C{interval} seconds, later ones wait
     (C{probe-throttled}), so a HUP storm never becomes a fork storm.

Every step is published on the control channel's event stream.
"""

import collections
import os
import select
import signal

from zope.interface import Attribute, Interface, implementer

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.process import (registerReapProcessHandler,
                                      unregisterReapProcessHandler)
from twisted.logger import Logger

from jailtwist.control import (IProbeControl, ProbeFailed, UnknownJail,
                               UnknownProbe)
from jailtwist.errors import JailtwistError

DEFAULT_TITLE = "jaildaemon-probe"
DEFAULT_SHELL = "/bin/sh"
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Longest line of a command's output that is logged whole.
MAX_OUTPUT_LINE = 2000

# Seconds to wait, after a probe ended without SIGHUP, for its jail to be
# seen gone before the probe is reported lost.
LOST_GRACE = 1.0


class IJailTarget(Interface):
    """
    A running jail, pinned: it cannot be swapped for another one by pid
    reuse while we hold it.
    """

    label = Attribute("How to name the jail in messages and events.")
    root = Attribute("The jail's directory on the host, or None when not "
                     "known.")

    def alive():
        """
        @return: C{True} while the jail's pinned process runs.
        """

    def watch(onGone):
        """
        Call C{onGone()} once when the jail's pinned process ends.
        """

    def close():
        """
        Stop watching and release what pins the jail.
        """


class IProbeLauncher(Interface):
    """
    How probe processes are started inside jails.
    """

    def pin(jail):
        """
        @param jail: what the client named: a jid, a name or a pid.
        @return: an L{IJailTarget}.
        @raise UnknownJail: nothing running matches C{jail}.
        """

    def plant(target, uid, gid, title, onEnded):
        """
        Start a probe inside C{target} as C{uid}/C{gid} (ids inside the
        jail) showing C{title}; call C{onEnded(status)} with its wait
        status when it ends.

        @return: the probe's pid (as seen by the host).
        @raise ProbeFailed: it could not be started.
        """

    def kill(pid):
        """
        Kill a probe this launcher planted and that has not ended yet.
        """


class RespawnThrottle:
    """
    At most C{burst} respawns within any C{interval} seconds.
    """

    def __init__(self, burst, interval, clock):
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._times = collections.deque()

    def delay(self):
        """
        Account for one respawn.

        @return: how many seconds it must wait (0 when it may go now).
        """
        now = self._clock.seconds()
        while self._times and self._times[0] <= now - self.interval:
            self._times.popleft()
        if len(self._times) < self.burst:
            wait = 0.0
        else:
            wait = max(0.0, self._times[-self.burst] + self.interval - now)
        self._times.append(now + wait)
        return wait


class Probe:
    """
    One attached probe and its state.

    @ivar state: C{planted} (a probe process waits in the jail),
        C{running} (fired; the command runs and no probe is planted),
        C{respawning} (waiting for the throttle), C{ending} (ended without
        SIGHUP: lost, or its jail is stopping), C{done} (forgotten).
    """

    def __init__(self, probeId, request, owner, target, throttle):
        self.id = probeId
        self.request = request
        self.owner = owner
        self.target = target
        self.throttle = throttle
        self.title = request.title or DEFAULT_TITLE
        self.uid = request.uid if request.uid is not None else 0
        self.gid = request.gid if request.gid is not None else 0
        self.pid = None
        self.generation = 0
        self.state = "new"
        self.fired = 0
        self.commandsRunning = 0
        self.respawnCall = None

    def describe(self):
        info = {
            "probe": self.id, "jail": self.target.label,
            "title": self.title, "command": self.request.command,
            "respawn": self.request.respawn, "uid": self.uid,
            "gid": self.gid, "state": self.state, "fired": self.fired,
            "owner": self.owner.uid if self.owner.uid is not None else -1,
        }
        if self.pid is not None:
            info["pid"] = self.pid
        return info


class CommandProtocol(protocol.ProcessProtocol):
    """
    Logs a host command's output line by line and reports its end.
    """

    log = Logger()

    def __init__(self, probe, onEnded):
        self.probe = probe
        self.onEnded = onEnded
        self._buffers = {1: b"", 2: b""}

    def childDataReceived(self, fd, data):
        buffered = self._buffers.get(fd, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_OUTPUT_LINE:
            lines.append(rest)
            rest = b""
        self._buffers[fd] = rest
        for line in lines:
            self._logLine(fd, line)

    def _logLine(self, fd, line):
        text = line[:MAX_OUTPUT_LINE].decode("utf-8", "replace")
        self.log.info("probe {probe} command {stream}: {line}",
                      probe=self.probe.id,
                      stream="stdout" if fd == 1 else "stderr", line=text)

    def processEnded(self, reason):
        for fd, rest in sorted(self._buffers.items()):
            if rest:
                self._logLine(fd, rest)
        self._buffers = {}
        self.onEnded(reason.value.exitCode, reason.value.signal)


def describeStatus(status):
    """
    @return: a short text for a wait status: C{"exit 3"}, C{"signal 9"}.
    """
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


@implementer(IProbeControl)
class ProbeService(service.Service):
    """
    Plants, watches, fires and respawns probes.

    @param launcher: an L{IProbeLauncher}.
    @param events: the L{jailtwist.control.IEventStream} to publish on.
    @param reactor: provides C{spawnProcess} (host commands) and the clock.
    @param burst: respawns allowed within C{interval} seconds per probe.
    @param maxProbes: how many probes may exist at once.
    """

    name = "probes"
    log = Logger()

    def __init__(self, launcher, events, reactor=None, shell=DEFAULT_SHELL,
                 burst=5, interval=60.0, maxProbes=1000):
        if reactor is None:
            from twisted.internet import reactor
        self._launcher = launcher
        self._events = events
        self._reactor = reactor
        self._shell = shell
        self._burst = burst
        self._interval = interval
        self._maxProbes = maxProbes
        self._probes = {}
        self._nextId = 1

    # IProbeControl

    def attach(self, request, owner):
        if len(self._probes) >= self._maxProbes:
            raise ProbeFailed(f"{self._maxProbes} probes exist already: "
                              f"remove some first")
        if not self.running:
            raise ProbeFailed("the probe service is stopping")
        target = self._launcher.pin(request.jail)
        probe = Probe(self._nextId, request, owner, target,
                      RespawnThrottle(self._burst, self._interval,
                                      self._reactor))
        self._nextId += 1
        self._probes[probe.id] = probe
        try:
            self._plant(probe)
        except BaseException:
            del self._probes[probe.id]
            target.close()
            raise
        target.watch(lambda: self._jailGone(probe))
        self.log.info(
            "probe {probe} planted in jail {jail} as {title!r} (pid {pid}, "
            "uid {uid}, gid {gid}, respawn {respawn}) for uid {owner}: "
            "{command}", probe=probe.id, jail=target.label, title=probe.title,
            pid=probe.pid, uid=probe.uid, gid=probe.gid,
            respawn=request.respawn, owner=owner.uid,
            command=request.command)
        return probe.describe()

    def remove(self, probeId):
        probe = self._probes.get(probeId)
        if probe is None:
            raise UnknownProbe(f"no probe {probeId}")
        self._forget(probe, kill=True)
        self._events.publish("probe-removed", probe=probe.id,
                             jail=probe.target.label)
        self.log.info("probe {probe} removed", probe=probe.id)

    def describe(self):
        return [self._probes[key].describe() for key in sorted(self._probes)]

    def probe(self, probeId):
        return self._probes.get(probeId)

    # service.Service

    def stopService(self):
        super().stopService()
        for probe in list(self._probes.values()):
            self._forget(probe, kill=True)

    # The life of a probe

    def _plant(self, probe):
        probe.generation += 1
        generation = probe.generation
        probe.state = "planted"
        try:
            pid = self._launcher.plant(
                probe.target, probe.uid, probe.gid, probe.title,
                lambda status: self._ended(probe, generation, status))
        except BaseException:
            probe.state = "new"
            raise
        if probe.generation == generation and probe.state == "planted":
            probe.pid = pid
            self._events.publish("probe-planted", probe=probe.id,
                                 jail=probe.target.label, pid=pid,
                                 title=probe.title, root=probe.target.root)

    def _ended(self, probe, generation, status):
        if probe.generation != generation or probe.state != "planted":
            return
        probe.pid = None
        if self._probes.get(probe.id) is not probe:
            return
        fired = (os.WIFSIGNALED(status)
                 and os.WTERMSIG(status) == signal.SIGHUP)
        if not probe.target.alive():
            self._jailGone(probe)
            return
        if not fired:
            # A jail that stops kills its probe first (its pid namespace's
            # processes die before its init has finished exiting): wait a
            # moment before calling the probe lost rather than the jail gone.
            probe.state = "ending"
            probe.respawnCall = self._reactor.callLater(
                LOST_GRACE, self._lost, probe, describeStatus(status))
            return
        probe.fired += 1
        probe.state = "running"
        self.log.info("probe {probe} in jail {jail} fired", probe=probe.id,
                      jail=probe.target.label)
        self._events.publish("probe-fired", probe=probe.id,
                             jail=probe.target.label, title=probe.title,
                             root=probe.target.root)
        self._runCommand(probe)
        if probe.request.respawn == "immediate":
            self._scheduleRespawn(probe)

    def _stillLive(self, probe):
        """
        @return: whether C{probe} is still ours and its jail still runs; a
            jail found gone is reported here.
        """
        probe.respawnCall = None
        if self._probes.get(probe.id) is not probe:
            return False
        if not probe.target.alive():
            self._jailGone(probe)
            return False
        return True

    def _lost(self, probe, reason):
        if not self._stillLive(probe):
            return
        self.log.warn("probe {probe} in jail {jail} lost ({reason}): "
                      "its command will not run", probe=probe.id,
                      jail=probe.target.label, reason=reason)
        self._events.publish("probe-lost", probe=probe.id,
                             jail=probe.target.label, reason=reason)
        self._forget(probe)

    def _runCommand(self, probe):
        owner = probe.owner
        uid = gid = None
        if owner.uid is not None and owner.uid != os.getuid():
            uid, gid = owner.uid, owner.gid
        env = {"PATH": COMMAND_PATH, "HOME": "/",
               "JAILTWIST_PROBE": str(probe.id),
               "JAILTWIST_JAIL": probe.target.label,
               "JAILTWIST_TITLE": probe.title}
        command = CommandProtocol(
            probe, lambda code, sig: self._commandEnded(probe, code, sig))
        try:
            process = self._reactor.spawnProcess(
                command, self._shell, [self._shell, "-c",
                                       probe.request.command],
                env=env, path="/", uid=uid, gid=gid)
        except Exception as e:
            self.log.error("probe {probe}: cannot run its command: {error}",
                           probe=probe.id, error=e)
            self._events.publish("command-finished", probe=probe.id,
                                 jail=probe.target.label, status=None,
                                 signal=None, error=str(e))
            self._afterCommand(probe)
            return
        probe.commandsRunning += 1
        self._events.publish("command-started", probe=probe.id,
                             jail=probe.target.label, pid=process.pid)

    def _commandEnded(self, probe, code, sig):
        probe.commandsRunning -= 1
        self.log.info("probe {probe} command finished: {how}",
                      probe=probe.id,
                      how=(f"exit status {code}" if sig is None
                           else f"killed by signal {sig}"))
        self._events.publish("command-finished", probe=probe.id,
                             jail=probe.target.label, status=code,
                             signal=sig)
        self._afterCommand(probe)

    def _afterCommand(self, probe):
        if self._probes.get(probe.id) is not probe:
            return
        respawn = probe.request.respawn
        if respawn == "after" and probe.state == "running":
            self._scheduleRespawn(probe)
        elif respawn == "none" and probe.commandsRunning == 0:
            self._forget(probe)

    def _scheduleRespawn(self, probe):
        probe.state = "respawning"
        wait = probe.throttle.delay()
        if wait > 0:
            self.log.warn("probe {probe} fires too often: respawn in "
                          "{delay:.1f}s", probe=probe.id, delay=wait)
            self._events.publish("probe-throttled", probe=probe.id,
                                 jail=probe.target.label, delay=wait)
        probe.respawnCall = self._reactor.callLater(wait, self._respawn,
                                                    probe)

    def _respawn(self, probe):
        if not self._stillLive(probe):
            return
        try:
            self._plant(probe)
        except JailtwistError as e:
            self.log.error("probe {probe}: cannot respawn in jail {jail}: "
                           "{error}", probe=probe.id,
                           jail=probe.target.label, error=e)
            self._events.publish("probe-lost", probe=probe.id,
                                 jail=probe.target.label, reason=str(e))
            self._forget(probe)

    def _jailGone(self, probe):
        if self._probes.get(probe.id) is not probe:
            return
        self.log.warn("jail {jail} of probe {probe} is gone: nothing runs",
                      jail=probe.target.label, probe=probe.id)
        self._events.publish("jail-gone", probe=probe.id,
                             jail=probe.target.label)
        self._forget(probe, kill=True)

    def _forget(self, probe, kill=False):
        self._probes.pop(probe.id, None)
        if probe.respawnCall is not None and probe.respawnCall.active():
            probe.respawnCall.cancel()
        probe.respawnCall = None
        if kill and probe.pid is not None:
            pid, probe.pid = probe.pid, None
            self._launcher.kill(pid)
        probe.state = "done"
        probe.target.close()


# -- probes in real jails -------------------------------------------------------

PR_GET_DUMPABLE = 3
PR_SET_NAME = 15

# Exit statuses of a probe child that failed before its exec (the message
# itself goes through a pipe; these are for the wait status alone).
_CHILD_FAILED = 126

# The namespaces a probe joins in the child (the pid namespace is entered by
# the daemon around the fork, so that the probe is the daemon's own child).
_CHILD_NAMESPACES = ("user", "mnt", "net", "ipc", "uts")


@implementer(IReadDescriptor)
class _PidfdWatch:
    """
    Calls back once when the process behind a pidfd ends (a pidfd polls
    readable then).
    """

    def __init__(self, reactor, pidfd, onGone):
        self._reactor = reactor
        self._pidfd = pidfd
        self._onGone = onGone
        reactor.addReader(self)

    def fileno(self):
        return self._pidfd

    def logPrefix(self):
        return "jail-watch"

    def doRead(self):
        self.stop()
        onGone, self._onGone = self._onGone, None
        if onGone is not None:
            onGone()

    def connectionLost(self, reason):
        pass

    def stop(self):
        self._reactor.removeReader(self)


@implementer(IJailTarget)
class JailTarget:
    """
    A running jail pinned through one of its processes
    (L{jailtwist.enter.JailProcess}).
    """

    def __init__(self, process, label, reactor):
        self.process = process
        self.label = label
        self.root = process.root
        self._reactor = reactor
        self._watches = []

    def alive(self):
        # A pidfd polls readable once its process has exited (a zombie
        # whose parent has not reaped it yet is gone too).
        pidfd = self.process.pidfd
        if pidfd is None:
            return False
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return not poller.poll(0)

    def watch(self, onGone):
        if not self.alive():
            self._reactor.callLater(0, onGone)
            return
        self._watches.append(_PidfdWatch(self._reactor, self.process.pidfd,
                                         onGone))

    def close(self):
        for watch in self._watches:
            watch.stop()
        self._watches = []
        self.process.close()


class _Reaper:
    """
    What Twisted's process reaping calls for a probe we forked ourselves.
    """

    def __init__(self, pid, onEnded):
        self.pid = pid
        self._onEnded = onEnded

    def reapProcess(self):
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid:
            unregisterReapProcessHandler(self.pid, self)
            self.processEnded(status)

    def processEnded(self, status):
        onEnded, self._onEnded = self._onEnded, None
        if onEnded is not None:
            onEnded(status)


class _TitledFork:
    """
    The daemon's side of a probe's birth.  For the instant of the fork this
    process enters the jail's pid namespace for its children, is not
    dumpable, and shows the probe's title (cut to the length of its own
    command line) as its command line and name -- so the child, visible
    inside the jail from its first instruction, never shows the daemon's
    command line there, nor (without C{CAP_SYS_PTRACE}) its environment or
    executable, even before it has exec'd the probe program.  Everything is
    put back right after the fork.

    The command line is rewritten in place, in the memory the kernel reads
    C{/proc/PID/cmdline} from (Python keeps its own copy of C{argv}); no
    capability is needed for that.

    Only for a jail with its own pid namespace (C{retitle}): a jail that
    shares ours sees every host process, this daemon included, so there is
    nothing to hide -- and for that instant the daemon itself would match
    the jail's C{pkill -HUP -f TITLE}.
    """

    def __init__(self, enter, pidfd, ownPidNamespace, title, retitle=True):
        self._enter = enter
        self._pidfd = pidfd
        self._ownPidNamespace = ownPidNamespace
        self._title = title.encode("utf-8")
        self._retitle = retitle
        self._parent = os.getpid()
        self._saved = None
        self._name = None
        self._dumpable = None

    def __enter__(self):
        e = self._enter
        self._dumpable = e.prctl(PR_GET_DUMPABLE)
        try:
            e.setDumpable(False)
            if self._retitle:
                self._showTitle()
            if self._pidfd is not None:
                e.setns(self._pidfd, e.CLONE_NEWPID)
        except BaseException:
            self._restore()
            raise
        return self

    def _showTitle(self):
        import ctypes
        with open("/proc/self/comm", "rb") as f:
            self._name = f.read().rstrip(b"\n")
        self._enter.prctl(PR_SET_NAME, ctypes.addressof(
            ctypes.create_string_buffer(self._title[:15])))
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        argStart, argEnd = int(fields[45]), int(fields[46])
        size = argEnd - argStart
        if size < 2 or size > 1 << 20:
            return
        self._saved = (argStart, ctypes.string_at(argStart, size))
        shown = self._title[:size - 1]
        ctypes.memmove(argStart, shown + bytes(size - len(shown)), size)

    def _restore(self):
        import ctypes
        e = self._enter
        if self._saved is not None:
            argStart, original = self._saved
            ctypes.memmove(argStart, original, len(original))
            self._saved = None
        if self._name is not None:
            e.prctl(PR_SET_NAME, ctypes.addressof(
                ctypes.create_string_buffer(self._name)))
            self._name = None
        if self._dumpable is not None:
            e.setDumpable(self._dumpable)
            self._dumpable = None

    def __exit__(self, *exc):
        if os.getpid() != self._parent:
            return
        try:
            if self._pidfd is not None:
                self._enter.setns(self._ownPidNamespace,
                                  self._enter.CLONE_NEWPID)
        finally:
            self._restore()

    def fork(self):
        return os.fork()


def _probeChild(enter, process, uid, gid, title, image, errorPipe,
                expectedParent):
    """
    In the forked child (already in the jail's pid namespace): become the
    probe.  Never returns.
    """
    try:
        enter.setDumpable(False)
        for number in range(1, signal.NSIG):
            try:
                signal.signal(number, signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # Still host root: a jail's user namespace may deny setgroups, so
        # the daemon's supplementary groups go before joining it.
        os.setgroups([])
        enter.joinJail(process, namespaces=_CHILD_NAMESPACES, chroot=True)
        # Still privileged, and done with setns: see installJoinFilter.
        enter.installJoinFilter()
        enter.switchUserAfterJoining(uid, gid)
        # Changing credentials clears the parent-death signal (and resets
        # dumpability): both are set once the ids are final.
        enter.setDumpable(False)
        enter.setDeathSignal(signal.SIGKILL)
        if os.getppid() != expectedParent:
            raise JailtwistError("the daemon exited while planting")
        keep = sorted((image, errorPipe))
        os.closerange(0, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 20)
        os.execve(image, [title], {})
    except BaseException as e:
        try:
            message = str(e) or e.__class__.__name__
            os.write(errorPipe, message.encode("utf-8", "replace")[:1000])
        except BaseException:
            pass
    finally:
        os._exit(_CHILD_FAILED)


@implementer(IProbeLauncher)
class JailProbeLauncher:
    """
    Plants real probes: the sealed program of L{jailtwist.probeimage},
    exec'd by a child of this daemon that joined the jail through
    L{jailtwist.enter}.
    """

    log = Logger()

    def __init__(self, reactor=None, resolver=None):
        if reactor is None:
            from twisted.internet import reactor
        from jailtwist import enter
        from jailtwist.probeimage import sealedProbe
        self._reactor = reactor
        self._enter = enter
        self._resolver = resolver
        self._image = sealedProbe()
        self._ownPidNamespace = os.open("/proc/self/ns/pid",
                                        os.O_RDONLY | os.O_CLOEXEC)

    def close(self):
        for fd in (self._image, self._ownPidNamespace):
            if fd is not None:
                os.close(fd)
        self._image = self._ownPidNamespace = None

    def pin(self, jail):
        if self._resolver is None:
            raise UnknownJail("no jail resolver configured")
        process, label = self._resolver(jail)
        return JailTarget(process, label, self._reactor)

    def plant(self, target, uid, gid, title, onEnded):
        process = target.process
        if not target.alive():
            raise ProbeFailed(f"jail {target.label} is gone")
        try:
            theirs = os.stat(f"/proc/{process.pid}/ns/pid").st_ino
            ours = os.fstat(self._ownPidNamespace).st_ino
        except OSError as e:
            raise ProbeFailed(f"jail {target.label} is gone "
                              f"({e.strerror})") from None
        ownNamespace = theirs == ours
        birth = _TitledFork(self._enter,
                            None if ownNamespace else process.pidfd,
                            self._ownPidNamespace, title,
                            retitle=not ownNamespace)
        expectedParent = os.getpid() if ownNamespace else 0
        readEnd, writeEnd = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                with birth:
                    pid = birth.fork()
                    if pid == 0:
                        _probeChild(self._enter, process, uid, gid, title,
                                    self._image, writeEnd, expectedParent)
            except OSError as e:
                raise ProbeFailed(f"cannot start a probe in jail "
                                  f"{target.label}: {e.strerror}") from None
            os.close(writeEnd)
            writeEnd = None
            failure = b""
            while True:
                chunk = os.read(readEnd, 1024)
                if not chunk:
                    break
                failure += chunk
        finally:
            os.close(readEnd)
            if writeEnd is not None:
                os.close(writeEnd)
        if failure:
            os.waitpid(pid, 0)
            raise ProbeFailed(f"cannot plant a probe in jail {target.label}: "
                              f"{failure.decode('utf-8', 'replace')}")
        registerReapProcessHandler(pid, _Reaper(pid, onEnded))
        return pid

    def kill(self, pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def registryResolver(registry):
    """
    @param registry: a L{jailtwist.registry.JailRegistry}.
    @return: a resolver for L{JailProbeLauncher}: a jid, a name or
        C{pid:N} to a pinned process and a label.
    """
    def resolve(jail):
        try:
            process = registry.resolve(jail)
        except JailtwistError as e:
            raise UnknownJail(str(e)) from None
        record = process.record
        if record is not None:
            label = f"{record.name} (jid {record.jid})"
        else:
            label = f"pid {process.pid}"
        return process, label
    return resolve
