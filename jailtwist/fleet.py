# -*- test-case-name: tests.test_fleet -*-
"""
Jails and jailed accounts as a state to reach, for configuration management
across a fleet (the Ansible collection in C{ansible/} calls these).

Each entry point first finds what would change, without changing anything
(the check mode, and what makes a second run report no change), and only
then does it with the same objects the commands use: L{buildJail} of
C{jk_init}, L{jailAccounts} and L{createAccount} of C{jk_jailuser} and
C{jk_addjailuser}.  Every refusal is a L{JailtwistError} with one line.

Removing a jail (L{removeJail}) is conservative: it refuses a path that
is not plainly a jail, a jail any account still lives in (jailed or not),
a jail a process runs in or that is registered as running, and a jail
with anything mounted inside; it never unmounts, and it deletes through
directory descriptors without following a symlink.
"""

import os
import pwd
import shutil
import stat
from collections import namedtuple

from jailtwist.bindlist import isUnder
from jailtwist.config import ConfigError, replaceSection
from jailtwist.errors import JailtwistError
from jailtwist.jail import Jail, UnsafeJail
from jailtwist.processes import ProcessTable
from jailtwist.registry import JailRegistry
from jailtwist.tools.build import (INIT_CONFIG, buildJail, planJail,
                                   readInitConfig)
from jailtwist.tools.jailuser import (DEFAULT_SHELL, createAccount,
                                      jailAccounts, jailOptions,
                                      setLshSection)

#: What an entry point did (or, in a dry run, would do): C{changed}, the
#: lines naming each change, things this host lacks (warnings), and for
#: accounts the jk_lsh.ini text before and after.
Outcome = namedtuple("Outcome", "changed changes missing before after",
                     defaults=((), "", ""))

#: Host directories never removed as a jail, whatever they hold.
_SYSTEM = frozenset("""
    / /bin /boot /dev /etc /home /lib /lib32 /lib64 /libx32 /media /mnt
    /opt /proc /root /run /sbin /srv /sys /tmp /usr /var /var/lib /var/tmp
    /usr/local /usr/lib /usr/share /var/www
""".split())


def _safeJail(path, missingOk):
    if not isinstance(path, str) or not path.startswith("/"):
        raise JailtwistError(f"jail path {path!r} must be absolute")
    jail = Jail(path)
    try:
        jail.checkSafe(parents=True, missingOk=missingOk)
    except UnsafeJail as e:
        raise JailtwistError(f"jail {jail.location} is not safe: {e}")
    return jail


def ensureJail(path, sections, bind=False, configPath=INIT_CONFIG,
               dryRun=False):
    """
    Make the jail at C{path} hold C{sections} of the jk_init.ini at
    C{configPath} (copied, or listed for binding with C{bind}), creating
    it if needed.  Nothing is done when nothing would be added.

    @return: an L{Outcome}; its changes name jail paths, C{bind PATH}
        entries, accounts, log socket and proc mount to be added.
    """
    if not sections:
        raise JailtwistError("name at least one section of jk_init.ini "
                             "(jk_init -l lists them)")
    if not os.path.isfile(configPath):
        raise JailtwistError(f"{configPath} does not exist: install the "
                             f"shipped jk_init.ini (bootstrap.sh install) or "
                             f"name another one")
    config = readInitConfig(configPath)
    try:
        unknown = config.plan(sections)[1]
    except ConfigError as e:
        raise JailtwistError(str(e))
    if unknown:
        name, includedBy = unknown[0]
        where = f" (included by [{includedBy}])" if includedBy else ""
        raise JailtwistError(f"no section [{name}]{where} in {config.path}: "
                             f"jk_init -l -c {config.path} lists them")
    jail = _safeJail(path, missingOk=True)
    added, missing = planJail(jail, config, sections, bind=bind)
    if added and not dryRun:
        build = buildJail(jail, config, sections, bind=bind, name="jail")
        missing = build.installer.missing
    return Outcome(bool(added), added, [str(m) for m in missing])


def _mountsUnder(location, mountinfo="/proc/self/mountinfo"):
    with open(mountinfo, encoding="utf-8") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted(p for p in points if isUnder(p, location))


def removeJail(path, dryRun=False):
    """
    Remove the jail directory at C{path} and everything in it, after
    refusing anything doubtful (see the module docstring).  A path that
    does not exist is no change.

    @return: an L{Outcome}.
    """
    jail = _safeJail(path, missingOk=True)
    location = jail.location
    if not os.path.lexists(location):
        return Outcome(False, [])
    if location in _SYSTEM:
        raise JailtwistError(f"{location} is a system directory, not a "
                             f"jail: refusing to remove it")
    st = os.lstat(location)
    if not stat.S_ISDIR(st.st_mode):
        raise JailtwistError(f"{location} is not a directory: refusing to "
                             f"remove it")
    try:
        passwd = jail.openParent("/etc/passwd")
    except (OSError, JailtwistError):
        passwd = None
    if passwd is None or not _isFileAt(*passwd):
        raise JailtwistError(f"{location} has no etc/passwd, so it is not a "
                             f"jail built by jk_init: remove it by hand if "
                             f"you mean to")
    for entry in pwd.getpwall():
        home = entry.pw_dir.replace("/./", "/")
        if isUnder(os.path.normpath(home), location):
            raise JailtwistError(
                f"account {entry.pw_name} has its home {entry.pw_dir} in "
                f"{location}: remove the account (userdel) or move it "
                f"first; nothing was removed")
    registry = JailRegistry()
    records = registry.entries()
    for record in records:
        if isUnder(record.path, location):
            raise JailtwistError(
                f"jail {record.name} (jid {record.jid}) runs in "
                f"{record.path}: stop it first; nothing was removed")
    running = ProcessTable(registered=records).jailedProcesses(location)
    if running:
        pids = ", ".join(str(p.pid) for p in running[:10])
        raise JailtwistError(f"processes run in {location} (pid {pids}): "
                             f"stop them first; nothing was removed")
    mounts = _mountsUnder(location)
    if mounts:
        raise JailtwistError(f"{mounts[0]} is mounted in the jail: unmount "
                             f"it (and remove it from /etc/fstab) first; "
                             f"nothing was removed")
    if not dryRun:
        _removeTree(location)
    return Outcome(True, [f"remove {location}"])


def _isFileAt(dirFd, name):
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dirFd,
                                    follow_symlinks=False).st_mode)
    finally:
        os.close(dirFd)


def _removeTree(location):
    """
    Delete C{location} without following a symlink anywhere in it: Python's
    C{shutil.rmtree} works through directory descriptors on Linux and
    refuses a top that is a symlink; any error stops it with one line.
    """
    if not shutil.rmtree.avoids_symlink_attacks:
        raise JailtwistError("this Python cannot remove a tree without "
                             "following symlinks: remove the jail by hand")

    def failed(function, path, excinfo):
        error = excinfo[1]
        raise JailtwistError(f"could not remove {path}: "
                             f"{getattr(error, 'strerror', None) or error}; "
                             f"the jail is partly removed")
    shutil.rmtree(location, onerror=failed)


def ensureJailedUser(name, jail, shell=DEFAULT_SHELL, moveHome=False,
                     uid=None, group=None, comment=None, password=None,
                     lsh=None, dryRun=False):
    """
    Make C{name} an account jailed in C{jail} with C{shell} inside it:
    created (useradd) when it does not exist, moved in when it does (its
    home too with C{moveHome}).  With C{lsh}, the jail's jk_lsh.ini gets a
    C{[name]} section holding exactly those C{(key, value)} pairs.

    @return: an L{Outcome}, C{before}/C{after} the jk_lsh.ini text.
    """
    if not name or not isinstance(name, str) or "/" in name \
            or not name.isprintable() or name.startswith("-"):
        raise JailtwistError(f"{name!r} cannot be an account name")
    jailPath = _safeJail(jail, missingOk=dryRun).location
    options = jailOptions({"jail": jailPath, "shell": shell,
                            "chrootsh": None, "verbose": False,
                            "move": moveHome, "uid": uid, "gid": group,
                            "comment": comment, "password": password},
                           [name])
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is not None and uid is not None and str(entry.pw_uid) != uid:
        raise JailtwistError(f"account {name} exists with uid "
                             f"{entry.pw_uid}, not {uid}: uids are not "
                             f"changed; remove the uid or the account")
    built = os.path.exists(jailPath + "/etc/passwd")
    if dryRun and not built:
        # Check mode before the task that builds the jail has run.
        changes = [f"jail {jailPath} is not built yet: {name} would be "
                   f"put in it"]
    elif entry is None:
        changes = [f"creating account {name} (useradd)"]
        if not dryRun:
            changes = createAccount(options)
    else:
        changes = jailAccounts(options, dryRun=True)
        if changes and not dryRun:
            changes = jailAccounts(options)
    before = after = ""
    if lsh is not None:
        if dryRun and not built:
            after = replaceSection("", name, lsh)
        else:
            before, after = setLshSection(Jail(jailPath), name, lsh, dryRun)
        if before != after:
            changes = list(changes) + [f"setting [{name}] in {jailPath}"
                                       f"/etc/jailkit/jk_lsh.ini"]
    return Outcome(bool(changes), list(changes), (), before, after)
