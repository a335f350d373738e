# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of the jailtwist daemons, served on an opt-in endpoint
(C{--metrics ENDPOINT}, or C{[metrics] endpoint} in C{jailtwist.ini}) by
C{prometheus_client}'s Twisted resource at C{/metrics}.

Nothing is counted twice: the relay's counters are read from its sockets
at scrape time (L{RelayCollector}), so the per-datagram path is untouched;
probes and logins are counted from the suite's event stream
(L{EventCounts}); the jail count is read from the registry.

Label cardinality is bounded by configuration, never by what a jail or a
client sends: the C{jail} label is the directory of a configured relay
socket's jail or of a jail in the registry; a probe or a login anywhere
else is counted under L{OTHER}.

C{prometheus_client} runs the collectors in a thread of the reactor's pool
(it is a WSGI application): they only read counters the reactor thread
writes (single reads and C{dict} copies, atomic under the GIL).

This module imports C{prometheus_client}: import it only when metrics are
switched on.
"""

import os

try:
    from prometheus_client.core import (CollectorRegistry,
                                        CounterMetricFamily,
                                        GaugeMetricFamily)
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.twisted import MetricsResource
except ImportError as e:
    _missing = e
else:
    _missing = None
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

import jailtwist
from jailtwist.errors import JailtwistError

#: The C{jail} label of probes and logins in jails that are neither a
#: relay's nor registered.
OTHER = "_other"
PATH = b"metrics"


def jailOfSocket(path):
    """
    @return: the jail directory of a relay socket (C{/srv/j} for
        C{/srv/j/dev/log}); the socket's own path when it is elsewhere.
    """
    path = os.path.normpath(path)
    suffix = "/dev/log"
    if path.endswith(suffix) and len(path) > len(suffix):
        return path[:-len(suffix)]
    return path


def _counter(name, documentation, labels=()):
    return CounterMetricFamily(name, documentation, labels=list(labels))


def _gauge(name, documentation, labels=()):
    return GaugeMetricFamily(name, documentation, labels=list(labels))


#: One series per relay socket: how to make its family, its name, its help
#: text, and its value from the socket and its
#: L{books<jailtwist.relay.RelaySocket.books>}.
_RELAY_SERIES = (
    (_counter, "jailtwist_relay_read",
     "Datagrams read from the jail's log socket.",
     lambda relay, books: books["read"]),
    (_counter, "jailtwist_relay_messages",
     "Datagrams handed on to the host syslog.",
     lambda relay, books: books["handed"]),
    (_counter, "jailtwist_relay_bytes",
     "Bytes handed on to the host syslog.",
     lambda relay, books: relay.bytes),
    (_counter, "jailtwist_relay_throttled",
     "Times the socket went over its limit and was not read until its next "
     "window.",
     lambda relay, books: relay.throttled),
    (_counter, "jailtwist_relay_dropped",
     "Datagrams discarded over the limit (overflow = drop).",
     lambda relay, books: books["dropped"]),
    (_counter, "jailtwist_relay_empty",
     "Empty datagrams read (nothing to relay).",
     lambda relay, books: books["empty"]),
    (_counter, "jailtwist_relay_truncated",
     "Datagrams longer than the largest relayed, cut.",
     lambda relay, books: relay.truncated),
    (_gauge, "jailtwist_relay_held",
     "Datagrams read and waiting for budget or room.",
     lambda relay, books: books["held"]),
)


class RelayCollector:
    """
    The books of the C{jk_socketd} relays, one series per configured socket.

    @param relays: a L{jailtwist.relay.RelayService} (its C{sockets} and
        C{sink}).
    """

    def __init__(self, relays):
        self._relays = relays

    def collect(self):
        labels = ("jail", "socket")
        families = [(make(name, documentation, labels), value)
                    for make, name, documentation, value in _RELAY_SERIES]
        for relay in self._relays.sockets:
            values = (jailOfSocket(relay.name), relay.name)
            books = relay.books()
            for family, value in families:
                family.add_metric(values, value(relay, books))
        sink = self._relays.sink
        queued = _gauge(
            "jailtwist_syslog_queued",
            "Datagrams handed on and waiting for the host syslog socket.")
        queued.add_metric((), sink.queued)
        refused = _counter(
            "jailtwist_syslog_refused",
            "Datagrams the host syslog socket refused outright.")
        refused.add_metric((), sink.refused)
        reconnects = _counter(
            "jailtwist_syslog_reconnects",
            "Times the relay reconnected to the host syslog socket.")
        reconnects.add_metric((), sink.reconnects)
        return [family for family, _ in families] + [queued, refused,
                                                      reconnects]


class KnownJails:
    """
    The jails that may have a series of their own: the jails of the relay
    sockets (fixed by configuration) and the jails in the registry now.

    @param socketJails: jail directories of the relay sockets.
    @param registry: a L{jailtwist.registry.JailRegistry}, or C{None}.
    """

    def __init__(self, socketJails=(), registry=None):
        self._fixed = {os.path.normpath(path) for path in socketJails}
        # A jail configured through a symlinked path is named by its real
        # path in a probe's events.
        self._real = {os.path.realpath(path): path for path in self._fixed}
        self._registry = registry

    def registered(self):
        """
        @return: the L{jailtwist.registry.JailRecord}s of running jails.
        """
        if self._registry is None:
            return []
        return self._registry.entries()

    def paths(self, records=None):
        """
        @return: the C{set} of known jail directories.
        """
        if records is None:
            records = self.registered()
        return self._fixed | {os.path.normpath(r.path) for r in records}

    def label(self, path, known=None):
        """
        @return: C{path} as a label when it is a known jail, else L{OTHER}.
        """
        if not isinstance(path, str) or not path.startswith("/"):
            return OTHER
        if known is None:
            known = self.paths()
        path = os.path.normpath(path)
        if path in known:
            return path
        if path in self._real:
            return self._real[path]
        for each in known - self._fixed:
            if os.path.realpath(each) == path:
                return each
        return OTHER


class EventCounts:
    """
    Counts probes planted and fired and logins from the suite's event
    stream, per known jail (see L{KnownJails}).

    @ivar counts: C{{kind: {jail label: count}}}, written on the reactor
        thread only.
    """

    # event kind -> the field naming the jail's directory
    KINDS = {"probe-planted": "root", "probe-fired": "root", "login": "jail",
             "login-refused": None}

    def __init__(self, known):
        self._known = known
        self.counts = {kind: {} for kind in self.KINDS}

    def __call__(self, event):
        if event.kind not in self.KINDS:
            return
        field = self.KINDS[event.kind]
        counts = self.counts[event.kind]
        if field is None:
            label = OTHER
        else:
            known = self._known.paths()
            label = self._known.label(event.fields.get(field), known)
            # Forget jails that left the registry: series stay bounded by
            # the jails configured now.
            for gone in [key for key in counts
                         if key != OTHER and key not in known]:
                del counts[gone]
        counts[label] = counts.get(label, 0) + 1

    def snapshot(self):
        """
        @return: a copy of L{counts}, safe to read from another thread.
        """
        return {kind: counts.copy() for kind, counts in self.counts.items()}


class SuiteCollector:
    """
    The jail count, and probes and logins per known jail.

    @param known: L{KnownJails}.
    @param events: L{EventCounts}, or C{None} when no event stream is
        followed (then only the jail count is given).
    """

    def __init__(self, known, events=None):
        self._known = known
        self._events = events

    def collect(self):
        records = self._known.registered()
        jails = _gauge("jailtwist_jails",
                       "Running jails in jailtwist's registry.")
        jails.add_metric((), len(records))
        families = [jails]
        if self._events is None:
            return families
        labels = sorted(self._known.paths(records)) + [OTHER]
        counts = self._events.snapshot()
        for kind, name, documentation in (
                ("probe-planted", "jailtwist_probes_planted",
                 "Probes planted (respawns included)."),
                ("probe-fired", "jailtwist_probes_fired",
                 "Probes fired by a SIGHUP from inside their jail."),
                ("login", "jailtwist_logins",
                 "Logins through the root login service.")):
            family = _counter(name, documentation, ["jail"])
            seen = counts[kind]
            for label in sorted(set(labels) | set(seen)):
                family.add_metric((label,), seen.get(label, 0))
            families.append(family)
        refused = _counter("jailtwist_login_refusals",
                           "Logins the root login service refused.")
        refused.add_metric((), sum(counts["login-refused"].values()))
        families.append(refused)
        return families


class InfoCollector:
    """
    Which jailtwist answers.
    """

    def collect(self):
        info = _gauge("jailtwist_info", "The running jailtwist's version.",
                      ["version"])
        info.add_metric((jailtwist.__version__,), 1)
        return [info]


class MetricsService(MultiService):
    """
    The metrics endpoint, following the event stream while it runs.
    """

    log = Logger()

    def __init__(self, endpoint, events=None, counts=None):
        MultiService.__init__(self)
        self.endpoint = endpoint
        self._events = events
        self._counts = counts
        self._unsubscribe = None

    def privilegedStartService(self):
        try:
            MultiService.privilegedStartService(self)
        except CannotListenError as e:
            raise SystemExit(
                f"metrics: cannot listen on {self.endpoint} "
                f"({e.socketError}): choose another endpoint") from None

    def startService(self):
        MultiService.startService(self)
        self.log.info("Prometheus metrics at /metrics on {endpoint}",
                      endpoint=self.endpoint)
        if self._events is not None and self._counts is not None:
            self._unsubscribe = self._events.subscribe(self._counts)

    def stopService(self):
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return MultiService.stopService(self)


def buildRegistry(relays=None, events=None, registry=None):
    """
    @return: C{(collectors, counts)}: a C{prometheus_client}
        L{CollectorRegistry} with jailtwist's collectors, and the
        L{EventCounts} to subscribe to C{events} (or C{None}).
    """
    collectors = CollectorRegistry(auto_describe=True)
    collectors.register(InfoCollector())
    ProcessCollector(namespace="", registry=collectors)
    socketJails = ()
    if relays is not None:
        collectors.register(RelayCollector(relays))
        socketJails = [jailOfSocket(each.name) for each in relays.sockets]
    counts = None
    if registry is not None or events is not None:
        known = KnownJails(socketJails, registry)
        counts = EventCounts(known) if events is not None else None
        collectors.register(SuiteCollector(known, counts))
    return collectors, counts


def makeService(endpoint, reactor=None, relays=None, events=None,
                registry=None):
    """
    Serve the metrics at C{/metrics} on C{endpoint}.

    @param endpoint: a server endpoint description, e.g.
        C{tcp:9105:interface=127.0.0.1}.
    @param relays: the L{jailtwist.relay.RelayService}, or C{None}.
    @param events: the suite's L{jailtwist.control.IEventStream}, or
        C{None}.
    @param registry: the L{jailtwist.registry.JailRegistry}, or C{None}.
    @return: a L{MetricsService}; it listens in C{privilegedStartService}
        (before a relay confines itself).
    @raise JailtwistError: C{endpoint} does not parse.
    """
    if _missing is not None:
        raise JailtwistError(f"metrics need the prometheus_client package "
                             f"({_missing}): pip install prometheus_client")
    if reactor is None:
        from twisted.internet import reactor
    try:
        server = serverFromString(reactor, endpoint)
    except (ValueError, TypeError, KeyError) as e:
        raise JailtwistError(
            f"bad metrics endpoint {endpoint!r} ({e}): use e.g. "
            f"tcp:9105:interface=127.0.0.1") from None
    collectors, counts = buildRegistry(relays, events, registry)
    root = Resource()
    root.putChild(PATH, MetricsResource(registry=collectors))
    listener = StreamServerEndpointService(server, Site(root))
    # A port in use stops the daemon with an error instead of leaving it
    # running without its metrics.
    listener._raiseSynchronously = True
    listener.setName("listener")
    metrics = MetricsService(endpoint, events, counts)
    metrics.setName("metrics")
    listener.setServiceParent(metrics)
    return metrics


def makeMetrics(command, endpoint, reactor=None, **sources):
    """
    L{makeService} for a daemon's C{makeService}: a bad endpoint or a
    missing C{prometheus_client} stops C{command} with a one-line error.
    """
    try:
        return makeService(endpoint, reactor, **sources)
    except JailtwistError as e:
        raise SystemExit(f"{command}: {e}")
