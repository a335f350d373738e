"""
Tests for L{jailtwist.probe} (the probe service, with a fake launcher and a
fake process reactor) and L{jailtwist.probeimage} (the probe program, run
for real).
"""

import os
import signal
import struct

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from jailtwist import enter
from jailtwist.control import (EventStream, IProbeControl, PeerCredentials,
                               ProbeFailed, ProbeRequest, UnknownJail,
                               UnknownProbe)
from jailtwist.errors import JailtwistError
from jailtwist.probe import (LOST_GRACE, CommandProtocol, IJailTarget,
                             IProbeLauncher, JailProbeLauncher, JailTarget,
                             ProbeService, RespawnThrottle, _TitledFork,
                             describeStatus)
from jailtwist.probeimage import probeImage, sealedProbe
from tests import harness

ROOT = PeerCredentials(pid=1, uid=0, gid=0)
USER = PeerCredentials(pid=2, uid=1000, gid=1000)

HUP = signal.SIGHUP        # a wait status "killed by SIGHUP" is just 1
TERM = signal.SIGTERM
KILL = signal.SIGKILL
EXIT0 = 0


@implementer(IJailTarget)
class FakeTarget:
    def __init__(self, label, root=None):
        self.label = label
        self.root = root
        self.living = True
        self.watchers = []
        self.closed = False

    def alive(self):
        return self.living

    def watch(self, onGone):
        self.watchers.append(onGone)

    def close(self):
        self.closed = True

    def die(self):
        self.living = False
        for onGone in self.watchers:
            onGone()


@implementer(IProbeLauncher)
class FakeLauncher:
    """
    Plants nothing: records each plant; the test ends probes with
    C{end(status)}.
    """

    def __init__(self):
        self.targets = []
        self.planted = []
        self.killed = []
        self.failNext = None
        self.nextPid = 100

    def pin(self, jail):
        if jail == "missing":
            raise UnknownJail("no running jail named 'missing'")
        target = FakeTarget(f"{jail} (jid 1)", f"/srv/{jail}")
        self.targets.append(target)
        return target

    def plant(self, target, uid, gid, title, onEnded):
        if self.failNext is not None:
            error, self.failNext = self.failNext, None
            raise error
        self.nextPid += 1
        self.planted.append((target, uid, gid, title, onEnded, self.nextPid))
        return self.nextPid

    def kill(self, pid):
        self.killed.append(pid)

    def end(self, status, index=-1):
        self.planted[index][4](status)


class FakeProcess:
    def __init__(self, pid, protocol, args, env, uid, gid):
        self.pid = pid
        self.protocol = protocol
        self.args = args
        self.env = env
        self.uid = uid
        self.gid = gid

    def finish(self, code=0, sig=None):
        if sig is None and code == 0:
            reason = ProcessDone(0)
        else:
            reason = ProcessTerminated(code if sig is None else None, sig)
        self.protocol.processEnded(Failure(reason))


class FakeProcessReactor(Clock):
    """
    A clock whose C{spawnProcess} records instead of starting anything
    (after C{twisted/runner/test/test_procmon.py}).
    """

    def __init__(self):
        super().__init__()
        self.spawned = []
        self.failSpawn = None

    def spawnProcess(self, protocol, executable, args=(), env={}, path=None,
                     uid=None, gid=None, usePTY=0, childFDs=None):
        if self.failSpawn is not None:
            raise self.failSpawn
        process = FakeProcess(500 + len(self.spawned), protocol, args, env,
                              uid, gid)
        self.spawned.append(process)
        protocol.makeConnection(process)
        return process


class ProbeServiceTests(SynchronousTestCase):

    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.launcher = FakeLauncher()
        self.events = EventStream(self.reactor)
        self.published = []
        self.events.subscribe(self.published.append)
        self.service = ProbeService(self.launcher, self.events, self.reactor,
                                    burst=3, interval=10.0, maxProbes=5)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def attach(self, respawn="none", title="RELOAD", owner=ROOT, **kw):
        request = ProbeRequest.checked("web", kw.pop("command", "reload-web"),
                                       respawn, title=title, **kw)
        return self.service.attach(request, owner)

    def kinds(self):
        return [event.kind for event in self.published]

    def test_interfaces(self):
        verifyObject(IProbeControl, self.service)
        verifyObject(IProbeLauncher, self.launcher)
        verifyObject(IJailTarget, FakeTarget("x"))

    def test_attach(self):
        info = self.attach(uid=33, title="WEB_RELOAD")
        [(target, uid, gid, title, _, pid)] = self.launcher.planted
        self.assertEqual((uid, gid, title), (33, 33, "WEB_RELOAD"))
        self.assertEqual((info["probe"], info["pid"], info["state"],
                          info["jail"]), (1, pid, "planted", "web (jid 1)"))
        self.assertEqual(self.kinds(), ["probe-planted"])
        self.assertEqual(self.published[0].fields,
                         {"probe": 1, "jail": "web (jid 1)", "pid": pid,
                          "title": "WEB_RELOAD", "root": "/srv/web"})
        self.assertEqual(len(target.watchers), 1)
        self.assertEqual(self.service.describe(), [info])

    def test_defaultTitle(self):
        self.attach(title=None)
        self.assertEqual(self.launcher.planted[0][3], "jaildaemon-probe")

    def test_unknownJail(self):
        request = ProbeRequest.checked("missing", "true")
        self.assertRaises(UnknownJail, self.service.attach, request, ROOT)
        self.assertEqual(self.service.describe(), [])

    def test_plantFails(self):
        self.launcher.failNext = ProbeFailed("cannot join: EPERM")
        self.assertRaises(ProbeFailed, self.attach)
        self.assertEqual(self.service.describe(), [])
        self.assertTrue(self.launcher.targets[0].closed)
        self.assertEqual(self.published, [])

    def test_endsWhilePlanting(self):
        """
        A probe whose end is reported before planting has returned (it was
        HUP'd at once) still fires.
        """
        plant = self.launcher.plant

        def plantAndEnd(target, uid, gid, title, onEnded):
            pid = plant(target, uid, gid, title, onEnded)
            onEnded(HUP)
            return pid
        self.launcher.plant = plantAndEnd
        self.attach()
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.kinds(), ["probe-fired", "command-started"])

    def test_maxProbes(self):
        for n in range(5):
            self.attach()
        error = self.assertRaises(ProbeFailed, self.attach)
        self.assertIn("5 probes exist", str(error))

    def test_singleShot(self):
        """
        By default a probe fires once: the command runs on the host with
        C{/bin/sh -c}, and the probe is forgotten when it has finished.
        """
        self.attach(command="ezjail-admin restart web")
        self.launcher.end(HUP)
        [process] = self.reactor.spawned
        self.assertEqual(process.args,
                         ["/bin/sh", "-c", "ezjail-admin restart web"])
        self.assertEqual(process.env["JAILTWIST_PROBE"], "1")
        self.assertEqual(process.env["JAILTWIST_JAIL"], "web (jid 1)")
        self.assertEqual(process.env["JAILTWIST_TITLE"], "RELOAD")
        self.assertNotIn("PYTHONPATH", process.env)
        self.assertEqual((process.uid, process.gid), (None, None))
        self.assertEqual(self.service.describe()[0]["state"], "running")
        process.finish(3)
        self.assertEqual(self.kinds(), ["probe-planted", "probe-fired",
                                        "command-started",
                                        "command-finished"])
        self.assertEqual(self.published[-1].fields["status"], 3)
        self.assertEqual(self.service.describe(), [])
        self.assertEqual(len(self.launcher.planted), 1)
        self.assertTrue(self.launcher.targets[0].closed)
        self.reactor.advance(100)
        self.assertEqual(len(self.launcher.planted), 1)

    def test_respawnAfter(self):
        """
        C{-r}: a new probe only once the command has finished, so the
        command never runs twice at once.
        """
        self.attach(respawn="after")
        self.launcher.end(HUP)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 1)
        self.assertEqual(len(self.reactor.spawned), 1)
        # The old probe's end is reported once only.
        self.launcher.end(HUP)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.spawned[0].finish(0)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 2)
        self.assertEqual(self.launcher.planted[1][1:4],
                         self.launcher.planted[0][1:4])
        self.assertEqual(self.service.describe()[0]["state"], "planted")
        self.assertEqual(self.service.describe()[0]["fired"], 1)
        self.launcher.end(HUP)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_respawnNow(self):
        """
        C{-R}: a new probe at once; its command may run while the first
        still runs.
        """
        self.attach(respawn="immediate")
        self.launcher.end(HUP)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 2)
        self.launcher.end(HUP)
        self.reactor.advance(0)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(len(self.launcher.planted), 3)
        for process in self.reactor.spawned:
            process.finish(0)
        self.assertEqual(self.service.describe()[0]["state"], "planted")

    def test_throttle(self):
        """
        More than C{burst} respawns within C{interval} seconds wait: a HUP
        storm never becomes a fork storm.
        """
        self.attach(respawn="after")
        for n in range(3):
            self.launcher.end(HUP)
            self.reactor.spawned[-1].finish(0)
            self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 4)
        self.launcher.end(HUP)
        self.reactor.spawned[-1].finish(0)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 4)
        self.assertEqual(self.kinds()[-1], "probe-throttled")
        self.assertEqual(self.published[-1].fields["delay"], 10.0)
        self.assertEqual(self.service.describe()[0]["state"], "respawning")
        self.reactor.advance(9.9)
        self.assertEqual(len(self.launcher.planted), 4)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.launcher.planted), 5)

    def test_stormWithRespawnNow(self):
        """
        A jail that HUPs every new probe at once gets at most C{burst}
        probes (and commands) per C{interval}.
        """
        self.attach(respawn="immediate")
        for step in range(300):
            planted = len(self.launcher.planted)
            if self.service.describe()[0]["state"] == "planted":
                self.launcher.end(HUP)
            self.reactor.advance(0.1)
            self.assertLessEqual(len(self.launcher.planted), planted + 1)
        # 30 seconds: the first plant, then 3 respawns per 10 seconds.
        self.assertLessEqual(len(self.launcher.planted), 1 + 3 * 3 + 3)
        self.assertLessEqual(len(self.reactor.spawned), 1 + 3 * 3 + 3)

    def test_lost(self):
        """
        A probe that ends any other way than by SIGHUP is lost: nothing
        runs, nothing respawns.
        """
        for status, reason in ((TERM, "killed by SIGTERM"),
                               (KILL, "killed by SIGKILL"),
                               (EXIT0, "exit status 0")):
            self.published[:] = []
            self.attach(respawn="after")
            self.launcher.end(status)
            self.assertEqual(self.kinds(), ["probe-planted"])
            self.reactor.advance(LOST_GRACE)
            self.assertEqual(self.kinds(), ["probe-planted", "probe-lost"])
            self.assertEqual(self.published[-1].fields["reason"], reason)
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(self.service.describe(), [])

    def test_jailGone(self):
        """
        When the jail's pinned process ends, the probe is reported with
        C{jail-gone} and killed; its end then runs nothing.
        """
        self.attach(respawn="after")
        pid = self.launcher.planted[0][5]
        self.launcher.targets[0].die()
        self.assertEqual(self.kinds(), ["probe-planted", "jail-gone"])
        self.assertEqual(self.launcher.killed, [pid])
        self.launcher.end(HUP)
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(self.service.describe(), [])
        self.assertTrue(self.launcher.targets[0].closed)

    def test_jailStopping(self):
        """
        A jail that stops kills its probe before its own end is seen: the
        probe's SIGKILL followed by the jail's end is C{jail-gone}, not
        C{probe-lost}.
        """
        self.attach(respawn="after")
        self.launcher.end(KILL)
        self.reactor.advance(LOST_GRACE / 2)
        self.launcher.targets[0].die()
        self.reactor.advance(LOST_GRACE)
        self.assertEqual(self.kinds(), ["probe-planted", "jail-gone"])
        self.assertEqual(self.launcher.killed, [])
        self.assertEqual(self.service.describe(), [])

    def test_jailGoneUnseen(self):
        """
        The jail's end noticed only when the grace time is over still makes
        it C{jail-gone}.
        """
        self.attach()
        self.launcher.end(KILL)
        self.launcher.targets[0].living = False
        self.reactor.advance(LOST_GRACE)
        self.assertEqual(self.kinds(), ["probe-planted", "jail-gone"])

    def test_jailDeadWhenFired(self):
        """
        A HUP that arrives when the jail is already gone runs nothing.
        """
        self.attach()
        self.launcher.targets[0].living = False
        self.launcher.end(HUP)
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(self.kinds(), ["probe-planted", "jail-gone"])

    def test_jailGoneBeforeRespawn(self):
        self.attach(respawn="after")
        self.launcher.end(HUP)
        self.launcher.targets[0].living = False
        self.reactor.spawned[0].finish(0)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 1)
        self.assertEqual(self.kinds()[-1], "jail-gone")

    def test_respawnFails(self):
        self.attach(respawn="after")
        self.launcher.end(HUP)
        self.launcher.failNext = ProbeFailed("fork: out of memory")
        self.reactor.spawned[0].finish(0)
        self.reactor.advance(0)
        self.assertEqual(self.kinds()[-1], "probe-lost")
        self.assertEqual(self.service.describe(), [])
        self.flushLoggedErrors()

    def test_remove(self):
        self.attach()
        pid = self.launcher.planted[0][5]
        self.service.remove(1)
        self.assertEqual(self.launcher.killed, [pid])
        self.assertEqual(self.kinds()[-1], "probe-removed")
        self.launcher.end(KILL)
        self.assertEqual(self.kinds()[-1], "probe-removed")
        self.assertRaises(UnknownProbe, self.service.remove, 1)

    def test_removeWhileCommandRuns(self):
        self.attach(respawn="after")
        self.launcher.end(HUP)
        self.service.remove(1)
        self.assertEqual(self.launcher.killed, [])
        self.reactor.spawned[0].finish(0)
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 1)

    def test_stopService(self):
        self.attach()
        self.attach(respawn="after")
        self.service.stopService()
        self.assertEqual(sorted(self.launcher.killed),
                         [p[5] for p in self.launcher.planted])
        self.assertEqual(self.service.describe(), [])
        self.assertRaises(ProbeFailed, self.attach)

    def test_commandAsOwner(self):
        """
        A probe attached by an admin-group member runs its command as that
        member, not as root.
        """
        self.attach(owner=USER)
        self.launcher.end(HUP)
        [process] = self.reactor.spawned
        if os.getuid() == USER.uid:
            self.assertEqual((process.uid, process.gid), (None, None))
        else:
            self.assertEqual((process.uid, process.gid), (1000, 1000))

    def test_spawnFails(self):
        self.attach(respawn="after")
        self.reactor.failSpawn = OSError(2, "No such file or directory")
        self.launcher.end(HUP)
        self.assertEqual(self.kinds()[-1], "command-finished")
        self.assertIn("No such file", self.published[-1].fields["error"])
        self.reactor.advance(0)
        self.assertEqual(len(self.launcher.planted), 2)

    def test_commandOutputLogged(self):
        self.attach()
        self.launcher.end(HUP)
        [process] = self.reactor.spawned
        with capturedLogs() as events:
            process.protocol.childDataReceived(1, b"snap")
            process.protocol.childDataReceived(1, b"shot taken\nnext")
            process.protocol.childDataReceived(2, b"warn\xff\n")
            process.finish(0)
        lines = [(e.get("stream"), e.get("line")) for e in events
                 if "line" in e]
        self.assertEqual(lines, [("stdout", "snapshot taken"),
                                 ("stderr", "warn\ufffd"),
                                 ("stdout", "next")])

    def test_longOutputLine(self):
        protocol = CommandProtocol(type("P", (), {"id": 1})(), lambda *a: 0)
        with capturedLogs() as events:
            protocol.childDataReceived(1, b"x" * 5000)
        self.assertEqual([len(e["line"]) for e in events], [2000])


class ThrottleTests(SynchronousTestCase):

    def test_window(self):
        clock = Clock()
        throttle = RespawnThrottle(2, 10.0, clock)
        self.assertEqual([throttle.delay(), throttle.delay()], [0.0, 0.0])
        self.assertEqual(throttle.delay(), 10.0)
        self.assertEqual(throttle.delay(), 10.0)
        self.assertEqual(throttle.delay(), 20.0)
        clock.advance(30)
        self.assertEqual(throttle.delay(), 0.0)

    def test_describeStatus(self):
        self.assertEqual(describeStatus(1), "killed by SIGHUP")
        self.assertEqual(describeStatus(3 << 8), "exit status 3")


class ProbeImageTests(SynchronousTestCase):

    def test_elf(self):
        image = probeImage("x86_64")
        self.assertEqual(image[:4], b"\x7fELF")
        self.assertEqual(image[4:6], b"\x02\x01")
        machine, = struct.unpack("<H", image[18:20])
        self.assertEqual(machine, 62)
        entry, = struct.unpack("<Q", image[24:32])
        self.assertEqual(entry, 0x400000 + 64 + 2 * 56)
        self.assertLess(len(image), 512)

    def test_unknownMachine(self):
        error = self.assertRaises(JailtwistError, probeImage, "m68k")
        self.assertIn("x86_64", str(error))

    def test_sealed(self):
        fd = sealedProbe()
        self.addCleanup(os.close, fd)
        self.assertRaises(OSError, os.write, fd, b"x")
        self.assertRaises(OSError, os.ftruncate, fd, 0)
        self.assertEqual(os.fstat(fd).st_mode & 0o777, 0o111)
        self.assertEqual(os.pread(fd, 4, 0), b"\x7fELF")


def _runProbe(testCase, title, uid=None):
    """
    Fork and exec the probe program as C{uid}; return its pid.
    """
    image = sealedProbe()
    testCase.addCleanup(os.close, image)
    pid = os.fork()
    if pid == 0:
        try:
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            os.closerange(0, image)
            os.closerange(image + 1, 1 << 20)
            os.execve(image, [title], {})
        finally:
            os._exit(127)

    def reap():
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    testCase.addCleanup(reap)
    harness.waitFor(lambda: _comm(pid) == title[:15], 5.0,
                    "the probe to set its name")
    return pid


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


class ProbeProgramTests(SynchronousTestCase):
    """
    The probe program itself, run for real (not in a jail).
    """

    def test_shows(self):
        """
        The probe shows its title and nothing of the host: its command line
        is the title, its environment is empty, its executable is the
        anonymous memfd, it has no descriptors; and it is not dumpable, so
        its /proc files belong to root whatever uid it runs as.
        """
        harness.isolated(self)
        title = "ZFS_SNAPSHOT for the web jail"
        pid = _runProbe(self, title, uid=65534)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assertEqual(f.read(), title.encode() + b"\0")
        with open(f"/proc/{pid}/environ", "rb") as f:
            self.assertEqual(f.read(), b"")
        self.assertEqual(os.readlink(f"/proc/{pid}/exe"),
                         "/memfd:jailtwist-probe (deleted)")
        self.assertEqual(os.listdir(f"/proc/{pid}/fd"), [])
        self.assertEqual(os.stat(f"/proc/{pid}/environ").st_uid, 0)
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        self.assertIn("Uid:\t65534", status)
        rss = int(status.split("VmRSS:")[1].split()[0])
        self.assertLess(rss, 200)

    def test_hangup(self):
        pid = _runProbe(self, "RELOAD")
        os.kill(pid, signal.SIGHUP)
        _, status = os.waitpid(pid, 0)
        self.assertTrue(os.WIFSIGNALED(status))
        self.assertEqual(os.WTERMSIG(status), signal.SIGHUP)

    def test_otherSignals(self):
        pid = _runProbe(self, "RELOAD")
        os.kill(pid, signal.SIGUSR1)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.WTERMSIG(status), signal.SIGUSR1)


class TitledForkTests(SynchronousTestCase):

    def test_titleDuringFork(self):
        """
        For the instant of the fork the daemon shows the probe's title (cut
        to the room its own command line has) and is not dumpable; both are
        put back afterwards.
        """
        with open("/proc/self/cmdline", "rb") as f:
            before = f.read()
        with open("/proc/self/comm", "rb") as f:
            name = f.read()
        birth = _TitledFork(enter, None, None, "PROBE_TITLE", retitle=True)
        with birth:
            with open("/proc/self/cmdline", "rb") as f:
                during = f.read()
            with open("/proc/self/comm", "rb") as f:
                self.assertEqual(f.read(), b"PROBE_TITLE\n")
            self.assertEqual(enter.prctl(3), 0)
        shown = b"PROBE_TITLE"[:len(before) - 1]
        self.assertEqual(during[:len(shown)], shown)
        self.assertNotIn(b"trial", during)
        with open("/proc/self/cmdline", "rb") as f:
            self.assertEqual(f.read(), before)
        with open("/proc/self/comm", "rb") as f:
            self.assertEqual(f.read(), name)
        self.assertEqual(enter.prctl(3), 1)


    def test_noTitleForSharedPidNamespace(self):
        """
        For a jail that shares our pid namespace (it sees this daemon
        anyway) the daemon keeps its own command line, so the jail's
        C{pkill -HUP -f TITLE} can never hit the daemon itself.
        """
        with open("/proc/self/cmdline", "rb") as f:
            before = f.read()
        with _TitledFork(enter, None, None, "PROBE_TITLE", retitle=False):
            with open("/proc/self/cmdline", "rb") as f:
                self.assertEqual(f.read(), before)
            self.assertEqual(enter.prctl(3), 0)
        self.assertEqual(enter.prctl(3), 1)


class JailTargetTests(SynchronousTestCase):

    def test_interfaces(self):
        from twisted.internet import reactor
        process = enter.pinProcess(os.getpid())
        target = JailTarget(process, "self", reactor)
        self.addCleanup(target.close)
        verifyObject(IJailTarget, target)
        self.assertTrue(target.alive())
        launcher = JailProbeLauncher(reactor, None)
        self.addCleanup(launcher.close)
        verifyObject(IProbeLauncher, launcher)
        self.assertRaises(UnknownJail, launcher.pin, "web")


