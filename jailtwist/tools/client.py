# -*- test-case-name: tests.test_jaildaemon -*-
"""
The C{jailtwist} command: a small client of the control channel.

    jailtwist [-f SOCKET] ping
    jailtwist [-f SOCKET] probes [--json]
    jailtwist [-f SOCKET] jails [--json]
    jailtwist [-f SOCKET] events [--json] [--kind KIND ...]
    jailtwist [-f SOCKET] remove PROBE

It also holds what C{jaildaemon -c} uses to talk to the daemon
(L{callDaemon}, L{runClient}).
"""

import errno
import json
import sys
import time

from jailtwist.command import runCommand
from jailtwist.control import DEFAULT_IPC_PATH
from jailtwist.errors import JailtwistError


def _clientDescription(ipc):
    from jailtwist.control import clientEndpointDescription, ipcEndpoint
    return clientEndpointDescription(ipcEndpoint(ipc))


def _socketPath(ipc):
    from jailtwist.control import endpointPath, ipcEndpoint
    return endpointPath(ipcEndpoint(ipc)) or ipc


def _noDaemon(ipc):
    return JailtwistError(f"no jailtwist daemon is running on "
                          f"{_socketPath(ipc)} "
                          f"(start one with 'jaildaemon -D' or "
                          f"'twistd jaildaemon')")


def _explain(failure, ipc):
    """
    Turn whatever went wrong talking to the daemon into one line.
    """
    from twisted.internet import error
    from twisted.protocols import amp
    value = failure.value
    if isinstance(value, JailtwistError):
        return value
    if (isinstance(value, error.ConnectError)
            and value.osError in (errno.EACCES, errno.EPERM)):
        return JailtwistError(f"permission denied on {_socketPath(ipc)}: "
                              f"the control socket is for root (or the "
                              f"group its mode and the daemon's "
                              f"configuration allow); run as root")
    if isinstance(value, (error.ConnectError, FileNotFoundError,
                          ConnectionRefusedError)):
        return _noDaemon(ipc)
    if isinstance(value, amp.UnhandledCommand):
        return JailtwistError(f"the daemon does not know this command "
                              f"({value}): is it an older jailtwist?")
    if isinstance(value, amp.RemoteAmpError):
        return JailtwistError(f"the daemon refused: {value}")
    if isinstance(value, error.ConnectionDone) or \
            isinstance(value, error.ConnectionLost):
        return JailtwistError("the daemon closed the connection")
    return JailtwistError(f"talking to the daemon failed: {value}")


def connect(reactor, ipc, onEvent=None):
    """
    Connect a L{jailtwist.control.ControlClient} to the daemon at C{ipc}
    (a path or an endpoint description).

    @return: a Deferred firing with the connected client.
    """
    from twisted.internet.endpoints import clientFromString, connectProtocol

    from jailtwist.control import ControlClient
    endpoint = clientFromString(reactor, _clientDescription(ipc))
    d = connectProtocol(endpoint, ControlClient(onEvent))
    d.addErrback(lambda f: _fail(_explain(f, ipc)))
    return d


def _fail(exception):
    raise exception


def callDaemon(reactor, ipc, command, /, **arguments):
    """
    Connect, call one command, disconnect.

    @return: a Deferred firing with the response C{dict}, or failing with a
        L{JailtwistError} that reads as one line.
    """
    def call(client):
        d = client.callRemote(command, **arguments)

        def done(result):
            client.transport.loseConnection()
            return result
        d.addBoth(done)
        d.addErrback(lambda f: _fail(_explain(f, ipc)))
        return d
    return connect(reactor, ipc).addCallback(call)


def runClient(function):
    """
    Run C{function(reactor)} (returning a Deferred) under
    C{twisted.internet.task.react} and give back its result; a failure
    comes back as the L{JailtwistError} it carries.
    """
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import react
    outcome = {}

    def main(reactor):
        d = maybeDeferred(function, reactor)
        def succeeded(result):
            outcome["result"] = result

        def failed(failure):
            outcome["failure"] = failure
        return d.addCallbacks(succeeded, failed)

    try:
        react(main)
    except SystemExit:
        pass
    if "failure" in outcome:
        value = outcome["failure"].value
        if isinstance(value, JailtwistError):
            raise value
        raise JailtwistError(str(value))
    return outcome.get("result")


def formatEvent(event):
    """
    @return: one human-readable line for a L{jailtwist.control.JailEvent}.
    """
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
    details = " ".join(f"{key}={_show(value)}"
                       for key, value in sorted(event.fields.items()))
    return f"{when} {event.kind} {details}".rstrip()


def _show(value):
    text = str(value)
    if not text or any(c.isspace() for c in text) or '"' in text:
        return json.dumps(text)
    return text


def _table(rows, columns):
    if not rows:
        return ""
    widths = [max(len(title), *(len(str(row.get(key, ""))) for row in rows))
              for title, key in columns]
    lines = ["  ".join(title.ljust(width) for (title, _), width
                       in zip(columns, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(row.get(key, "")).ljust(width)
                               for (_, key), width
                               in zip(columns, widths)).rstrip())
    return "\n".join(lines)


def _options():
    from twisted.python import usage

    class Listing(usage.Options):
        optFlags = [["json", None, "one JSON object per line"]]

    class Events(usage.Options):
        optFlags = [["json", None, "one JSON object per line"]]

        def __init__(self):
            super().__init__()
            self["kinds"] = []

        def opt_kind(self, kind):
            """
            only events of this kind (repeatable), e.g. probe-fired
            """
            self["kinds"].append(kind)

    class Remove(usage.Options):
        def parseArgs(self, probe):
            if not probe.isdigit():
                raise usage.UsageError("PROBE is a probe number (see "
                                       "'jailtwist probes')")
            self["probe"] = int(probe)

    class Nothing(usage.Options):
        pass

    class Options(usage.Options):
        synopsis = "[-f SOCKET] ping|probes|jails|events|remove [options]"
        longdesc = ("Talk to a running jailtwist daemon (jaildaemon, or the "
                    "twistd jailtwist suite) over its control socket.")
        optParameters = [
            ["ipc", "f", DEFAULT_IPC_PATH,
             "the daemon's socket (a path or an endpoint description)"],
        ]
        subCommands = [
            ["ping", None, Nothing, "is a daemon running, which version"],
            ["probes", None, Listing, "list the probes"],
            ["jails", None, Listing, "list the registered running jails"],
            ["events", None, Events,
             "follow jail events as they happen (Ctrl-C ends)"],
            ["remove", None, Remove, "remove probe PROBE (its command will "
                                     "not run)"],
        ]

        def opt_version(self):
            import jailtwist
            print(f"jailtwist {jailtwist.__version__}")
            sys.exit(0)

        def postOptions(self):
            if self.subCommand is None:
                raise usage.UsageError("name a subcommand: ping, probes, "
                                       "jails, events or remove")

    return Options()


def _main(argv):
    from jailtwist import control
    options = _options()
    options.parseOptions(argv)
    ipc = options["ipc"]
    sub = options.subOptions
    name = options.subCommand
    out = sys.stdout
    if name == "ping":
        result = runClient(lambda reactor: callDaemon(reactor, ipc,
                                                      control.Ping))
        out.write(f"jailtwist {result['version']} pid {result['pid']} "
                  f"serving {', '.join(result['services'])}\n")
    elif name == "probes":
        result = runClient(lambda reactor: callDaemon(reactor, ipc,
                                                      control.ListProbes))
        _list(out, result["probes"], sub["json"], [
            ("PROBE", "probe"), ("JAIL", "jail"), ("STATE", "state"),
            ("PID", "pid"), ("RESPAWN", "respawn"), ("FIRED", "fired"),
            ("TITLE", "title"), ("COMMAND", "command")])
    elif name == "jails":
        result = runClient(lambda reactor: callDaemon(reactor, ipc,
                                                      control.ListJails))
        _list(out, result["jails"], sub["json"], [
            ("JID", "jid"), ("NAME", "name"), ("INIT", "initPid"),
            ("ISOLATION", "isolation"), ("PATH", "path")])
    elif name == "remove":
        runClient(lambda reactor: callDaemon(reactor, ipc,
                                             control.RemoveProbe,
                                             probe=sub["probe"]))
        out.write(f"probe {sub['probe']} removed\n")
    elif name == "events":
        runClient(lambda reactor: _follow(reactor, ipc, sub["kinds"],
                                          sub["json"], out))
    out.flush()
    return 0


def _list(out, rows, asJson, columns):
    if asJson:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        return
    text = _table(rows, columns)
    if text:
        out.write(text + "\n")


def _follow(reactor, ipc, kinds, asJson, out):
    from twisted.internet.defer import Deferred

    from jailtwist.control import Subscribe

    def show(event):
        if asJson:
            out.write(json.dumps(event.asDict(), sort_keys=True) + "\n")
        else:
            out.write(formatEvent(event) + "\n")
        out.flush()

    ended = Deferred()
    stopping = []
    reactor.addSystemEventTrigger("before", "shutdown", stopping.append,
                                  True)

    def subscribe(client):
        lost = client.connectionLost

        def connectionLost(reason):
            lost(reason)
            if ended.called:
                return
            if stopping:
                ended.callback(None)
            else:
                ended.errback(JailtwistError("the daemon closed the "
                                             "connection"))
        client.connectionLost = connectionLost
        d = client.callRemote(Subscribe, kinds=kinds or None)
        d.addErrback(lambda f: _fail(_explain(f, ipc)))
        d.addCallback(lambda ignored: ended)
        return d

    return connect(reactor, ipc, show).addCallback(subscribe)


def main():
    runCommand(_main, name="jailtwist")
