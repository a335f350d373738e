# -*- test-case-name: tests.test_jaildaemon -*-
"""
C{twistd jaildaemon}: the control channel (AMP on a unix socket) and the
probe service of FreeBSD's jaildaemon, rebuilt for Linux jails.
"""

import grp

from twisted.application import service, strports
from twisted.python import usage

from jailtwist.config import readIni
from jailtwist.control import (DEFAULT_IPC, Authorization, ControlFactory,
                               EventStream, claimSocket, ipcEndpoint)
from jailtwist.errors import JailtwistError

DEFAULT_REGISTRY = "/run/jailtwist"

# [control] and [probes] keys of the suite's ini file (jailtwist.ini).
CONTROL_KEYS = ("ipc", "admin_group", "event_group")
PROBE_KEYS = ("enabled", "burst", "interval", "max_probes", "shell",
              "registry")


class Options(usage.Options):
    """
    Where to listen, who may do what, and how often probes may respawn.
    """

    synopsis = "[--ipc ENDPOINT] [--config FILE] [--admin-group GROUP] ..."
    longdesc = (
        "Listen for jailtwist control commands (AMP) on ENDPOINT and plant "
        "probes in running jails on request: a SIGHUP to a probe from inside "
        "its jail makes the host run the command fixed when it was attached. "
        "Refuses to start while another daemon answers on the same socket.")

    optParameters = [
        ["ipc", "f", None,
         f"endpoint of the control channel (default {DEFAULT_IPC}); a "
         f"plain path means unix:PATH:mode=600"],
        ["config", "c", None,
         "read [control] and [probes] from this ini file (jailtwist.ini); "
         "options given here win"],
        ["admin-group", None, None,
         "members of this host group may attach and remove probes "
         "(root always may)"],
        ["event-group", None, None,
         "members of this host group may read events and list probes and "
         "jails; '*' lets every local peer"],
        ["burst", None, None,
         "respawns a probe may make within --interval (default 5)"],
        ["interval", None, None,
         "seconds of the respawn throttle's window (default 60)"],
        ["max-probes", None, None, "probes that may exist at once "
                                   "(default 1000)"],
        ["registry", None, None,
         f"state directory of the registry of running jails (default "
         f"{DEFAULT_REGISTRY})"],
    ]

    def postOptions(self):
        try:
            self["settings"] = settingsFrom(self)
        except JailtwistError as e:
            raise usage.UsageError(str(e))


class DaemonSettings:
    """
    Everything L{makeService} needs, checked.
    """

    def __init__(self, ipc=DEFAULT_IPC, adminGid=None, eventGid=None,
                 eventsForAll=False, probes=True, burst=5, interval=60.0,
                 maxProbes=1000, shell="/bin/sh", registry=DEFAULT_REGISTRY):
        self.ipc = ipc
        self.adminGid = adminGid
        self.eventGid = eventGid
        self.eventsForAll = eventsForAll
        self.probes = probes
        self.burst = burst
        self.interval = interval
        self.maxProbes = maxProbes
        self.shell = shell
        self.registry = registry


def _gid(name, where):
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise JailtwistError(f"{where}: group {name!r} does not exist: "
                             f"create it or name another") from None


def settingsFrom(options, ini=None):
    """
    Merge the command line over the config file's [control] and [probes].

    @param options: a mapping with this module's option names.
    @param ini: an already read L{jailtwist.config.IniFile}, or C{None} to
        read C{options["config"]} when given.
    @return: L{DaemonSettings}.
    @raise JailtwistError: naming the file, section and key, or the option.
    """
    if ini is None and options.get("config"):
        ini = readIni(options["config"])
    control = ini.section("control") if ini is not None else None
    probes = ini.section("probes") if ini is not None else None
    if control is not None:
        control.checkKeys(CONTROL_KEYS)
    if probes is not None:
        probes.checkKeys(PROBE_KEYS)

    def pick(option, section, key):
        value = options.get(option)
        if value is not None:
            return value, f"--{option}"
        if section is not None and key in section:
            return section.getString(key), \
                f"{section.path}: [{section.name}] {key}"
        return None, None

    settings = DaemonSettings()
    ipc, _ = pick("ipc", control, "ipc")
    if ipc is not None:
        settings.ipc = ipcEndpoint(ipc)
    admin, where = pick("admin-group", control, "admin_group")
    if admin:
        settings.adminGid = _gid(admin, where)
    events, where = pick("event-group", control, "event_group")
    if events == "*":
        settings.eventsForAll = True
    elif events:
        settings.eventGid = _gid(events, where)
    if probes is not None:
        settings.probes = probes.getBool("enabled", True)
        if "shell" in probes:
            settings.shell = probes.getString("shell")
    for option, key, attribute, kind, minimum in (
            ("burst", "burst", "burst", int, 1),
            ("interval", "interval", "interval", float, 0.001),
            ("max-probes", "max_probes", "maxProbes", int, 1)):
        value = options.get(option)
        if value is not None:
            try:
                number = kind(value)
            except ValueError:
                raise JailtwistError(f"--{option}: {value!r} is not a "
                                     f"number") from None
            if number < minimum:
                raise JailtwistError(f"--{option}: must be at least "
                                     f"{minimum}")
            setattr(settings, attribute, number)
        elif probes is not None and key in probes:
            getter = probes.getInt if kind is int else probes.getFloat
            setattr(settings, attribute, getter(key, None, minimum=minimum))
    registry, _ = pick("registry", probes, "registry")
    if registry:
        settings.registry = registry
    return settings


def buildServices(settings, reactor=None, events=None):
    """
    The control channel and the probe service, not yet started.

    @return: C{(events, services)}: the L{EventStream} they share and a
        C{list} of services to add to a parent.
    """
    if reactor is None:
        from twisted.internet import reactor
    if events is None:
        events = EventStream(reactor)
    from twisted.python.filepath import FilePath

    from jailtwist.registry import JailRegistry
    registry = JailRegistry(root=FilePath(settings.registry))
    services = []
    probes = None
    names = ["control"]
    if settings.probes:
        from jailtwist.probe import (JailProbeLauncher, ProbeService,
                                     registryResolver)
        launcher = JailProbeLauncher(reactor, registryResolver(registry))
        probes = ProbeService(launcher, events, reactor, shell=settings.shell,
                              burst=settings.burst,
                              interval=settings.interval,
                              maxProbes=settings.maxProbes)
        services.append(probes)
        names.append("probes")
    factory = ControlFactory(
        events,
        Authorization(settings.adminGid, settings.eventGid,
                      settings.eventsForAll),
        probes=probes, jails=RegistryJails(registry), services=names)
    control = strports.service(settings.ipc, factory, reactor=reactor)
    control.setName("control")
    services.append(control)
    return events, services


class RegistryJails:
    """
    The control channel's view of the registry of running jails.
    """

    def __init__(self, registry):
        self._registry = registry

    def jails(self):
        return [{"jid": r.jid, "name": r.name, "path": r.path,
                 "initPid": r.initPid,
                 "isolation": ",".join(r.isolation) or "chroot"}
                for r in self._registry.entries()]


def claimOrExit(description):
    """
    L{claimSocket}, with a refusal turned into a one-line exit (twistd would
    print a traceback for an exception from C{makeService}).
    """
    try:
        claimSocket(description)
    except JailtwistError as e:
        raise SystemExit(f"jaildaemon: {e}")


def makeService(options, reactor=None):
    """
    @return: a C{MultiService} with the probe service and the control
        channel, and the readiness notice for a service manager last.
    """
    from jailtwist.notify import ReadinessService, ServiceNotifier
    notifier = ServiceNotifier()
    settings = options["settings"]
    claimOrExit(settings.ipc)
    parent = service.MultiService()
    events, services = buildServices(settings, reactor)
    for each in services:
        each.setServiceParent(parent)
    ReadinessService(notifier, f"serving {settings.ipc}",
                     reactor).setServiceParent(parent)
    return parent
