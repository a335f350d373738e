# -*- test-case-name: tests.test_jaildaemon -*-
"""
The C{jaildaemon} command, as FreeBSD's jaildaemon(1):

    jaildaemon -D [-p PIDFILE] [-f IPCSOCKPATH]
    jaildaemon -c COMMAND -j JAIL [-r|-R] [-u UID] [-g GID] [-t PROCTITLE]
               [-f IPCSOCKPATH]

Daemon mode runs C{twistd jaildaemon}; utility mode hands one
L{jailtwist.control.AttachProbe} to the running daemon and reports its
answer.
"""

import sys

from jailtwist.command import runCommand
from jailtwist.control import DEFAULT_IPC_PATH
from jailtwist.errors import JailtwistError

DEFAULT_PIDFILE = "/var/run/jaildaemon.pid"

USAGE = ("usage: jaildaemon -D [-p pidfile] [-f ipcsockpath]\n"
         "       jaildaemon -c command -j jail [-rR] [-u uid] [-g gid] "
         "[-t proctitle] [-f ipcsockpath]")


def _options():
    from twisted.python import usage

    class Options(usage.Options):
        synopsis = USAGE[len("usage: "):]
        longdesc = (
            "Daemon mode (-D) starts the jaildaemon daemon; utility mode (-c) "
            "asks it to plant a probe in a running jail: a SIGHUP sent to "
            "the probe from inside the jail (pkill -HUP -f PROCTITLE) makes "
            "the host run COMMAND. JAIL is a jid or name from the registry "
            "of running jails (jk_list), or pid:N for the jail process N "
            "runs in.")
        optFlags = [
            ["daemon", "D", "daemon mode"],
            ["respawn", "r", "respawn the probe after the command finished"],
            ["respawn-now", "R",
             "respawn the probe at once, without waiting for the command "
             "(the command may then run several times at once)"],
            ["nodaemon", "n", "daemon mode: stay in the foreground and log "
                              "to standard output (unless -l)"],
        ]
        optParameters = [
            ["command", "c", None, "utility mode: the host command to run "
                                   "when the probe is signalled"],
            ["jail", "j", None, "the jail: jid, name, or pid:N"],
            ["uid", "u", None, "uid (inside the jail) the probe runs as "
                               "(default 0)"],
            ["gid", "g", None, "gid (inside the jail) the probe runs as "
                               "(default: the uid given with -u, else 0)"],
            ["proctitle", "t", None, "the probe's command line, as ps and "
                                     "pkill -f see it inside the jail"],
            ["ipcsockpath", "f", DEFAULT_IPC_PATH,
             "the daemon's socket (a path, or an endpoint such as "
             "unix:PATH:mode=660)"],
            ["pidfile", "p", DEFAULT_PIDFILE, "daemon mode: pid file"],
            ["logfile", "l", None,
             "daemon mode: log to this file (default: syslog)"],
            ["config", None, None, "daemon mode: jailtwist.ini to read "
                                   "[control] and [probes] from"],
        ]

        def opt_version(self):
            import jailtwist
            print(f"jaildaemon (jailtwist) {jailtwist.__version__}")
            sys.exit(0)

        def postOptions(self):
            if self["daemon"] == bool(self["command"]):
                raise usage.UsageError("give exactly one of -D (daemon) "
                                       "or -c COMMAND (utility)")
            if self["daemon"]:
                return
            if not self["jail"]:
                raise usage.UsageError("-c needs -j JAIL (a jid, a name "
                                       "or pid:N)")
            if self["respawn"] and self["respawn-now"]:
                raise usage.UsageError("give -r or -R, not both")
            for name, flag in (("uid", "-u"), ("gid", "-g")):
                value = self[name]
                if value is not None:
                    if not value.isdigit():
                        raise usage.UsageError(
                            f"{flag} takes a number (ids inside the jail; "
                            f"names are not looked up in the jail's files)")
                    self[name] = int(value)

    return Options()


def _main(argv):
    options = _options()
    options.parseOptions(argv)
    if options["daemon"]:
        return _daemon(options)
    return _utility(options)


def _daemon(options):
    from jailtwist.control import claimSocket, ipcEndpoint
    endpoint = ipcEndpoint(options["ipcsockpath"])
    claimSocket(endpoint)
    args = ["--pidfile", options["pidfile"]]
    if options["nodaemon"]:
        args.append("--nodaemon")
    if options["logfile"]:
        args += ["--logfile", options["logfile"]]
    elif options["nodaemon"]:
        args += ["--logfile", "-"]
    else:
        args += ["--syslog", "--prefix", "jaildaemon"]
    args += ["jaildaemon", "--ipc", endpoint]
    if options["config"]:
        args += ["--config", options["config"]]
    from twisted.python import usage
    from twisted.scripts.twistd import ServerOptions, runApp
    config = ServerOptions()
    try:
        config.parseOptions(args)
    except usage.UsageError as e:
        raise JailtwistError(str(e), 2)
    runApp(config)
    return 0


def _utility(options):
    from jailtwist.control import AttachProbe
    from jailtwist.tools.client import callDaemon, runClient
    respawn = ("immediate" if options["respawn-now"]
               else "after" if options["respawn"] else "none")
    arguments = {"jail": options["jail"], "command": options["command"],
                 "respawn": respawn}
    for name, key in (("uid", "uid"), ("gid", "gid"),
                      ("proctitle", "title")):
        if options[name] is not None:
            arguments[key] = options[name]
    result = runClient(lambda reactor: callDaemon(
        reactor, options["ipcsockpath"], AttachProbe, **arguments))
    print(f"probe {result['probe']} planted in jail {result['jail']} as "
          f"{result['title']!r} (pid {result['pid']})")
    return 0


def main():
    runCommand(_main, name="jaildaemon")
