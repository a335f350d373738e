# -*- test-case-name: tests.test_skd -*-
"""
C{twistd skd}: skd's command line as L{Options}, and L{makeService} that
composes the socket daemon's services in skd's order (bind, pidfile, log,
privilege drop, then listen and accept).

Options end at the first word that is not an option, so C{--} before PROG is
optional (skd's GNU getopt permuted them).
"""

import sys

from twisted.application import service
from twisted.python import usage

from jailtwist import __version__
from jailtwist.errors import JailtwistError
from jailtwist.skd import (
    EndpointListener, InetListener, InheritedListener, JailLauncher, PidFile,
    PrivilegeDrop, SocketDaemon, SpawnLauncher, StderrLog, Supervisor,
    UnixListener, _positiveInteger, parseInetAddress, parseLogSpec, privilegeTarget)

#: Endpoint types a stream address may be given as instead of skd's forms.
ENDPOINT_PREFIXES = ("tcp:", "tcp6:", "unix:", "systemd:")


class Options(usage.Options):
    """
    skd's options: C{[OPTIONS] PROG [ARGS]...}.
    """

    synopsis = "[OPTIONS] PROG [ARGS]..."
    longdesc = """\
When a stream socket is given, accept every connection and run PROG with
stdin and stdout attached to the connection socket, without waiting for it
to exit. When a datagram socket is given, wait for a datagram, run PROG with
stdin and stdout attached to the listening socket, and look again only when
it has exited. With no socket, run PROG after the background, log, pidfile
and privilege-drop steps.  -i, -t and -l also take a Twisted endpoint string
(tcp:PORT:interface=IP, unix:PATH:mode=660, systemd:domain=INET:index=0)."""

    def __init__(self):
        usage.Options.__init__(self)
        self.update({
            "address": None, "namespace": None, "stream": True,
            "backlog": 10, "maxclients": 0, "nodelay": False,
            "verbose": False, "background": False, "log": None,
            "pidfile": None, "drop": False, "supervise": False,
            "jail": None, "caps": None, "nonewprivs": False, "unshare": (),
            "argv": None})

    def opt_inet(self, spec):
        """[INTERFACE:]PORT: bind a listening socket in the internet namespace"""
        self["namespace"] = "inet"
        self["address"] = spec

    def opt_local(self, path):
        """PATH: bind a listening socket in the local unix namespace (-l or -x)"""
        self["namespace"] = "local"
        self["address"] = path

    def opt_activated(self):
        """serve the one socket passed by socket activation (LISTEN_FDS=1, LISTEN_PID; systemd's skd@.socket): stream or datagram, any family, as the socket is"""
        self["namespace"] = "activated"
        self["address"] = "activated"

    def opt_stream(self):
        """create a stream socket (default socket style)"""
        self["stream"] = True

    def opt_datagram(self):
        """create a datagram socket instead of a stream socket"""
        self["stream"] = False

    def opt_tcp(self, spec):
        """[INTERFACE:]PORT: create a TCP socket: equivalent to -s -i"""
        self.opt_inet(spec)
        self.opt_stream()

    def opt_udp(self, spec):
        """[INTERFACE:]PORT: create a UDP socket: equivalent to -d -i"""
        self.opt_inet(spec)
        self.opt_datagram()

    def opt_backlog(self, backlog):
        """BACKLOG: set the listen backlog for a stream socket (default 10)"""
        self["backlog"] = _number(backlog, "-b")

    def opt_max_clients(self, maxclients):
        """MAXCLIENTS: stop accepting at this many running children until one exits (default unlimited)"""
        self["maxclients"] = _number(maxclients, "-c")

    def opt_nodelay(self):
        """set TCP_NODELAY on every accepted TCP connection"""
        self["nodelay"] = True

    def opt_verbose(self):
        """report every connection or initial datagram, and every child's start and exit, to stderr or the log"""
        self["verbose"] = True

    def opt_background(self):
        """fork, start a new session, send stdin and stdout to /dev/null when they are a terminal or a socket is bound, run in the background (returns once serving)"""
        self["background"] = True

    def opt_log(self, spec):
        """TAG[:FAC.PRI] | >LOGFILE | >>LOGFILE: send stderr to syslog with tag TAG (default daemon.notice), or create / append to LOGFILE"""
        try:
            self["log"] = parseLogSpec(spec)
        except JailtwistError as e:
            raise usage.UsageError(str(e))

    def opt_pidfile(self, path):
        """PIDFILE: write the daemon's pid to PIDFILE (after forking with -B)"""
        self["pidfile"] = path

    def opt_supervise(self):
        """with no socket: restart PROG whenever it exits"""
        self["supervise"] = True

    def opt_drop_privileges(self):
        """after binding, chroot into $ROOT when set, then drop to $UID and $GID (the only group)"""
        self["drop"] = True

    def opt_jail(self, jail):
        """JAIL: run each PROG chrooted into this jail directory (checked like jailkit's); with -U, $UID/$GID apply to PROG and skd stays root"""
        self["jail"] = jail

    def opt_caps(self, names):
        """LIST: with --jail, keep only these capabilities in PROG's bounding set ('default' for jailtwist's ceiling, 'none')"""
        from jailtwist.enter import parseCapabilities
        try:
            self["caps"] = parseCapabilities(names)
        except JailtwistError as e:
            raise usage.UsageError(str(e))

    def opt_unshare(self, names):
        """LIST: with --jail, put each PROG in new namespaces (net, ipc, uts, mnt; net: no network but its connection)"""
        from jailtwist.skd import JailLauncher
        namespaces = [n for n in names.replace(",", " ").split() if n]
        for name in namespaces:
            if name not in JailLauncher.NAMESPACES:
                raise usage.UsageError(
                    f"unknown namespace '{name}' for --unshare: use "
                    f"{', '.join(JailLauncher.NAMESPACES)}")
        self["unshare"] = tuple(namespaces)

    def opt_no_new_privs(self):
        """with --jail, set no_new_privs for PROG (setuid programs gain nothing)"""
        self["nonewprivs"] = True

    def opt_version(self):
        """print the version and exit"""
        print(f"skd (jailtwist) {__version__}")
        sys.exit(0)

    opt_i = opt_inet
    opt_l = opt_x = opt_local
    opt_s = opt_stream
    opt_d = opt_datagram
    opt_t = opt_tcp
    opt_u = opt_udp
    opt_b = opt_backlog
    opt_c = opt_max_clients
    opt_n = opt_nodelay
    opt_v = opt_verbose
    opt_B = opt_background
    opt_L = opt_log
    opt_P = opt_pidfile
    opt_S = opt_supervise
    opt_U = opt_drop_privileges
    opt_V = opt_version

    def parseArgs(self, *argv):
        if not argv:
            raise usage.UsageError(
                "missing PROG: name the program to run, e.g. skd -t 3000 cat")
        self["argv"] = list(argv)

    def postOptions(self):
        address = self["address"]
        if address is not None and address.startswith(ENDPOINT_PREFIXES):
            if not self["stream"]:
                raise usage.UsageError(
                    f"endpoint strings describe stream sockets; give a "
                    f"datagram socket as [INTERFACE:]PORT or PATH, not "
                    f"'{address}'")
            self["namespace"] = "endpoint"
        elif self["namespace"] == "inet":
            try:
                parseInetAddress(address)
            except JailtwistError as e:
                raise usage.UsageError(str(e))
        if self["jail"] is None and (self["caps"] is not None
                                     or self["nonewprivs"]
                                     or self["unshare"]):
            raise usage.UsageError("--caps, --no-new-privs and --unshare "
                                   "apply to --jail: name the jail too")
        if self["supervise"] and self["namespace"] is not None:
            raise usage.UsageError(
                "-S restarts PROG only when no socket is bound")


def _number(value, option):
    try:
        return _positiveInteger(value, option)
    except JailtwistError as e:
        raise usage.UsageError(str(e))


def makeListener(options, reactor=None):
    """
    @return: the L{IListener} the options describe, or L{None}.
    """
    namespace, address = options["namespace"], options["address"]
    if namespace == "endpoint":
        return EndpointListener(address, reactor=reactor)
    if namespace == "inet":
        return InetListener(address, options["stream"], options["backlog"])
    if namespace == "local":
        return UnixListener(address, options["stream"], options["backlog"])
    if namespace == "activated":
        return InheritedListener()
    return None


def makeLauncher(options, environ=None):
    """
    @return: the L{IProgramLauncher} for PROG: inside the jail with
        C{--jail} (where C{-U} then names PROG's uid and gid).
    """
    if options["jail"] is None:
        return SpawnLauncher(options["argv"])
    uid = gid = None
    if options["drop"]:
        uid, gid, root = privilegeTarget(environ)
        if root is not None:
            raise JailtwistError(
                "--jail chroots each PROG into the jail: unset $ROOT (with "
                "--jail, -U applies $UID/$GID to PROG only)")
    return JailLauncher(options["argv"], options["jail"], uid=uid, gid=gid,
                        capabilities=options["caps"],
                        noNewPrivs=options["nonewprivs"],
                        namespaces=options["unshare"])


def _announcePort(port):
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()


def makeService(options, reactor=None, syslogSocket=None):
    """
    Compose skd from parsed L{Options}.

    @return: a L{MultiService} whose services run in skd's order.
    """
    parent = getattr(options, "parent", None)
    if options["background"] and parent is not None:
        if parent.get("nodaemon"):
            raise usage.UsageError(
                "-B conflicts with twistd -n: drop -n to let twistd run skd "
                "in the background, or drop -B")
    top = service.MultiService()
    # With no socket and no -S, PROG replaces skd: it is the service then,
    # and the service manager's variables are its own.
    notifier = None
    if options["namespace"] is not None or options["supervise"]:
        from jailtwist.notify import ServiceNotifier
        notifier = ServiceNotifier()
    listener = makeListener(options, reactor)
    launcher = makeLauncher(options)
    if listener is not None:
        main = SocketDaemon(
            listener, launcher, maxClients=options["maxclients"],
            noDelay=options["nodelay"], verbose=options["verbose"],
            announce=_announcePort, reactor=reactor)
    else:
        main = Supervisor(launcher, restart=options["supervise"],
                          verbose=options["verbose"], reactor=reactor)
    main.setServiceParent(top)
    if options["pidfile"] is not None:
        PidFile(options["pidfile"]).setServiceParent(top)
    if options["log"] is not None:
        StderrLog(options["log"], syslogSocket).setServiceParent(top)
    if options["drop"] and options["jail"] is None:
        PrivilegeDrop().setServiceParent(top)
    if notifier is not None:
        from jailtwist.notify import ReadinessService
        ReadinessService(
            notifier, (lambda: f"serving {listener.describe()}")
            if listener is not None else "supervising",
            reactor).setServiceParent(top)
    return top
