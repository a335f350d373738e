# -*- test-case-name: tests.test_skd -*-
"""
The C{skd} command: skd's start-up sequence around the services of
L{jailtwist.tap.skd} (background fork that waits until the socket is ready,
stdio to /dev/null, stderr to the log), then the reactor; or, with no socket,
C{exec} of PROG once the same steps are done.
"""

import os
import sys

from jailtwist.command import runCommand
from jailtwist.errors import JailtwistError


def main():
    runCommand(_main, name="skd")


def _main(argv):
    from twisted.python import usage
    from jailtwist.skd import Supervisor, ensureStandardDescriptors
    from jailtwist.tap.skd import Options, makeService

    options = Options()
    options.parseOptions(argv)
    ensureStandardDescriptors()
    _holdStopSignals()
    readiness = _background() if options["background"] else None
    if not (options["namespace"] is None and not options["supervise"]):
        # Everything the daemon runs on is imported before -U's chroot.
        import importlib
        for module in ("twisted.internet.reactor", "twisted.logger"):
            importlib.import_module(module)
    try:
        top = makeService(options)
        main = top.getServiceNamed("skd")
        execute = isinstance(main, Supervisor) and not options["supervise"]
        top.privilegedStartService()
        if execute:
            main.launcher.prepare()
            for each in top:
                if each is not main:
                    each.startService()
        else:
            top.startService()
    except (JailtwistError, usage.UsageError) as e:
        if readiness is None:
            raise
        os.write(readiness, str(e).encode("utf-8", "replace"))
        os._exit(getattr(e, "exitCode", 2))
    if readiness is not None:
        _detach(options["namespace"] is not None)
        os.write(readiness, b"\0ready")
        os.close(readiness)
    if execute:
        if _stopRequested:
            return 128 + _stopRequested[0]
        main.launcher.execute()
    return _serve(top)


def _background():
    """
    Fork.  The parent waits until the child reports that it is serving (or
    why it cannot) and exits accordingly; the child starts a new session and
    gets the descriptor to report on.
    """
    readEnd, writeEnd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os.close(writeEnd)
        chunks = []
        while True:
            chunk = os.read(readEnd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        report = b"".join(chunks)
        if report == b"\0ready":
            os._exit(0)
        if not report:
            raise JailtwistError("the background process died while "
                                 "starting (see its log)")
        raise JailtwistError(report.decode("utf-8", "replace"))
    os.close(readEnd)
    os.setsid()
    return writeEnd


def _detach(socketBound):
    """
    skd's -B: stdin and stdout go to /dev/null when they are a terminal or
    a socket is bound.
    """
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        if socketBound or os.isatty(fd):
            os.dup2(null, fd)
    os.close(null)


_stopRequested = []


def _holdStopSignals():
    """
    Until the reactor runs (and installs its own handlers), remember a
    SIGTERM or SIGINT instead of dying of it, so that a stop asked for
    during start-up still removes the pidfile and the socket.
    """
    import signal

    def hold(signum, frame):
        _stopRequested.append(signum)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, hold)


def _serve(top):
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo(
        [_stderrObserver], discardBuffer=True, redirectStandardIO=False)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.callWhenRunning(lambda: _stopRequested and reactor.stop())
    reactor.run()
    return 0


def _stderrObserver(event):
    """
    Write skd's reports (and any error) to descriptor 2 as plain lines, the
    way skd writes them.
    """
    from twisted.logger import LogLevel, formatEvent

    namespace = event.get("log_namespace") or ""
    level = event.get("log_level")
    if not namespace.startswith("jailtwist") and (
            level is None or level < LogLevel.warn):
        return
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}".strip()
    try:
        os.write(2, (text + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
