# -*- test-case-name: tests.test_login -*-
"""
The login commands: C{jk_chrootsh} (a login shell that enters the jail of
the account), C{jk_lsh} (a shell that runs only configured commands),
C{jk_uchroot} (enter an allowed jail) and C{jk_procmailwrapper} (procmail
inside the recipient's jail).

These run as the account itself on every login, so they import nothing from
Twisted and nothing they do not need (see L{jailtwist.login}).
"""

import os
import sys

from jailtwist import __version__
from jailtwist.command import runCommand
from jailtwist.errors import JailtwistError
from jailtwist.login import (
    CONFIG_DIRECTORY, AuthLog, NamespaceUnavailable, Refused,
    TrustedFileError, UchrootUsage, closeDescriptors, execute,
    parseUchrootArguments, planChrootsh, planProcmail, planUchroot,
    protectProcess, readTrusted)
from jailtwist.lsh import CONFIG as LSH_CONFIG
from jailtwist.lsh import LshPolicy, LshRefusal, checkCommandLine


def _refusing(log):
    """
    Log a refusal under the right tag and turn it into the command's one
    line and exit status.
    """
    def wrap(function):
        def run(argv):
            try:
                return function(argv, log)
            except (Refused, LshRefusal) as e:
                log.release()
                ident = getattr(e, "ident", None)
                if isinstance(e, LshRefusal):
                    ident = "jk_lsh"
                log.error(e.logMessage, ident=ident)
                raise JailtwistError(e.logMessage, e.exitCode)
        return run
    return wrap


def _chrootsh(argv, log):
    protectProcess()
    closeDescriptors()
    log.hold()
    plan = planChrootsh([sys.argv[0]] + list(argv), dict(os.environ), log)
    _enter(plan, log, "jk_chrootsh", argv)


def _enter(plan, log, program, argv):
    """
    Enter the jail of C{plan} through a user namespace or, when the kernel
    refuses one, through the root login service (L{jailtwist.loginclient}),
    which checks everything again for the caller the kernel names.
    """
    try:
        execute(plan, log)
    except NamespaceUnavailable as e:
        from jailtwist import loginclient
        # The service checks again and logs the login itself.
        log.release(keep=False)
        log.info(f"{e.logMessage}; asking the login service")
        try:
            status = loginclient.login(program, argv, dict(os.environ),
                                       reason=e.logMessage)
        except loginclient.ServiceUnavailable as e:
            raise Refused(str(e), e.exitCode)
        raise SystemExit(status)


def chrootsh():
    """
    C{jk_chrootsh}: the login shell of jailed accounts.
    """
    log = AuthLog("jk_chrootsh")
    runCommand(_refusing(log)(_chrootsh), name="jk_chrootsh")


def _lsh(argv, log):
    protectProcess()
    import grp
    import pwd
    from jailtwist.jail import Jail
    full = [sys.argv[0]] + list(argv)
    user = os.environ.get("USER") or None
    uid = os.getuid()
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(uid)
    except KeyError:
        raise LshRefusal(f"cannot find user info for USER {user}" if user
                         else f"cannot find user info for uid {uid}", 2)
    if user and entry.pw_uid != uid:
        raise LshRefusal(f"abort, running as UID {uid}, but environment "
                         f"variable USER {user} has UID {entry.pw_uid}", 2)
    try:
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        raise LshRefusal(f"cannot find group name for gid {os.getgid()}", 3)
    name = entry.pw_name
    checkCommandLine(full, name, uid)
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        data = readTrusted(root, LSH_CONFIG)
    except TrustedFileError as e:
        raise LshRefusal(f"configfile {LSH_CONFIG} is not available: {e}", 1)
    finally:
        os.close(root)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LshRefusal(f"configfile {LSH_CONFIG} is not a text file", 1)
    policy = LshPolicy.fromText(text, name, group)
    environ = dict(os.environ)
    command = policy.decide(full, name, uid, Jail("/"), environ)
    log.info(f"executing command '{command.describe()}' for user {name} "
             f"({uid})")
    environ.update(command.environment)
    if command.umask is not None:
        os.umask(command.umask)
    try:
        os.execve(command.executable, command.argv, environ)
    except OSError as e:
        log.error(f"WARNING: running {command.executable} failed for user "
                  f"{name} ({uid}): {e.strerror}")
        raise LshRefusal(f"WARNING: check the permissions and libraries for "
                         f"{command.executable}", 255)


def lsh():
    """
    C{jk_lsh}: the limited shell, for accounts that are not jailed (jailed
    accounts get jk_lsh's policy applied by C{jk_chrootsh}).
    """
    log = AuthLog("jk_lsh")
    runCommand(_refusing(log)(_lsh), name="jk_lsh")


_UCHROOT_USAGE = """\
Usage: jk_uchroot -j JAIL -x EXECUTABLE [-- ARGUMENTS...]
  -j, --jail=JAIL              the jail to enter (listed in allowed_jails
                               for you in {config}/jk_uchroot.ini)
  -x, --executable=EXECUTABLE  the program to run, as a path inside the jail
  -h, --help                   show this help
  -v                           accepted and ignored (jailkit compatibility)
""".format(config=CONFIG_DIRECTORY)


_UCHROOT_ERRORS = {
    "No jail path": "no jail given: use -j JAIL",
    "No executable path": "no executable given: use -x EXECUTABLE"}


def _uchroot(argv, log):
    protectProcess()
    try:
        parsed = parseUchrootArguments(argv)
    except UchrootUsage as e:
        sys.stdout.write(f"{e.logMessage}\n{_UCHROOT_USAGE}")
        short = next((v for k, v in _UCHROOT_ERRORS.items()
                      if k in e.logMessage), None)
        raise JailtwistError(short or f"{e.logMessage[len('ERROR: '):]} "
                                      f"(see 'jk_uchroot --help')", 1)
    if parsed is None:
        sys.stdout.write(f"jk_uchroot {__version__}\n{_UCHROOT_USAGE}")
        return 1
    jail, executable, args = parsed
    closeDescriptors()
    log.hold()
    plan = planUchroot(jail, executable, args, dict(os.environ), log)
    _enter(plan, log, "jk_uchroot", argv)


def uchroot():
    """
    C{jk_uchroot}: run a program inside a jail that C{jk_uchroot.ini}
    allows for the caller.
    """
    log = AuthLog("jk_uchroot")
    runCommand(_refusing(log)(_uchroot), name="jk_uchroot")


def _procmail(argv, log):
    protectProcess()
    closeDescriptors()
    log.hold()
    plan, hostArgv = planProcmail([sys.argv[0]] + list(argv),
                                  dict(os.environ), log)
    if plan is None:
        log.release()
        try:
            os.execve(hostArgv[0], hostArgv, os.environ)
        except OSError as e:
            raise JailtwistError(f"cannot execute {hostArgv[0]}: "
                                 f"{e.strerror}", 1)
    _enter(plan, log, "jk_procmailwrapper", argv)


def procmailwrapper():
    """
    C{jk_procmailwrapper}: deliver with procmail, inside the recipient's
    jail when the recipient is jailed.
    """
    log = AuthLog("jk_procmailwrapper")
    runCommand(_refusing(log)(_procmail), name="jk_procmailwrapper")
