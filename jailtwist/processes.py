# -*- test-case-name: tests.test_processes -*-
"""
Which processes run inside a jail, read from C{/proc}.

A process is jailed when its root directory (C{/proc/PID/root}) is not the
host's C{/}, or when it shares the pid or mount namespace of the init of a
jail in jailtwist's registry that has its own (a process that did
C{pivot_root} in its own mount namespace may show C{/} as its root).
Reading another process's C{/proc} entries can fail at any
moment: the process may exit between listing C{/proc} and reading it, and
the kernel may refuse (C{EACCES}: ptrace rules, another user namespace, a
hardened PID 1).  Such a process is counted in L{ProcessTable.unreadable}
or simply skipped; it never ends the scan.
"""

import errno
import os
from collections import namedtuple

from jailtwist.audit import printable, userName


# A named tuple, not a dataclass: jk_list starts in a fraction of the time
# dataclasses takes to import.
class JailedProcess(namedtuple("JailedProcess", "jail pid uid user command "
                                                "name", defaults=("",))):
    """
    One process whose root is not the host's root.

    @ivar jail: its root directory, as the host sees it.
    @ivar pid: its process id.
    @ivar uid: its effective uid, or C{None} if unknown.
    @ivar user: the name of that uid (the number when it has no name).
    @ivar command: its command line, or C{[name]} when it has none.
    @ivar name: the name of its jail in jailtwist's registry, or C{""}.
    """

    __slots__ = ()


# Registry isolation words -> the namespace (in /proc/PID/ns) they give a
# jail of its own, in order of preference.
_NAMESPACES = (("pid", "pid"), ("fs", "mnt"))


class ProcessTable:
    """
    A scan of C{/proc}.

    @param procRoot: the proc file system to read (a fake tree in tests).
    @param registered: the running jails of jailtwist's registry (records
        with C{jid, name, path, initPid, isolation}, as
        L{jailtwist.registry.JailRegistry.entries} returns them).
    @ivar unreadable: pids whose root could not be read in the last scan.
    """

    def __init__(self, procRoot="/proc", registered=()):
        self.procRoot = procRoot.rstrip("/")
        self.registered = list(registered)
        self.unreadable = set()

    def pids(self):
        """
        The pids in C{/proc} now.
        """
        try:
            names = os.listdir(self.procRoot)
        except OSError:
            return []
        return sorted(int(name) for name in names if name.isdigit())

    def rootOf(self, pid):
        """
        @return: the root directory of C{pid} as the host sees it, or
            C{None} when the process is gone or cannot be read (then it is
            added to L{unreadable}).
        """
        try:
            return os.readlink(f"{self.procRoot}/{pid}/root")
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ESRCH):
                self.unreadable.add(pid)
            return None

    def _namespace(self, pid, name):
        try:
            return os.stat(f"{self.procRoot}/{pid}/ns/{name}").st_ino
        except OSError:
            return None

    def _namespaceOwners(self):
        """
        @return: C{{(namespace, inode): record}} for the registered jails
            that have a pid or mount namespace of their own.
        """
        owners = {}
        for record in self.registered:
            # The pid namespace when the jail has one of its own: the
            # process that set up a mount namespace may share it without
            # being in the jail.
            for isolation, name in _NAMESPACES:
                if isolation in record.isolation:
                    break
            else:
                continue
            inode = self._namespace(record.initPid, name)
            # Never claim the host's own namespace for a jail.
            if inode is not None and inode != self._namespace("self", name):
                owners[(name, inode)] = record
        return owners

    def _owner(self, pid, owners):
        """
        @return: the registered jail whose namespace C{pid} shares, or
            C{None}.
        """
        for _, name in _NAMESPACES:
            record = owners.get((name, self._namespace(pid, name)))
            if record is not None:
                return record
        return None

    def jailedProcesses(self, jail=None):
        """
        Every jailed process, sorted by jail and pid.

        @param jail: keep only processes whose jail is this directory or
            below it (symlinks in the argument are resolved on the host).
        @rtype: C{list} of L{JailedProcess}
        """
        self.unreadable = set()
        wanted = None
        if jail is not None:
            wanted = os.path.realpath(jail)
        owners = self._namespaceOwners()
        byPath = {record.path: record for record in self.registered}
        found = []
        for pid in self.pids():
            root = self.rootOf(pid)
            if root is None:
                continue
            record = self._owner(pid, owners) if owners else None
            if record is not None:
                root = record.path
            elif root == "/":
                continue
            else:
                record = byPath.get(root)
            if wanted is not None and not within(root, wanted):
                continue
            found.append(self._describe(pid, root, record))
        found.sort()
        return found

    def _describe(self, pid, root, record):
        uid = self._uid(pid)
        return JailedProcess(jail=root, pid=pid, uid=uid,
                             user=self._name(uid),
                             command=self._command(pid),
                             name=record.name if record is not None else "")

    def _uid(self, pid):
        base = f"{self.procRoot}/{pid}"
        try:
            with open(f"{base}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        return int(line.split()[2])
        except (OSError, ValueError, IndexError):
            pass
        try:
            return os.stat(base).st_uid
        except OSError:
            return None

    def _name(self, uid):
        return "?" if uid is None else userName(uid)

    def _command(self, pid):
        base = f"{self.procRoot}/{pid}"
        try:
            with open(f"{base}/cmdline", "rb") as f:
                raw = f.read(4096)
        except OSError:
            raw = b""
        words = [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]
        if words:
            return " ".join(words)
        try:
            with open(f"{base}/comm", "rb") as f:
                return "[" + f.read().strip().decode("utf-8", "replace") + "]"
        except OSError:
            return "?"


def within(path, directory):
    """
    Whether C{path} is C{directory} or below it (by whole components).
    """
    if directory == "/":
        return True
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def formatTable(jailed, wide=False, width=80):
    """
    jailkit's jk_list layout: C{Pid User Jail Command} columns, commands
    cut to fit C{width} columns unless C{wide}.  Command lines and paths
    are chosen by the processes: control characters in them are escaped
    (L{jailtwist.audit.printable}), so they cannot forge lines or drive the
    terminal.

    @return: the lines, header first.
    """
    rows = [(p.pid, printable(p.user), printable(p.jail),
             printable(p.command)) for p in jailed]
    userWidth = max([4] + [len(user) for _, user, _, _ in rows])
    jailWidth = max([4] + [len(jail) for _, _, jail, _ in rows])
    commandRoom = max(7, width - 9 - userWidth - jailWidth)
    lines = [f"{'Pid':<6} {'User':<{userWidth}} {'Jail':<{jailWidth}}"
             f" Command"]
    for pid, user, jail, command in rows:
        if not wide:
            command = command[:commandRoom]
        lines.append(f"{pid:<6} {user:<{userWidth}}"
                     f" {jail:<{jailWidth}} {command}".rstrip())
    return lines


def formatRegistered(records):
    """
    The registry's running jails as a table: C{Jid Name Path Init
    Isolation Files}, where C{Files} says whether the jail holds copies of
    host files (C{copied}) or is assembled from read-only binds
    (C{bound}).

    @return: the lines, header first (none without records).
    """
    if not records:
        return []
    rows = [(str(r.jid), printable(r.name), printable(r.path),
             str(r.initPid), ",".join(r.isolation) or "chroot",
             "bound" if r.bind else "copied")
            for r in sorted(records, key=lambda r: r.jid)]
    header = ("Jid", "Name", "Path", "Init", "Isolation", "Files")
    widths = [max(len(row[i]) for row in rows + [header])
              for i in range(len(header))]
    return [" ".join(cell.ljust(width) for cell, width in zip(row, widths))
            .rstrip() for row in [header] + rows]
