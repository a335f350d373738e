# -*- test-case-name: tests.test_socketd -*-
"""
The C{jk_socketd} command: jailkit's command line in front of the same
service C{twistd jk-socketd} runs.
"""

import sys


from jailtwist.command import runCommand
from jailtwist.tap import socketd


class Options(socketd.Options):
    synopsis = "jk_socketd [-n|--nodetach] [-p|--pidfile FILE] " + \
        socketd.Options.synopsis
    optFlags = socketd.Options.optFlags + [
        ["nodetach", "n",
         "do not detach from the terminal; log to standard output"],
    ]
    opt_h = socketd.Options.opt_help

    def badConfiguration(self, error):
        raise error

    # jailkit's -p is the pidfile; the peak has no short option here.
    optParameters = [
        ["pidfile", "p", None, "write the daemon's pid to this file"],
    ] + [[name, None if short == "p" else short, default, doc]
         for name, short, default, doc in socketd.Options.optParameters]


def _main(argv):
    options = Options()
    options.parseOptions(argv)
    from twisted.application import service
    from twisted.scripts.twistd import ServerOptions, _SomeApplicationRunner

    twistdArgs = ["--pidfile=", "--no_save"]
    if options["nodetach"]:
        twistdArgs.append("--nodaemon")
    else:
        # Detached, jk_socketd logs to the host syslog through its own
        # reconnecting socket (as jailkit does), not to a twistd.log file.
        twistdArgs += ["--logger", "jailtwist.tools.socketd.discard"]
    config = ServerOptions()
    config.parseOptions(twistdArgs)
    relay = socketd.makeService(options, logToSyslog=not options["nodetach"])
    application = service.Application("jk_socketd")
    relay.setServiceParent(application)

    class Runner(_SomeApplicationRunner):
        def createOrGetApplication(self):
            return application

    Runner(config).run()
    return 0


def discard():
    """
    A log observer factory for twistd that writes nothing (see L{_main}).
    """
    return lambda event: None


def main():
    runCommand(_main, name="jk_socketd")


if __name__ == "__main__":
    main()
    sys.exit(0)
