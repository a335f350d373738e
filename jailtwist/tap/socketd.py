# -*- test-case-name: tests.test_socketd -*-
"""
C{twistd jk-socketd}: rate-limited C{/dev/log} sockets for jails, relayed to
the host syslog (a drop-in for jailkit's C{jk_socketd}).
"""

import sys

from twisted.python import usage

from jailtwist.config import ConfigError, Section
from jailtwist.errors import JailtwistError
from jailtwist.relay import (DEFAULT_CONFIG, DEFAULT_SYSLOG, OVERFLOW,
                             RelayService, checkSocketPath,
                             readSocketSettings, settingsFromSection)


class Options(usage.Options):
    """
    jailkit's options, plus where the host syslog is and whom to become.
    """

    synopsis = "[--config FILE] [--socket PATH --base N --peak N --interval F]"
    longdesc = (
        "Create a rate-limited log socket inside each jail named in the "
        "config file (one [/jail/dev/log] section each, with base, peak and "
        "interval) and relay everything to the host syslog. After binding, "
        "the relay becomes --user with no groups and confines itself to the "
        "directory of the host syslog socket.")

    optParameters = [
        ["config", "c", DEFAULT_CONFIG,
         "jailkit-format ini file: one section per socket path"],
        ["socket", "s", None,
         "do not read the ini file, create just this socket"],
        ["base", "b", None,
         "bytes per interval for --socket (default 511)"],
        ["peak", "p", None,
         "bytes allowed after a quiet interval, for --socket (default 2048)"],
        ["peek", None, None, "old spelling of --peak"],
        ["interval", "i", None,
         "interval in seconds for --socket (default 10.0)"],
        ["overflow", None, None,
         "for --socket: 'block' slows the sender (default), 'drop' discards "
         "and counts what is over the limit"],
        ["mark", None, None,
         "for --socket: prefix relayed tags with this jail name"],
        ["syslog", None, DEFAULT_SYSLOG,
         "the host syslog socket to relay to"],
        ["user", None, "nobody",
         "the account to become after binding (when started as root)"],
        ["control", None, None,
         "serve the control channel (the relays' books) on this endpoint, "
         "e.g. unix:/run/jk_socketd.ctl:mode=600"],
        ["metrics", None, None,
         "serve Prometheus metrics at /metrics on this endpoint, e.g. "
         "tcp:9105:interface=127.0.0.1 (default: off)"],
    ]
    optFlags = [
        ["no-confine", None,
         "stay root and unconfined after binding (not recommended)"],
    ]

    def opt_version(self):
        """
        Display jailtwist's version and exit.
        """
        from jailtwist import __version__
        print(f"jailtwist {__version__}")
        raise SystemExit(0)

    def postOptions(self):
        if self["peek"] is not None and self["peak"] is None:
            self["peak"] = self["peek"]
        perSocket = ("base", "peak", "interval", "overflow", "mark")
        if self["socket"] is None:
            given = [name for name in perSocket if self[name] is not None]
            if given:
                raise usage.UsageError(
                    f"--{given[0]} only applies with --socket; put it in "
                    f"the config file's section instead")
        if not self["no-confine"]:
            import pwd
            try:
                pwd.getpwnam(self["user"])
            except KeyError:
                raise usage.UsageError(
                    f"--user: no account {self['user']!r}; create it or name "
                    f"another")
        try:
            self["settings"] = self._settings()
            for each in self["settings"]:
                checkSocketPath(each.path)
        except JailtwistError as e:
            self.badConfiguration(e)

    def badConfiguration(self, error):
        """
        A bad ini file or socket path is not a usage error: say it in one
        line (twistd would print its whole usage text first) and exit 1.
        """
        sys.stderr.write(f"twistd jk-socketd: {error}\n")
        raise SystemExit(error.exitCode)

    def _settings(self):
        if self["socket"] is None:
            return readSocketSettings(self["config"])
        items = {"interval": "10.0"}
        for name in ("base", "peak", "interval", "overflow", "mark"):
            if self[name] is not None:
                items[name] = self[name]
        section = Section("command line", self["socket"], items)
        try:
            return [settingsFromSection(section)]
        except ConfigError as e:
            raise JailtwistError(
                f"--{e.key}: " + str(e).rsplit(": ", 1)[-1]
                if e.key else str(e))


def makeService(options, reactor=None, logToSyslog=False, events=None,
                notify=True):
    """
    @param events: an optional event stream for throttling events.
    @param notify: end with the readiness notice for a service manager
        (L{jailtwist.notify}); the suite sends its own.
    @return: a L{RelayService} for the sockets C{options} name, with the
        control channel as a child when C{--control} is given (it listens
        before the relay confines itself).
    """
    if reactor is None:
        from twisted.internet import reactor
    control = options.get("control")
    if control is not None:
        from twisted.application import strports

        from jailtwist.control import (ControlFactory, EventStream,
                                       claimSocket, ipcEndpoint)
        control = ipcEndpoint(control)
        try:
            claimSocket(control)
        except JailtwistError as e:
            raise SystemExit(f"jk_socketd: --control: {e}")
        if events is None:
            events = EventStream(reactor)
    relays = RelayService(
        options["settings"], reactor, syslogPath=options["syslog"],
        user=options["user"], confine=not options["no-confine"],
        logToSyslog=logToSyslog, pidfile=options.get("pidfile"),
        events=events)
    if control is not None:
        factory = ControlFactory(events, relays=relays,
                                 services=["jk_socketd"])
        strports.service(control, factory, reactor=reactor).setServiceParent(
            relays)
    if options.get("metrics"):
        # A child of the relays: it listens before they confine themselves.
        from jailtwist.metrics import makeMetrics
        makeMetrics("jk_socketd", options["metrics"], reactor,
                    relays=relays).setServiceParent(relays)
    if notify:
        # Last: it waits for every port above to listen.
        from jailtwist.notify import ReadinessService, ServiceNotifier
        ReadinessService(ServiceNotifier(), "relaying", reactor
                         ).setServiceParent(relays)
    return relays


__all__ = ["Options", "makeService", "OVERFLOW"]
