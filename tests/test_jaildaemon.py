"""
Integration tests of the installed C{jaildaemon}, C{jailtwist} and
C{twistd jailtwist}: a real daemon, real jails (a plain chroot with static
busybox, and a namespaced jail launched by C{jk_chrootlaunch --isolate}),
probes attached with the real utility and triggered from inside the jail.

Run under C{tests/isolated} (as root).
"""

import json
import os
import signal
import subprocess
import time

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jailtwist.control import JailEvent
from jailtwist.errors import JailtwistError
from jailtwist.tap import jaildaemon as jaildaemonTap
from jailtwist.tap import suite as suiteTap
from jailtwist.tools import client
from tests import harness
from tests.test_launch import busyboxJail, killJail

# pkill -HUP -f TITLE for a jail whose busybox has no pkill: signal every
# process whose command line holds $1, except this shell.
PKILL = ('n=0; for p in /proc/[0-9]*; do q=${p#/proc/}; '
         '[ "$q" = "$$" ] && continue; '
         'if /bin/busybox grep -qs "$1" $p/cmdline; then '
         '/bin/busybox kill -HUP $q && n=$((n+1)); fi; done; echo $n')


def waitForGate(gate):
    """
    A host command that blocks until the test creates C{gate}: used in place
    of a sleep that a slow machine might outrun.
    """
    return f"while [ ! -e {gate} ]; do sleep 0.05; done"


def waitInJail(pid, jail):
    """
    Wait until process C{pid} (started through C{chroot}) has its root in
    C{jail}: only then is it a process of that jail.
    """
    jail = os.path.realpath(jail)
    harness.waitFor(lambda: os.readlink(f"/proc/{pid}/root") == jail,
                    what=f"pid {pid} to enter {jail}")


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


class Daemon:
    """
    A real C{jaildaemon -D} on a private socket, stopped after the test.
    """

    def __init__(self, testCase, mode="600"):
        self.testCase = testCase
        self.directory = harness.shortTempDir(testCase)
        self.socket = self.directory.child("ctl").path
        self.pidfile = self.directory.child("pid").path
        self.log = self.directory.child("log").path
        self.ipc = f"unix:{self.socket}:mode={mode}"

    def start(self):
        result = harness.run("jaildaemon", "-D", "-p", self.pidfile, "-f",
                             self.ipc, "-l", self.log)
        self.testCase.assertEqual(result.returncode, 0, result.stderr)
        self.testCase.addCleanup(self.stop)
        # jaildaemon -D returns once the daemon serves (twistd's parent
        # waits for the started application), its pidfile written before.
        harness.waitForSocket(self.socket, what="the daemon's socket")
        self.pid = int(open(self.pidfile).read())
        return self

    def stop(self, sig=signal.SIGTERM):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        harness.waitFor(lambda: _gone(self.pid), what="the daemon to stop")

    def client(self, *args, **kw):
        return harness.run("jailtwist", "-f", self.socket, *args, **kw)

    def attach(self, *args, **kw):
        return harness.run("jaildaemon", "-f", self.socket, *args, **kw)

    def probes(self):
        result = self.client("probes", "--json")
        self.testCase.assertEqual(result.returncode, 0, result.stderr)
        return [json.loads(line) for line in result.stdout.splitlines()]

    def logText(self):
        with open(self.log) as f:
            return f.read()


class SettingsTests(SynchronousTestCase):
    """
    The daemon's settings: command line over C{jailtwist.ini}'s [control]
    and [probes]; the suite's config file.
    """

    def ini(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_defaults(self):
        settings = jaildaemonTap.settingsFrom({})
        self.assertEqual((settings.ipc, settings.adminGid, settings.eventGid,
                          settings.eventsForAll, settings.probes,
                          settings.burst, settings.interval,
                          settings.maxProbes, settings.registry),
                         ("unix:/var/run/jaildaemon.pipe:mode=600", None,
                          None, False, True, 5, 60.0, 1000,
                          "/run/jailtwist"))

    def test_config(self):
        path = self.ini("[control]\nipc = /run/j.pipe\nadmin_group = 0\n"
                        "event_group = *\n[probes]\nburst = 2\n"
                        "interval = 1.5\nmax_probes = 7\nshell = /bin/dash\n"
                        "registry = /tmp/reg\n")
        settings = jaildaemonTap.settingsFrom({"config": path})
        self.assertEqual((settings.ipc, settings.adminGid,
                          settings.eventsForAll, settings.burst,
                          settings.interval, settings.maxProbes,
                          settings.shell, settings.registry),
                         ("unix:/run/j.pipe:mode=600", 0, True, 2, 1.5, 7,
                          "/bin/dash", "/tmp/reg"))

    def test_commandLineWins(self):
        path = self.ini("[probes]\nburst = 2\n[control]\nipc = /run/a\n")
        settings = jaildaemonTap.settingsFrom(
            {"config": path, "burst": "9", "ipc": "unix:/run/b:mode=660"})
        self.assertEqual((settings.burst, settings.ipc),
                         (9, "unix:/run/b:mode=660"))

    def test_errors(self):
        for options, text, message in (
                ({}, "[control]\nadmin = x\n", "unknown key"),
                ({}, "[probes]\nburst = 0\n", "burst"),
                ({}, "[control]\nadmin_group = no-such-group-here\n",
                 "group 'no-such-group-here' does not exist"),
                ({"interval": "soon"}, "", "--interval: 'soon' is not a "
                                           "number"),
                ({"max-probes": "0"}, "", "--max-probes: must be at least 1")):
            options = dict(options, config=self.ini(text))
            error = self.assertRaises(JailtwistError,
                                      jaildaemonTap.settingsFrom, options)
            self.assertIn(message, str(error))

    def test_options(self):
        options = jaildaemonTap.Options()
        options.parseOptions(["--ipc", "/run/x", "--event-group", "*"])
        self.assertTrue(options["settings"].eventsForAll)
        self.assertRaises(usage.UsageError, jaildaemonTap.Options()
                          .parseOptions, ["--burst", "many"])

    def test_suite(self):
        path = self.ini("[control]\nipc = /run/x\n[jk_socketd]\n"
                        "enabled = no\n")
        options = suiteTap.Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options["settings"].ipc, "unix:/run/x:mode=600")
        self.assertIsNone(options["socketd"])
        for text, message in (("[relay]\n", "unknown section [relay]"),
                              ("[jk_socketd]\nport = 1\n", "unknown key")):
            error = self.assertRaises(usage.UsageError,
                                      suiteTap.Options().parseOptions,
                                      ["--config", self.ini(text)])
            self.assertIn(message, str(error))


class ClientFormatTests(SynchronousTestCase):
    """
    How C{jailtwist} shows events and lists to people.
    """

    def test_event(self):
        event = JailEvent("probe-fired", 0.0,
                          {"probe": 3, "jail": "web (jid 2)", "title": "T"})
        line = client.formatEvent(event)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(0))
        self.assertEqual(line, f'{when} probe-fired jail="web (jid 2)" '
                               f'probe=3 title=T')

    def test_table(self):
        rows = [{"probe": 1, "title": "A"}, {"probe": 10, "title": "LONGER"}]
        self.assertEqual(client._table(rows, [("PROBE", "probe"),
                                              ("TITLE", "title")]),
                         "PROBE  TITLE\n1      A\n10     LONGER")
        self.assertEqual(client._table([], [("PROBE", "probe")]), "")


class UsageTests(TestCase):

    def test_usageErrors(self):
        for args in ((), ("-D", "-c", "true"), ("-c", "true"),
                     ("-c", "true", "-j", "1", "-r", "-R"),
                     ("-c", "true", "-j", "1", "-u", "www"),
                     ("--bogus",)):
            result = harness.run("jaildaemon", *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertEqual(len(result.stderr.splitlines()), 1,
                             result.stderr)
            self.assertTrue(result.stderr.startswith("jaildaemon: "))

    def test_noDaemon(self):
        socket = harness.shortTempDir(self).child("ctl").path
        result = harness.run("jaildaemon", "-c", "true", "-j", "1", "-f",
                             socket)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            f"jaildaemon: no jailtwist daemon is running on {socket} (start "
            f"one with 'jaildaemon -D' or 'twistd jaildaemon')\n")
        result = harness.run("jailtwist", "-f", socket, "probes")
        self.assertEqual(result.returncode, 1)
        self.assertIn("no jailtwist daemon is running", result.stderr)

    def test_socketNotPermitted(self):
        """
        A user the socket's mode keeps out is told so, not that no daemon
        runs.
        """
        import socket as sockets
        path = harness.shortTempDir(self).child("ctl").path
        listening = sockets.socket(sockets.AF_UNIX)
        self.addCleanup(listening.close)
        listening.bind(path)
        listening.listen(1)
        os.chmod(path, 0o600)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             harness.script("jailtwist"), "-f", path, "ping"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.splitlines(), [
            f"jailtwist: permission denied on {path}: the control socket is "
            f"for root (or the group its mode and the daemon's "
            f"configuration allow); run as root"])


class DaemonTests(TestCase):

    def setUp(self):
        harness.isolated(self)

    def test_secondDaemonRefused(self):
        daemon = Daemon(self).start()
        other = self.mktemp()
        result = harness.run("jaildaemon", "-D", "-p", other, "-f",
                             daemon.socket)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            f"jaildaemon: another jailtwist daemon (pid {daemon.pid}) is "
            f"running on {daemon.socket}: stop it first or use another "
            f"socket\n")
        self.assertFalse(os.path.exists(other))
        ping = daemon.client("ping")
        self.assertEqual(ping.returncode, 0, ping.stderr)
        self.assertIn(f"pid {daemon.pid} serving control, probes",
                      ping.stdout)

    def test_staleSocket(self):
        """
        The socket of a daemon killed outright is not an instance: the next
        daemon starts.
        """
        first = Daemon(self).start()
        first.stop(signal.SIGKILL)
        self.assertTrue(os.path.exists(first.socket))
        os.unlink(first.pidfile)
        second = Daemon(self)
        second.directory, second.socket = first.directory, first.socket
        second.ipc = first.ipc
        second.start()
        self.assertNotEqual(second.pid, first.pid)
        self.assertEqual(second.client("ping").returncode, 0)

    def test_foreground(self):
        """
        C{jaildaemon -D -n} stays in the foreground and logs to standard
        output; SIGTERM stops it cleanly and removes its pid file.
        """
        directory = harness.shortTempDir(self)
        socket = directory.child("fg").path
        pidfile = directory.child("fg.pid").path
        process = subprocess.Popen(
            [harness.script("jaildaemon"), "-D", "-n", "-p", pidfile, "-f",
             socket], stdout=subprocess.PIPE, text=True)
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        harness.waitFor(lambda: harness.run("jailtwist", "-f", socket,
                                            "ping").returncode == 0,
                        what="the daemon to answer")
        self.assertEqual(int(open(pidfile).read()), process.pid)
        process.terminate()
        output = process.stdout.read()
        # twistd ends with the signal that stopped it, after a clean
        # shutdown.
        self.assertEqual(process.wait(), -signal.SIGTERM)
        self.assertIn("ControlFactory starting on", output)
        self.assertIn("Server Shut Down.", output)
        self.assertFalse(os.path.exists(pidfile))

    def test_nonRootRefused(self):
        """
        A peer that is not root (nor in the admin group) can connect to a
        mode 666 socket but may not attach, remove or list probes.
        """
        daemon = Daemon(self, mode="666").start()
        asNobody = ["setpriv", "--reuid=65534", "--regid=65534",
                    "--clear-groups", "--"]
        for command, args, message in (
                ("jaildaemon", ["-c", "touch /tmp/owned", "-j", "1"],
                 "attaching a probe needs root or the admin group"),
                ("jailtwist", ["remove", "1"],
                 "removing a probe needs root or the admin group"),
                ("jailtwist", ["probes"],
                 "listing probes is not allowed for uid 65534")):
            result = subprocess.run(
                asNobody + [harness.script(command), "-f", daemon.socket]
                + args, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertEqual(result.stderr, f"{command}: {message}\n")
        ping = subprocess.run(asNobody + [harness.script("jailtwist"), "-f",
                                          daemon.socket, "ping"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(ping.returncode, 0, ping.stderr)
        self.assertIn("refused attaching a probe", daemon.logText())


class ChrootJailTests(TestCase):
    """
    Probes in a plain chroot jail (jailkit's kind): the jail is named by the
    pid of a process in it.
    """

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)
        proc = os.path.join(self.jail, "proc")
        subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", proc])
        self.process = subprocess.Popen(
            ["chroot", self.jail, "/bin/busybox", "sleep", "600"])
        self.addCleanup(self.process.wait)
        self.addCleanup(self.process.kill)
        waitInJail(self.process.pid, self.jail)
        self.daemon = Daemon(self).start()
        self.out = self.daemon.directory.child("out")

    def inJail(self, script, *args):
        result = subprocess.run(
            ["chroot", self.jail, "/bin/busybox", "sh", "-c", script, "sh"]
            + list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def followEvents(self):
        """
        Start C{jailtwist events --json} and wait until it is subscribed.
        """
        events = subprocess.Popen(
            [harness.script("jailtwist"), "-f", self.daemon.socket, "events",
             "--json"], stdout=subprocess.PIPE)
        self.addCleanup(events.wait)
        self.addCleanup(events.terminate)
        harness.waitFor(lambda: "follows events" in self.daemon.logText(),
                        what="the subscription")
        return events

    def eventsUntil(self, events, lastKind, timeout=15.0):
        """
        Read C{events} until an event of C{lastKind} arrives, then stop it.
        The daemon logs a step as it publishes it, so the log alone does not
        prove the client has received the event yet.
        """
        received = []
        while not received or received[-1]["kind"] != lastKind:
            received.append(json.loads(harness.readLine(events.stdout,
                                                        timeout)))
        events.terminate()
        return received

    def gate(self):
        """
        A path a host command waits for (see L{WAIT_FOR_GATE}); it is
        created at cleanup, so no command is left waiting.
        """
        gate = self.daemon.directory.child("gate").path
        self.addCleanup(lambda: open(gate, "a").close())
        return gate

    def pkill(self, title):
        return int(self.inJail(PKILL, title))

    def lines(self):
        if not self.out.exists():
            return []
        return self.out.getContent().decode().splitlines()

    def attach(self, command, *args):
        result = self.daemon.attach("-c", command, "-j",
                                    f"pid:{self.process.pid}", *args)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_singleShot(self):
        """
        jaildaemon's first example: a probe titled EZJAIL_REBOOT; a HUP from
        inside the jail runs the host command once, and the probe is gone.
        """
        output = self.attach(f"echo fired $JAILTWIST_PROBE >> {self.out.path}",
                             "-t", "EZJAIL_REBOOT")
        self.assertRegex(output, r"^probe 1 planted in jail pid \d+ as "
                                 r"'EZJAIL_REBOOT' \(pid \d+\)\n$")
        ps = self.inJail("/bin/busybox ps")
        self.assertIn("EZJAIL_REBOOT", ps)
        self.assertEqual(self.pkill("EZJAIL_REBOOT"), 1)
        harness.waitFor(self.lines, what="the host command")
        harness.waitFor(lambda: self.daemon.probes() == [],
                        what="the probe to be forgotten")
        self.assertEqual(self.pkill("EZJAIL_REBOOT"), 0)
        self.assertEqual(self.lines(), ["fired 1"])
        self.assertIn("probe 1 command finished: exit status 0",
                      self.daemon.logText())

    def test_probeShowsOnlyItsTitle(self):
        """
        Seen from inside the jail, the probe's command line is its title,
        its environment is empty, its executable is an anonymous memfd, its
        working directory is the jail's root, and it holds no descriptor.
        """
        self.attach("true", "-t", "ZFS_SNAPSHOT")
        [probe] = self.daemon.probes()
        pid = probe["pid"]
        seen = self.inJail(
            'cd /proc/$1 && /bin/busybox cat cmdline; echo; '
            '/bin/busybox wc -c < environ; /bin/busybox readlink exe; '
            '/bin/busybox readlink cwd; /bin/busybox ls fd | '
            '/bin/busybox wc -l', str(pid))
        self.assertEqual(seen.split("\n")[:5],
                         ["ZFS_SNAPSHOT\0", "0",
                          "/memfd:jailtwist-probe (deleted)", "/", "0"])

    def test_respawnAfter(self):
        """
        C{-r}: a new probe once the command finished; a second HUP while the
        command runs finds no probe, so the command never runs twice at
        once.
        """
        out = self.out.path
        gate = self.gate()
        self.attach(f"echo start >> {out}; {waitForGate(gate)}; "
                    f"echo end >> {out}", "-r", "-t", "ZFS_SNAPSHOT")
        self.assertEqual(self.pkill("ZFS_SNAPSHOT"), 1)
        harness.waitFor(self.lines, what="the command to start")
        self.assertEqual(self.pkill("ZFS_SNAPSHOT"), 0)
        # Let the first run finish; the second goes straight through.
        open(gate, "w").close()
        harness.waitFor(lambda: self.pkill("ZFS_SNAPSHOT") == 1, 10,
                        "the respawned probe")
        harness.waitFor(lambda: len(self.lines()) == 4, 10,
                        what="the second run")
        self.assertEqual(self.lines(), ["start", "end", "start", "end"])
        [probe] = self.daemon.probes()
        self.assertEqual((probe["fired"], probe["respawn"]), (2, "after"))

    def test_respawnNow(self):
        """
        C{-R}: the probe is back at once, while the command still runs.
        """
        gate = self.gate()
        self.attach(f"{waitForGate(gate)}; echo done >> {self.out.path}",
                    "-R", "-t", "UPDATE_ROUTING")
        self.assertEqual(self.pkill("UPDATE_ROUTING"), 1)
        harness.waitFor(lambda: "UPDATE_ROUTING" in self.inJail(
            "/bin/busybox ps"), what="the new probe")
        self.assertEqual(self.lines(), [])
        open(gate, "w").close()
        harness.waitFor(self.lines, what="the command to finish")

    def test_uid(self):
        """
        C{-u}/C{-g}: the probe runs as that uid and gid of the jail, so an
        unprivileged process of the jail may signal it.
        """
        self.attach(f"echo fired >> {self.out.path}", "-u", "1000", "-t",
                    "WWW_ACTION")
        [probe] = self.daemon.probes()
        status = self.inJail("/bin/busybox cat /proc/$1/status",
                             str(probe["pid"]))
        self.assertIn("Uid:\t1000\t1000\t1000\t1000", status)
        self.assertIn("Gid:\t1000\t1000\t1000\t1000", status)
        self.assertRegex(status, r"\nGroups:\s*\n")
        # Not dumpable (its files are root's), and no setns: a process of
        # uid 1000 elsewhere cannot use it to join a login of that account
        # (enter.installJoinFilter; the image is execute-only, so it is not
        # dumpable between its exec and its own PR_SET_DUMPABLE either).
        self.assertIn("Seccomp:\t2\n", status)
        self.assertEqual(os.stat(f"/proc/{probe['pid']}/environ").st_uid, 0)
        result = subprocess.run(
            ["chroot", "--userspec=1000:1000", self.jail, "/bin/busybox",
             "kill", "-HUP", str(probe["pid"])],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        harness.waitFor(self.lines, what="the host command")

    def test_jailGone(self):
        """
        When the jail's process ends, the probe is reported and killed, and
        nothing runs.
        """
        events = self.followEvents()
        self.attach(f"echo fired >> {self.out.path}", "-r", "-t", "GONE")
        [probe] = self.daemon.probes()
        self.process.kill()
        self.process.wait()
        harness.waitFor(lambda: self.daemon.probes() == [],
                        what="the probe to be dropped")
        harness.waitFor(lambda: _gone(probe["pid"]), what="the probe to die")
        self.assertEqual(self.lines(), [])
        kinds = [e["kind"] for e in self.eventsUntil(events, "jail-gone")]
        self.assertEqual(kinds, ["probe-planted", "jail-gone"])

    def test_events(self):
        """
        C{jailtwist events --json} shows each step of a probe's life.
        """
        events = self.followEvents()
        self.attach("exit 7", "-t", "STEPS")
        self.pkill("STEPS")
        harness.waitFor(lambda: "command finished: exit status 7" in
                        self.daemon.logText(), what="the command")
        lines = self.eventsUntil(events, "command-finished")
        self.assertEqual([e["kind"] for e in lines],
                         ["probe-planted", "probe-fired", "command-started",
                          "command-finished"])
        self.assertEqual(lines[-1]["status"], 7)
        self.assertEqual(lines[0]["title"], "STEPS")
        self.assertEqual(events.wait(), 0)

    def test_remove(self):
        self.attach(f"echo fired >> {self.out.path}", "-t", "REMOVED")
        [probe] = self.daemon.probes()
        result = self.daemon.client("remove", str(probe["probe"]))
        self.assertEqual((result.returncode, result.stdout),
                         (0, f"probe {probe['probe']} removed\n"))
        harness.waitFor(lambda: _gone(probe["pid"]), what="the probe to die")
        self.assertEqual(self.daemon.probes(), [])
        result = self.daemon.client("remove", str(probe["probe"]))
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, f"jailtwist: no probe "
                                        f"{probe['probe']}\n")

    def test_probeDiesWithDaemon(self):
        """
        A daemon killed outright takes its probes with it (parent-death
        signal, set after the switch to the probe's ids, which clears it):
        no orphan probe is left in the jail.
        """
        self.attach("true", "-t", "ORPHAN")
        self.attach("true", "-t", "ORPHAN", "-u", "1000")
        probes = self.daemon.probes()
        self.assertEqual(len(probes), 2)
        self.daemon.stop(signal.SIGKILL)
        for probe in probes:
            harness.waitFor(lambda: _gone(probe["pid"]),
                            what="the probe to die")
        self.assertEqual(self.pkill("ORPHAN"), 0)

    def test_notAJail(self):
        result = self.daemon.attach("-c", "true", "-j", f"pid:{os.getpid()}")
        self.assertEqual(result.returncode, 1)
        self.assertIn("is not in a jail", result.stderr)
        result = self.daemon.attach("-c", "true", "-j", "nosuchjail")
        self.assertEqual(result.returncode, 1)
        self.assertIn("'nosuchjail'", result.stderr)
        self.assertIn("see jk_list", result.stderr)


class NamespacedJailTests(TestCase):
    """
    A probe in a jail launched by C{jk_chrootlaunch --isolate} (own pid,
    mount, ipc, uts and network namespaces), named through the registry.
    """

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)
        self.pidfile = harness.shortTempDir(self).child("jail.pid").path
        self.launcher = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "-j", self.jail,
             "--isolate", "--name", "nsjail", "-p", self.pidfile, "-x",
             "/bin/busybox", "--", "sleep", "600"],
            stderr=subprocess.DEVNULL)
        self.addCleanup(self.launcher.wait)
        self.addCleanup(killJail, self.pidfile)
        self.initPid = harness.waitRegistered("nsjail").initPid
        self.daemon = Daemon(self).start()
        self.out = self.daemon.directory.child("out")

    def inJail(self, script, *args):
        result = subprocess.run(
            ["nsenter", "-t", str(self.initPid), "-a", "/bin/busybox", "sh",
             "-c", script, "sh"] + list(args),
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_probeInPidNamespace(self):
        """
        The probe lives in the jail's pid namespace: the jail's ps lists it
        (and only the jail's processes); a HUP from inside runs the host
        command and, with C{-r}, a new probe is planted.
        """
        result = self.daemon.attach("-c", f"echo fired >> {self.out.path}",
                                    "-j", "nsjail", "-r", "-t",
                                    "NS_RELOAD")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("in jail nsjail (jid ", result.stdout)
        ps = self.inJail("/bin/busybox ps -o pid,user,args")
        rows = [line.split(None, 2) for line in ps.splitlines()[1:]]
        [probe] = [row for row in rows if row[2] == "NS_RELOAD"]
        self.assertLess(int(probe[0]), 10)
        self.assertLess(len(rows), 6, ps)
        self.assertEqual(int(self.inJail(PKILL, "NS_RELOAD")), 1)
        harness.waitFor(lambda: self.out.exists(), what="the host command")
        harness.waitFor(lambda: "NS_RELOAD" in self.inJail(
            "/bin/busybox ps -o args"), what="the respawned probe")
        self.assertEqual(self.out.getContent(), b"fired\n")
        jails = self.daemon.client("jails", "--json")
        [jail] = [json.loads(line) for line in jails.stdout.splitlines()]
        self.assertEqual((jail["name"], jail["initPid"], jail["path"]),
                         ("nsjail", self.initPid, self.jail))

    def test_jailStops(self):
        result = self.daemon.attach("-c", f"echo fired >> {self.out.path}",
                                    "-j", "nsjail", "-t", "NS_GONE")
        self.assertEqual(result.returncode, 0, result.stderr)
        killJail(self.pidfile)
        harness.waitFor(lambda: self.daemon.probes() == [],
                        what="the probe to be dropped")
        self.assertIn("jail nsjail", self.daemon.logText())
        self.assertIn("is gone: nothing runs", self.daemon.logText())
        self.assertFalse(self.out.exists())


# A jail with its own user namespace (jail root = host uid 100000), pid and
# mount namespaces and a fresh /proc, as container tools make them: prints
# the host pid of the jail's process, then waits for it.
USERNS_JAIL = """
import os, sys, time
from jailtwist import enter
jail, setgroups = sys.argv[1], sys.argv[2]
ready, go = os.pipe(), os.pipe()
child = os.fork()
if child == 0:
    enter.unshare(enter.CLONE_NEWUSER | enter.CLONE_NEWPID | enter.CLONE_NEWNS)
    os.write(ready[1], b"x")
    os.read(go[0], 1)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    inner = os.fork()
    if inner == 0:
        enter.mount("none", "/", None, enter.MS_REC | enter.MS_PRIVATE)
        enter.mount("proc", jail + "/proc", "proc")
        os.chroot(jail)
        os.chdir("/")
        os.execv("/bin/busybox", ["/bin/busybox", "sleep", "600"])
    os.waitpid(inner, 0)
    os._exit(0)
os.close(ready[1])
if os.read(ready[0], 1) != b"x":
    sys.exit("the jail's process could not unshare")
for name, text in (("setgroups", setgroups), ("uid_map", "0 100000 65536"),
                   ("gid_map", "0 100000 65536")):
    with open(f"/proc/{child}/{name}", "w") as f:
        f.write(text)
os.write(go[1], b"x")
while True:
    with open(f"/proc/{child}/task/{child}/children") as f:
        inner = f.read().split()
    if inner:
        try:
            # Ready once it runs busybox inside the jail.
            if os.readlink(f"/proc/{inner[0]}/exe").endswith("/busybox"):
                break
        except OSError:
            pass
    elif os.waitpid(child, os.WNOHANG)[0]:
        sys.exit("the jail's process ended")
    time.sleep(0.01)
print(inner[0], flush=True)
os.waitpid(child, 0)
"""


class UserNamespaceJailTests(TestCase):
    """
    A jail with its own user namespace: the probe joins it (or the jail's
    root, host uid 100000, could not signal it) and takes its ids there.
    """

    def launch(self, setgroups):
        harness.isolated(self)
        jail = busyboxJail(self, probe=False)
        process = subprocess.Popen(
            [harness.BIN.child("python").path, "-c", USERNS_JAIL, jail,
             setgroups], stdout=subprocess.PIPE)
        self.addCleanup(process.wait)
        self.jailPid = int(harness.readLine(process.stdout))
        self.addCleanup(os.kill, self.jailPid, signal.SIGKILL)
        self.daemon = Daemon(self).start()
        self.out = self.daemon.directory.child("out")

    def inJail(self, script):
        result = subprocess.run(
            ["nsenter", "-t", str(self.jailPid), "-U", "-p", "-m", "-r",
             "-w", "/bin/busybox", "sh", "-c", script],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def attachBoth(self):
        for args in (("-t", "USERNS_ROOT"), ("-u", "1000", "-t", "USERNS_WWW")):
            result = self.daemon.attach(
                "-c", f"echo {args[-1]} >> {self.out.path}", "-j",
                f"pid:{self.jailPid}", *args)
            self.assertEqual(result.returncode, 0, result.stderr)
        probes = {p["title"]: p["pid"] for p in self.daemon.probes()}
        ids = {}
        for title, pid in probes.items():
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            ids[title] = [line.split()[1:] for line in status.splitlines()
                          if line.startswith(("Uid:", "Gid:", "Groups:"))]
        self.assertEqual(ids, {
            "USERNS_ROOT": [["100000"] * 4, ["100000"] * 4, []],
            "USERNS_WWW": [["101000"] * 4, ["101000"] * 4, []]})
        ps = self.inJail("/bin/busybox ps -o user,args")
        self.assertIn("root     USERNS_ROOT", ps)
        self.assertIn("www      USERNS_WWW", ps)
        self.assertEqual(self.inJail(PKILL.replace("$1", "USERNS_")), "2\n")
        harness.waitFor(lambda: self.out.exists()
                        and len(self.out.getContent().splitlines()) == 2,
                        what="both host commands")
        self.assertEqual(sorted(self.out.getContent().split()),
                         [b"USERNS_ROOT", b"USERNS_WWW"])

    def test_setgroupsAllowed(self):
        self.launch("allow")
        self.attachBoth()

    def test_setgroupsDenied(self):
        """
        A user namespace that denies setgroups (as unprivileged tools make
        them): the daemon's groups are dropped before joining.
        """
        self.launch("deny")
        self.attachBoth()


class SuiteTests(TestCase):
    """
    C{twistd jailtwist}: the control channel, the probes and the
    jk_socketd relays in one process, sharing one event stream.
    """

    def test_oneProcess(self):
        harness.isolated(self)
        syslog = harness.startRsyslog(self)
        jail = busyboxJail(self, probe=False)
        directory = harness.shortTempDir(self)
        socketdIni = directory.child("jk_socketd.ini")
        socketdIni.setContent(
            f"[{jail}/dev/log]\nbase = 300\npeak = 300\n"
            f"interval = 60\n".encode())
        socket = directory.child("ctl").path
        ini = directory.child("jailtwist.ini")
        ini.setContent(
            f"[control]\nipc = unix:{socket}:mode=600\n\n"
            f"[probes]\nburst = 2\n\n"
            f"[jk_socketd]\nenabled = yes\nconfig = {socketdIni.path}\n"
            f"syslog = {syslog.socket}\n".encode())
        log = directory.child("twistd.log").path
        notify = harness.NotifySocket(self)
        process = subprocess.Popen(
            [harness.script("twistd"), "-n", "--pidfile=", "--logfile", log,
             "jailtwist", "--config", ini.path],
            env=dict(os.environ, **notify.environ))
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        # Ready (sd_notify): the control socket listens and the relay's
        # socket is bound; a file that exists may not be listening yet.
        notify.waitFor("READY", process=process)
        ping = harness.run("jailtwist", "-f", socket, "ping")
        self.assertEqual(ping.returncode, 0, ping.stderr)
        self.assertIn(f"pid {process.pid} serving control, probes",
                      ping.stdout)
        events = subprocess.Popen(
            [harness.script("jailtwist"), "-f", socket, "events", "--json",
             "--kind", "relay-throttled"], stdout=subprocess.PIPE)
        self.addCleanup(events.wait)
        self.addCleanup(events.terminate)
        harness.waitFor(lambda: "follows events" in open(log).read(),
                        what="the subscription")
        for n in range(4):
            subprocess.run(["chroot", jail, "/bin/busybox", "logger", "-t",
                            "suite", f"hello from the jail {n:<60}"],
                           check=True)
        lines = syslog.waitForLines(1)
        self.assertIn("hello from the jail 0", lines[0])
        throttled = json.loads(harness.readLine(events.stdout))
        self.assertEqual(throttled["socket"], f"{jail}/dev/log")
        sleeper = subprocess.Popen(["chroot", jail, "/bin/busybox", "sleep",
                                    "600"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        waitInJail(sleeper.pid, jail)
        result = harness.run("jaildaemon", "-f", socket, "-c", "true", "-j",
                             f"pid:{sleeper.pid}", "-t", "SUITE_PROBE")
        self.assertEqual(result.returncode, 0, result.stderr)
        second = harness.run("jaildaemon", "-D", "-p",
                             directory.child("p").path, "-f", socket)
        self.assertEqual(second.returncode, 1)
        self.assertIn(f"(pid {process.pid}) is running", second.stderr)
