"""
Tests for L{jailtwist.metrics}: the collectors over fake state, and the
installed daemons (C{jk_socketd}, C{twistd jk-socketd}, C{twistd
jailtwist}) scraped over real HTTP while they relay to a real rsyslogd,
fire a real probe, log a real account in through the login service, and
take hostile datagrams and requests.
"""

import os
import socket
import subprocess
import sys
import urllib.request

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.control import EventStream, JailEvent
from jailtwist.errors import JailtwistError
from jailtwist.loginwire import DEFAULT_SOCKET, Request, serialiseRequest
from jailtwist.metrics import (OTHER, EventCounts, KnownJails,
                               MetricsService, RelayCollector, SuiteCollector,
                               buildRegistry, jailOfSocket, makeService)
from tests import harness
from tests.test_login import LoginTestCase, asUser, withDevLog
from tests.test_loginservice import WITH_PTYS, withoutUserNamespaces
from tests.test_loginservice import _exchange as exchange
from tests.test_socketd import RelayTestMixin, send, syslogLine


def samples(text):
    """
    @return: C{{(name, frozenset(labels.items())): value}} of an exposition.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = \
                sample.value
    return found


def scrapeRegistry(collectors):
    return samples(generate_latest(collectors).decode())


def series(found, name):
    """
    @return: C{{labels as a dict's items: value}} of the samples C{name}.
    """
    return {labels: value for (each, labels), value in found.items()
            if each == name}


class FakeSocket:
    def __init__(self, name, **counts):
        self.name = name
        self.counts = dict(read=0, handed=0, held=0, dropped=0, empty=0)
        self.counts.update(
            {k: v for k, v in counts.items() if k in self.counts})
        self.bytes = counts.get("bytes", 0)
        self.throttled = counts.get("throttled", 0)
        self.truncated = counts.get("truncated", 0)

    def books(self):
        return dict(self.counts, socket=self.name)


class FakeSink:
    queued = 2
    refused = 3
    reconnects = 4


class FakeRelays:
    def __init__(self, *sockets):
        self.sockets = list(sockets)
        self.sink = FakeSink()


class FakeRecord:
    def __init__(self, path):
        self.path = path


class FakeRegistry:
    def __init__(self, *paths):
        self.paths = list(paths)

    def entries(self):
        return [FakeRecord(path) for path in self.paths]


class CollectorTests(SynchronousTestCase):
    """
    The collectors read the live state they are given at each scrape.
    """

    def test_jailOfSocket(self):
        self.assertEqual(jailOfSocket("/srv/j/dev/log"), "/srv/j")
        self.assertEqual(jailOfSocket("/srv/j//dev/log"), "/srv/j")
        self.assertEqual(jailOfSocket("/run/other.sock"), "/run/other.sock")
        self.assertEqual(jailOfSocket("/dev/log"), "/dev/log")

    def test_relay(self):
        one = FakeSocket("/srv/a/dev/log", read=10, handed=7, held=1,
                         dropped=1, empty=1, bytes=700, throttled=2,
                         truncated=1)
        two = FakeSocket("/srv/b/dev/log")
        collectors = CollectorRegistry()
        collectors.register(RelayCollector(FakeRelays(one, two)))
        found = scrapeRegistry(collectors)
        a = frozenset({"jail": "/srv/a", "socket": "/srv/a/dev/log"}.items())
        b = frozenset({"jail": "/srv/b", "socket": "/srv/b/dev/log"}.items())
        for name, value in (("jailtwist_relay_read_total", 10),
                            ("jailtwist_relay_messages_total", 7),
                            ("jailtwist_relay_bytes_total", 700),
                            ("jailtwist_relay_throttled_total", 2),
                            ("jailtwist_relay_dropped_total", 1),
                            ("jailtwist_relay_empty_total", 1),
                            ("jailtwist_relay_truncated_total", 1),
                            ("jailtwist_relay_held", 1)):
            self.assertEqual(series(found, name), {a: value, b: 0}, name)
        self.assertEqual(found[("jailtwist_syslog_queued", frozenset())], 2)
        self.assertEqual(
            found[("jailtwist_syslog_refused_total", frozenset())], 3)
        self.assertEqual(
            found[("jailtwist_syslog_reconnects_total", frozenset())], 4)
        # Read live at each scrape, not copied once.
        one.counts["handed"] = 8
        self.assertEqual(
            series(scrapeRegistry(collectors),
                   "jailtwist_relay_messages_total")[a], 8)

    def test_help(self):
        """
        Every family has HELP text.
        """
        collectors, _ = buildRegistry(
            FakeRelays(FakeSocket("/srv/a/dev/log")), EventStream(None),
            FakeRegistry())
        for family in collectors.collect():
            self.assertTrue(family.documentation, family.name)


def event(kind, **fields):
    return JailEvent(kind, 0.0, fields)


class EventCountTests(SynchronousTestCase):
    """
    Probes and logins are counted per known jail; anything else is
    aggregated, so hostile input cannot add series.
    """

    def setUp(self):
        self.registry = FakeRegistry("/srv/registered")
        self.known = KnownJails(["/srv/relayed"], self.registry)
        self.counts = EventCounts(self.known)
        self.collector = SuiteCollector(self.known, self.counts)
        self.collectors = CollectorRegistry()
        self.collectors.register(self.collector)

    def scrape(self, name):
        return {dict(labels)["jail"]: value for labels, value in
                series(scrapeRegistry(self.collectors), name).items()}

    def test_zeroForKnown(self):
        """
        Every known jail has its series from the start (at zero), plus the
        aggregate.
        """
        for name in ("jailtwist_probes_planted_total",
                     "jailtwist_probes_fired_total",
                     "jailtwist_logins_total"):
            self.assertEqual(self.scrape(name),
                             {"/srv/relayed": 0, "/srv/registered": 0,
                              OTHER: 0})

    def test_counted(self):
        self.counts(event("probe-planted", probe=1, root="/srv/relayed"))
        self.counts(event("probe-fired", probe=1, root="/srv/relayed/"))
        self.counts(event("probe-planted", probe=2, root="/srv/registered"))
        self.counts(event("probe-planted", probe=3, root=None))
        self.counts(event("login", user="u", jail="/srv/registered"))
        self.counts(event("login-refused", uid=5, reason="no"))
        self.counts(event("relay-throttled", socket="/x"))
        self.assertEqual(self.scrape("jailtwist_probes_planted_total"),
                         {"/srv/relayed": 1, "/srv/registered": 1, OTHER: 1})
        self.assertEqual(self.scrape("jailtwist_probes_fired_total"),
                         {"/srv/relayed": 1, "/srv/registered": 0, OTHER: 0})
        self.assertEqual(self.scrape("jailtwist_logins_total"),
                         {"/srv/relayed": 0, "/srv/registered": 1, OTHER: 0})
        found = scrapeRegistry(self.collectors)
        self.assertEqual(
            found[("jailtwist_login_refusals_total", frozenset())], 1)
        self.assertEqual(found[("jailtwist_jails", frozenset())], 1)

    def test_hostileBounded(self):
        """
        A thousand logins and probes naming jails nobody configured (and
        values that are not paths at all) add no series.
        """
        for n in range(1000):
            self.counts(event("login", user=f"u{n}", jail=f"/evil/{n}"))
            self.counts(event("probe-fired", root=f"../{n}"))
            self.counts(event("login", user="x", jail=["/srv/relayed"]))
        self.assertEqual(self.scrape("jailtwist_logins_total"),
                         {"/srv/relayed": 0, "/srv/registered": 0,
                          OTHER: 2000})
        self.assertEqual(len(self.scrape("jailtwist_probes_fired_total")), 3)

    def test_symlinkedJail(self):
        """
        A jail configured through a symlink is matched by its real path (a
        probe's root is the real path).
        """
        real = harness.shortTempDir(self)
        link = real.path + ".link"
        os.symlink(real.path, link)
        self.addCleanup(os.unlink, link)
        known = KnownJails([link])
        self.assertEqual(known.label(real.path), link)
        self.assertEqual(known.label(link), link)

    def test_jailLeaves(self):
        """
        A jail that leaves the registry loses its series.
        """
        self.counts(event("login", jail="/srv/registered"))
        self.registry.paths = []
        self.counts(event("login", jail="/srv/relayed"))
        self.assertEqual(self.scrape("jailtwist_logins_total"),
                         {"/srv/relayed": 1, OTHER: 0})

    def test_followsStream(self):
        """
        The service counts what the stream publishes while it runs.
        """
        events = EventStream(Clock())
        service = MetricsService("tcp:0", events, self.counts)
        service.startService()
        events.publish("login", jail="/srv/relayed")
        service.stopService()
        events.publish("login", jail="/srv/relayed")
        self.assertEqual(self.scrape("jailtwist_logins_total")["/srv/relayed"],
                         1)
        self.assertEqual(events.subscriberCount, 0)

    def test_badEndpoint(self):
        for bad in ("bogus:1", "tcp:notaport"):
            self.assertRaises(JailtwistError, makeService, bad)


class SettingsTests(SynchronousTestCase):
    """
    Metrics are off unless an endpoint is given: C{--metrics} or the
    suite's C{[metrics] endpoint}.
    """

    def suiteOptions(self, text, *argv):
        from jailtwist.tap import suite
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[jk_socketd]\nenabled = no\n[login]\nenabled = no\n"
                    + text)
        options = suite.Options()
        options.parseOptions(["--config", path] + list(argv))
        return options

    def test_suite(self):
        self.assertIsNone(self.suiteOptions("")["metricsEndpoint"])
        self.assertEqual(
            self.suiteOptions("[metrics]\nendpoint = tcp:9105\n")[
                "metricsEndpoint"], "tcp:9105")
        self.assertIsNone(self.suiteOptions(
            "[metrics]\nendpoint = tcp:9105\nenabled = no\n")[
                "metricsEndpoint"])
        self.assertEqual(self.suiteOptions(
            "[metrics]\nenabled = no\n", "--metrics", "tcp:1")[
                "metricsEndpoint"], "tcp:1")

    def test_suiteErrors(self):
        from twisted.python import usage
        error = self.assertRaises(usage.UsageError, self.suiteOptions,
                                  "[metrics]\nport = 9105\n")
        self.assertIn("unknown key", str(error))

    def test_socketd(self):
        from jailtwist.tap import socketd
        options = socketd.Options()
        directory = harness.shortTempDir(self).path
        options.parseOptions(["--socket", f"{directory}/log", "--no-confine",
                              "--metrics", "tcp:9105"])
        self.assertEqual(options["metrics"], "tcp:9105")

    def test_suiteService(self):
        """
        The suite adds its metrics service only when asked.
        """
        from jailtwist.tap import suite
        directory = harness.shortTempDir(self).path
        text = f"[control]\nipc = unix:{directory}/ctl:mode=600\n"
        parent = suite.makeService(self.suiteOptions(text))
        self.assertNotIn("metrics", parent.namedServices)
        parent = suite.makeService(self.suiteOptions(
            text + "[metrics]\nendpoint = tcp:0:interface=127.0.0.1\n"))
        self.assertIn("metrics", parent.namedServices)


def freePort():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def waitForPort(port, alive):
    def answers():
        if not alive():
            return True
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True
    harness.waitFor(answers, what=f"the metrics port {port}")


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=10) as answer:
        return samples(answer.read().decode())


class SocketdMetricsTests(RelayTestMixin, SynchronousTestCase):
    """
    C{jk_socketd --metrics}, confined as nobody, answers real scrapes.
    """

    def startWithMetrics(self, *args, **kw):
        port = freePort()
        relay = self.startRelay("--metrics", f"tcp:{port}:interface=127.0.0.1",
                                *args, **kw)
        waitForPort(port, lambda: relay.poll() is None)
        return relay, port

    def jailSeries(self, found, name):
        labels = frozenset({"jail": os.path.dirname(os.path.dirname(
            self.socket)), "socket": self.socket}.items())
        return found.get((name, labels))

    def test_counts(self):
        self.writeIni("base = 100000\npeak = 200000\n")
        relay, port = self.startWithMetrics()
        before = scrape(port)
        self.assertEqual(self.jailSeries(before,
                                         "jailtwist_relay_messages_total"), 0)
        send(self.socket, syslogLine("m", "one"), syslogLine("m", "two"))
        self.syslog.waitForLines(2)
        after = scrape(port)
        self.assertEqual(
            self.jailSeries(after, "jailtwist_relay_messages_total"), 2)
        self.assertEqual(self.jailSeries(after, "jailtwist_relay_bytes_total"),
                         len(syslogLine("m", "one")) * 2)
        self.assertEqual(
            after[("jailtwist_info",
                   frozenset({"version": __import__("jailtwist").__version__}
                             .items()))], 1)
        # It is the confined relay that answered.
        status = open(f"/proc/{relay.pid}/status").read()
        self.assertIn("Uid:\t65534", status)

    def test_throttledAndDropped(self):
        """
        Over its limit in drop mode the relay's throttling shows as
        dropped datagrams; in block mode as throttled windows.
        """
        self.writeIni("base = 100\npeak = 100\ninterval = 60\n"
                      "overflow = drop\n")
        relay, port = self.startWithMetrics()
        send(self.socket, *[syslogLine("d", f"{n} " + "x" * 60)
                            for n in range(5)])
        found = harness.waitFor(
            lambda: (lambda f: self.jailSeries(
                f, "jailtwist_relay_read_total") == 5 and f)(scrape(port)),
            what="five datagrams read")
        self.assertEqual(self.jailSeries(found,
                                         "jailtwist_relay_messages_total"), 1)
        self.assertEqual(self.jailSeries(found,
                                         "jailtwist_relay_dropped_total"), 4)

    def test_throttled(self):
        self.writeIni("base = 100\npeak = 100\ninterval = 60\n")
        relay, port = self.startWithMetrics()
        send(self.socket, syslogLine("t", "x" * 80), syslogLine("t", "y"))
        found = harness.waitFor(
            lambda: (lambda f: self.jailSeries(
                f, "jailtwist_relay_throttled_total") and f)(scrape(port)),
            what="a throttled window")
        self.assertEqual(
            self.jailSeries(found, "jailtwist_relay_throttled_total"), 1)
        self.assertEqual(self.jailSeries(found, "jailtwist_relay_held"), 1)

    def test_hostileDatagramsBounded(self):
        """
        Thousands of distinct datagrams (forged tags, binary junk) add no
        series: the label set is the configuration's.
        """
        self.writeIni("base = 10000000\npeak = 10000000\n")
        relay, port = self.startWithMetrics()
        before = set(scrape(port))
        send(self.socket, *[f"<{n % 191}>{n} jail=/evil/{n} {os.urandom(8)!r}"
                            .encode() for n in range(2000)])
        found = harness.waitFor(
            lambda: (lambda f: self.jailSeries(
                f, "jailtwist_relay_read_total") == 2000 and f)(scrape(port)),
            what="2000 datagrams read")
        self.assertEqual({key for key in found if key[0].startswith(
            "jailtwist_")}, {key for key in before if key[0].startswith(
                "jailtwist_")})

    def test_twistd(self):
        self.writeIni()
        relay, port = self.startWithMetrics(
            command=("twistd", "-n", "--pidfile=", "jk-socketd"))
        self.assertEqual(
            self.jailSeries(scrape(port), "jailtwist_relay_read_total"), 0)

    def test_off(self):
        """
        Without C{--metrics} the daemons' services are built without
        importing prometheus_client.
        """
        self.writeIni()
        result = subprocess.run(
            [sys.executable, "-c",
             "import sys; from jailtwist.tap import socketd, suite; "
             "o = socketd.Options(); o.parseOptions(["
             f"'--config', {self.ini.path!r}, '--no-confine']); "
             "socketd.makeService(o); "
             "print('prometheus_client' in sys.modules)"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.stdout.strip(), "False", result.stderr)

    def test_portInUse(self):
        """
        A metrics port already taken stops the relay with one line saying
        so.
        """
        self.writeIni()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = harness.run(
                "jk_socketd", "-n", "--config", self.ini.path, "--syslog",
                self.syslog.socket, "--metrics",
                f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"metrics: cannot listen on tcp:{port}:interface="
                      f"127.0.0.1 ([Errno 98] Address already in use)",
                      result.stdout)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_badEndpoint(self):
        self.writeIni()
        result = harness.run("jk_socketd", "-n", "--config", self.ini.path,
                             "--syslog", self.syslog.socket, "--metrics",
                             "tcp:notaport")
        self.assertNotEqual(result.returncode, 0)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("bad metrics endpoint 'tcp:notaport'", lines[0])


class SuiteMetricsTests(SynchronousTestCase):
    """
    C{twistd jailtwist} with C{[metrics]}: relays, a probe fired in a real
    chroot jail, the jail count.
    """

    def test_suite(self):
        from tests.test_jaildaemon import PKILL, waitInJail
        from tests.test_launch import busyboxJail
        harness.isolated(self)
        syslog = harness.startRsyslog(self)
        jail = busyboxJail(self, probe=False)
        # The probe is fired from inside by a shell looking through /proc.
        proc = os.path.join(jail, "proc")
        subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", proc])
        directory = harness.shortTempDir(self)
        socketdIni = directory.child("jk_socketd.ini")
        socketdIni.setContent(f"[{jail}/dev/log]\n".encode())
        control = directory.child("ctl").path
        port = freePort()
        ini = directory.child("jailtwist.ini")
        ini.setContent(
            f"[control]\nipc = unix:{control}:mode=600\n\n"
            f"[jk_socketd]\nconfig = {socketdIni.path}\n"
            f"syslog = {syslog.socket}\n\n[login]\nenabled = no\n\n"
            f"[metrics]\nendpoint = tcp:{port}:interface=127.0.0.1\n"
            .encode())
        log = directory.child("twistd.log").path
        process = subprocess.Popen(
            [harness.script("twistd"), "-n", "--pidfile=", "--logfile", log,
             "jailtwist", "--config", ini.path])
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        waitForPort(port, lambda: process.poll() is None)
        self.assertIsNone(process.poll(), open(log).read())
        jailLabel = frozenset({"jail": jail}.items())
        found = scrape(port)
        self.assertEqual(found[("jailtwist_jails", frozenset())], 0)
        self.assertEqual(found[("jailtwist_probes_fired_total", jailLabel)],
                         0)
        self.assertEqual(found[("jailtwist_logins_total", jailLabel)], 0)
        subprocess.run(["chroot", jail, "/bin/busybox", "logger", "-t",
                        "suite", "metrics"], check=True)
        syslog.waitForLines(1)
        relayLabel = frozenset({"jail": jail,
                                "socket": f"{jail}/dev/log"}.items())
        self.assertEqual(
            scrape(port)[("jailtwist_relay_messages_total", relayLabel)], 1)
        sleeper = subprocess.Popen(["chroot", jail, "/bin/busybox", "sleep",
                                    "600"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        waitInJail(sleeper.pid, jail)
        result = harness.run("jaildaemon", "-f", control, "-c", "true",
                             "-j", f"pid:{sleeper.pid}", "-t", "METRICS_PROBE")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            scrape(port)[("jailtwist_probes_planted_total", jailLabel)], 1)
        fired = subprocess.run(
            ["chroot", jail, "/bin/busybox", "sh", "-c", PKILL, "sh",
             "METRICS_PROBE"], capture_output=True, text=True, timeout=60)
        self.assertEqual(fired.stdout.strip(), "1", fired.stderr)
        harness.waitFor(
            lambda: scrape(port)[("jailtwist_probes_fired_total",
                                  jailLabel)] == 1,
            what="the probe's firing in the metrics")


class LoginMetricsTests(LoginTestCase):
    """
    Logins through the root login service of a real suite, counted for
    the account's jail (a jail with a relay socket); refusals and a flood
    of hostile requests add no series.
    """

    user = "jtlmet1"

    def setUp(self):
        super().setUp()
        os.makedirs(os.path.join(self.jail, "dev"), exist_ok=True)
        directory = harness.shortTempDir(self)
        socketdIni = directory.child("jk_socketd.ini")
        socketdIni.setContent(f"[{self.jail}/dev/log]\n".encode())
        self.port = freePort()
        ini = directory.child("jailtwist.ini")
        ini.setContent(
            f"[control]\nipc = unix:{directory.path}/ctl:mode=600\n\n"
            f"[probes]\nenabled = no\n\n"
            f"[jk_socketd]\nconfig = {socketdIni.path}\n"
            f"syslog = {self.syslog.socket}\n\n"
            f"[login]\nendpoint = unix:{DEFAULT_SOCKET}:mode=0666\n\n"
            f"[metrics]\nendpoint = tcp:{self.port}:interface=127.0.0.1\n"
            .encode())
        log = directory.child("twistd.log").path
        process = subprocess.Popen(withDevLog(
            self, self.syslog, WITH_PTYS + [
                harness.script("twistd"), "-n", "--pidfile=", "--logfile",
                log, "jailtwist", "--config", ini.path]))
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        waitForPort(self.port, lambda: process.poll() is None)
        harness.waitForSocket(DEFAULT_SOCKET, what="the login service",
                              alive=lambda: process.poll() is None)
        self.assertIsNone(process.poll(), open(log).read())

    def login(self, *args):
        command = withDevLog(self, self.syslog, withoutUserNamespaces(asUser(
            self.user, [harness.script("jk_chrootsh")] + list(args))))
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=60, cwd="/", input="")

    def logins(self):
        found = scrape(self.port)
        return (series(found, "jailtwist_logins_total"),
                found[("jailtwist_login_refusals_total", frozenset())])

    def test_logins(self):
        mine = frozenset({"jail": self.jail}.items())
        other = frozenset({"jail": OTHER}.items())
        self.assertEqual(self.logins(), ({mine: 0, other: 0}, 0))
        result = self.login("-c", "/usr/lib/openssh/sftp-server -h")
        self.assertIn("usage: sftp-server", result.stderr + result.stdout)
        self.assertEqual(self.logins(), ({mine: 1, other: 0}, 0))
        # Refused by the jail's jk_lsh policy: not a login (the service
        # publishes no event for it today).
        result = self.login("-c", "/usr/bin/busybox id")
        self.assertEqual(result.returncode, 4, result.stderr)
        logins, refusals = self.logins()
        self.assertEqual(logins, {mine: 1, other: 0})
        # Hostile callers: garbage frames and well-formed requests with
        # arguments no two alike.
        for n in range(100):
            exchange(DEFAULT_SOCKET, b"\x00\x00\x00\x08" + os.urandom(8))
            exchange(DEFAULT_SOCKET, serialiseRequest(Request(
                "jk_chrootsh", arguments=["-c", f"/evil/{n}"],
                environment={"USER": f"ghost{n}"})))
        self.assertEqual(self.logins(), ({mine: 1, other: 0},
                                         refusals + 200))
