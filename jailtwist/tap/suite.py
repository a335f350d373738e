# -*- test-case-name: tests.test_jaildaemon -*-
"""
C{twistd jailtwist}: every jailtwist daemon in one process, on one reactor,
from one config file (C{/etc/jailtwist/jailtwist.ini}): the control channel
with its event stream, the probe service of C{jaildaemon}, and the
C{jk_socketd} relays (configured by their own jailkit-format ini file, which
C{[jk_socketd] config} names), and the root login service for jailed logins
where no user namespace can be made (C{[login]},
L{jailtwist.loginservice}).  The relays publish their throttling, the login
service its logins and refusals, on the control channel's event stream.

Each service keeps its own plugin too (C{twistd jaildaemon},
C{twistd jk-socketd}); this one only composes them.
"""

from twisted.application import service
from twisted.python import usage

from jailtwist.config import readIni
from jailtwist.errors import JailtwistError
from jailtwist.tap import jaildaemon as jaildaemonTap

DEFAULT_CONFIG = "/etc/jailtwist/jailtwist.ini"

SUITE_SECTIONS = ("control", "probes", "jk_socketd", "login", "metrics")
SOCKETD_KEYS = ("enabled", "config", "syslog", "user")
LOGIN_KEYS = ("enabled", "endpoint")
METRICS_KEYS = ("enabled", "endpoint")


class Options(usage.Options):
    """
    Just the config file: everything else is in it.
    """

    synopsis = "[--config FILE]"
    longdesc = (
        "Run the jailtwist control channel, the jaildaemon probe service, "
        "the jk_socketd relays and the login service together in this "
        "process, as the [control], [probes], [jk_socketd] and [login] "
        "sections of the config file say.")

    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "the suite's ini file"],
        ["login", None, None,
         "the login service's endpoint (overrides [login] endpoint), e.g. "
         "unix:/run/jailtwist/login.sock:mode=0666"],
        ["metrics", None, None,
         "serve Prometheus metrics at /metrics on this endpoint (overrides "
         "[metrics] endpoint), e.g. tcp:9105:interface=127.0.0.1"],
    ]
    optFlags = [
        ["no-login", None, "do not run the login service"],
    ]

    def postOptions(self):
        try:
            ini = readIni(self["config"])
            for section in ini.sections():
                if section not in SUITE_SECTIONS:
                    raise JailtwistError(
                        f"{self['config']}: unknown section [{section}] "
                        f"(expected {', '.join(SUITE_SECTIONS)})")
            self["settings"] = jaildaemonTap.settingsFrom({}, ini)
            self["socketd"] = _socketdOptions(ini.section("jk_socketd"))
            self["loginEndpoint"] = _loginEndpoint(
                ini.section("login"), self["login"], self["no-login"])
            self["metricsEndpoint"] = _metricsEndpoint(
                ini.section("metrics"), self["metrics"])
        except JailtwistError as e:
            raise usage.UsageError(str(e))


def _socketdOptions(section):
    """
    @return: parsed L{jailtwist.tap.socketd.Options} for the relays, or
        C{None} when the section is missing or says C{enabled = no}.
    """
    if section is None:
        return None
    section.checkKeys(SOCKETD_KEYS)
    if not section.getBool("enabled", True):
        return None
    from jailtwist.tap import socketd
    # The relays share the process with the probe service, which must stay
    # root to enter jails: the relay's own confinement (chroot and a switch
    # to an unprivileged user for the whole process) cannot apply here.
    argv = ["--no-confine"]
    for key in ("config", "syslog", "user"):
        value = section.getString(key)
        if value:
            argv += [f"--{key}", value]
    options = socketd.Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        raise JailtwistError(f"{section.path}: [jk_socketd]: {e}") from None
    return options


def _loginEndpoint(section, override, disabled):
    """
    @return: the login service's endpoint description, or C{None} when it
        is switched off.
    """
    from jailtwist.loginwire import DEFAULT_ENDPOINT
    if disabled:
        return None
    if section is not None:
        section.checkKeys(LOGIN_KEYS)
        if not override and not section.getBool("enabled", True):
            return None
    endpoint = override or (section.getString("endpoint") if section
                            else None) or DEFAULT_ENDPOINT
    if not endpoint.startswith("unix:"):
        raise JailtwistError(f"the login service needs a unix: endpoint "
                             f"(the caller's identity is the socket's peer "
                             f"credentials), not {endpoint!r}")
    return endpoint


def _metricsEndpoint(section, override):
    """
    @return: the metrics endpoint description, or C{None} (the default:
        no metrics).
    """
    if override or section is None:
        return override
    section.checkKeys(METRICS_KEYS)
    if not section.getBool("enabled", True):
        return None
    return section.getString("endpoint")


def makeService(options, reactor=None):
    """
    @return: a C{MultiService} holding every configured service, and last
        the readiness notice for a service manager (C{READY=1} once every
        socket listens).
    """
    from jailtwist.notify import ReadinessService, ServiceNotifier
    notifier = ServiceNotifier()
    settings = options["settings"]
    jaildaemonTap.claimOrExit(settings.ipc)
    parent = service.MultiService()
    events, services = jaildaemonTap.buildServices(settings, reactor)
    for each in services:
        each.setServiceParent(parent)
    if options["socketd"] is not None:
        from jailtwist.tap import socketd
        relays = socketd.makeService(options["socketd"], reactor,
                                     events=events, notify=False)
        relays.setName("jk_socketd")
        relays.setServiceParent(parent)
        # The control channel answers RelayBooks for these relays.
        parent.getServiceNamed("control").factory.relays = relays
    if options.get("loginEndpoint"):
        from jailtwist import loginservice
        try:
            login = loginservice.makeService(options["loginEndpoint"],
                                             events, reactor)
        except JailtwistError as e:
            raise SystemExit(f"jailtwist: login service: {e}")
        login.setServiceParent(parent)
    if options.get("metricsEndpoint"):
        from jailtwist.metrics import makeMetrics
        from jailtwist.registry import JailRegistry
        makeMetrics("jailtwist", options["metricsEndpoint"], reactor,
                    relays=parent.namedServices.get("jk_socketd"),
                    events=events, registry=JailRegistry(settings.registry)
                    ).setServiceParent(parent)
    names = [each.name for each in parent]
    ReadinessService(notifier, f"serving {', '.join(names)}",
                     reactor).setServiceParent(parent)
    return parent
