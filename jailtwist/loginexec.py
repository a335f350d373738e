# -*- test-case-name: tests.test_loginservice -*-
"""
The one process the root login service starts per login: a fresh
interpreter (C{python -I -m jailtwist.loginexec}, empty environment) that
becomes the jailed program.  Nothing of the daemon's state reaches it but
what the service hands over:

  - descriptors 0, 1, 2: the program's stdin, stdout and stderr (the
    caller's own, or the slave of the service's pty);
  - descriptor 3: the plan, as JSON (uid, gid, groups, home, executable,
    argv, environment, umask, namespaces, whether 0 is a pty, the exit
    status and message for a failing exec, the exit status of each step
    of entering);
  - descriptor 4: an C{O_PATH} descriptor of the checked jail (for a bind
    jail, its bind list is read and its binds are checked from this
    descriptor, then assembled in a private mount namespace by
    L{jailtwist.enter.enterForAccount}).

It takes the caller's process state (limits, audit login uid, cgroup:
L{jailtwist.enter.adoptCallerState}), starts a session (with the pty as its controlling terminal), enters the
jail through L{jailtwist.enter.enterForAccount} and execs; a failure is one
line on stderr and the plan's exit status.
"""

import json
import os
import sys

PLAN_FD = 3
JAIL_FD = 4

_TIOCSCTTY = 0x540E


def _fail(message, code):
    try:
        os.write(2, f"{message}\n".encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _prepareBinds(plan):
    """
    For a bind jail, its binds checked and pinned from the service's own
    descriptor of the jail (never looked up again by path); host paths the
    host lacks go to the auth log.  A list that cannot be used is a
    C{JailtwistError}: nothing runs in a half-assembled jail.
    """
    from jailtwist.jail import bindListPresent
    if not bindListPresent(JAIL_FD):
        return None
    from jailtwist import bindlist
    try:
        binds = bindlist.prepareBinds(JAIL_FD, plan["jail"])
    except bindlist.BindListError as e:
        # 53, as the same refusal through a user namespace.
        raise bindlist.BindListError(
            f"the jail {plan['jail']} cannot be assembled: {e}",
            53) from None
    if binds.checked.missing:
        import syslog
        for missing in binds.checked.missing:
            syslog.syslog(syslog.LOG_AUTH | syslog.LOG_INFO,
                          f"bind jail {plan['jail']}: {missing}")
    return binds


def main():
    try:
        with os.fdopen(PLAN_FD, "rb") as f:
            plan = json.loads(f.read(1024 * 1024).decode("utf-8",
                                                         "surrogateescape"))
    except (OSError, ValueError) as e:
        _fail(f"jailtwist login service: cannot read the plan: {e}", 1)
    os.setsid()
    if plan["tty"]:
        import fcntl
        fcntl.ioctl(0, _TIOCSCTTY, 0)
    from jailtwist.bindlist import BindListError
    from jailtwist.enter import (
        EnterError, adoptCallerState, enterForAccount, restoreExecSignals)
    from jailtwist.errors import JailtwistError
    binds = None
    try:
        adoptCallerState(plan["caller"])
        binds = _prepareBinds(plan)
        enterForAccount(JAIL_FD, plan["home"], plan["uid"], plan["gid"],
                        plan["groups"], plan["namespaces"], binds)
    except EnterError as e:
        _fail(f"{plan['program']}: abort, entering the jail {plan['jail']} "
              f"failed: {e}", plan["stepCodes"].get(e.step, 33))
    except JailtwistError as e:
        _fail(f"{plan['program']}: abort: {e}",
              e.exitCode if isinstance(e, BindListError) else 33)
    finally:
        os.close(JAIL_FD)
        if binds is not None:
            binds.close()
    # The daemon's umask is not the login's: sshd's default, unless jk_lsh
    # sets one.
    os.umask(0o022 if plan["umask"] is None else plan["umask"])
    env = {k.encode("utf-8", "surrogateescape"):
           v.encode("utf-8", "surrogateescape")
           for k, v in plan["environment"].items()}
    argv = [a.encode("utf-8", "surrogateescape") for a in plan["argv"]]
    executable = plan["executable"].encode("utf-8", "surrogateescape")
    restoreExecSignals()
    try:
        os.execve(executable, argv, env)
    except OSError as e:
        code, message = plan["execFailure"]
        _fail(f"{plan['program']}: " + message.replace("{error}", e.strerror),
              code)


if __name__ == "__main__":
    sys.exit(main())
