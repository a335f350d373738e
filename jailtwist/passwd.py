# -*- test-case-name: tests.test_passwd -*-
"""
Account files: parsing C{passwd} and C{group} (the host's and a jail's),
and editing them the way shadow's own tools do.

Edits take the lock every passwd-editing program honours
(C{/etc/.pwd.lock}, the lock of C{lckpwdf(3)} that C{useradd}, C{usermod}
and C{vipw} take) and replace a file atomically: the new content goes to a
temporary file in the same directory, which is flushed to disk and renamed
over the old one, so an edit that is interrupted at any point (even by
C{SIGKILL} or a power cut) leaves either the old file or the new one, never
half of each.  Directories are reached through directory descriptors, so a
file inside a jail is written where the jail says, never through a symlink
out of it.

Only the standard library is imported: login shells parse passwd files.
"""

import errno
import fcntl
import os
import stat
import time

from jailtwist.errors import JailtwistError

#: The lock file of C{lckpwdf(3)}.
LOCK_NAME = ".pwd.lock"

#: How long to wait for the lock, as C{lckpwdf(3)} does.
LOCK_TIMEOUT = 15.0

_TEMP_MARK = ".jailtwist-new-"
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class AccountError(JailtwistError):
    """
    An account that cannot be used or an account file that cannot be edited.
    """


def _checkField(value, what):
    if not isinstance(value, str) or ":" in value or "\n" in value \
            or "\0" in value:
        raise AccountError(f"{what} {value!r} must not contain ':' or a "
                           f"line break")
    return value


class PasswdEntry:
    """
    One line of a C{passwd} file.
    """

    __slots__ = ("name", "password", "uid", "gid", "gecos", "home", "shell")

    def __init__(self, name, password, uid, gid, gecos, home, shell):
        self.name = _checkField(name, "user name")
        self.password = _checkField(password, "password field")
        self.uid = int(uid)
        self.gid = int(gid)
        self.gecos = _checkField(gecos, "GECOS field")
        self.home = _checkField(home, "home directory")
        self.shell = _checkField(shell, "shell")

    @classmethod
    def fromLine(cls, line):
        """
        @raise ValueError: for a line that is not a passwd entry.
        """
        fields = line.rstrip("\n").split(":")
        if len(fields) != 7 or not fields[0]:
            raise ValueError(f"not a passwd line: {line!r}")
        name, password, uid, gid, gecos, home, shell = fields
        if not (uid.isdigit() and gid.isdigit()):
            raise ValueError(f"bad uid or gid: {line!r}")
        return cls(name, password, int(uid), int(gid), gecos, home, shell)

    def toLine(self):
        return (f"{self.name}:{self.password}:{self.uid}:{self.gid}:"
                f"{self.gecos}:{self.home}:{self.shell}\n")

    def replace(self, **fields):
        values = {k: getattr(self, k) for k in self.__slots__}
        values.update(fields)
        return PasswdEntry(**values)

    def __eq__(self, other):
        return isinstance(other, PasswdEntry) and \
            other.toLine() == self.toLine()

    def __repr__(self):
        return f"PasswdEntry({self.toLine().rstrip()!r})"


class GroupEntry:
    """
    One line of a C{group} file.
    """

    __slots__ = ("name", "password", "gid", "members")

    def __init__(self, name, password, gid, members=()):
        self.name = _checkField(name, "group name")
        self.password = _checkField(password, "group password field")
        self.gid = int(gid)
        self.members = [_checkField(m, "group member") for m in members]
        for member in self.members:
            if "," in member or not member:
                raise AccountError(f"bad group member {member!r}")

    @classmethod
    def fromLine(cls, line):
        fields = line.rstrip("\n").split(":")
        if len(fields) != 4 or not fields[0] or not fields[2].isdigit():
            raise ValueError(f"not a group line: {line!r}")
        members = [m for m in fields[3].split(",") if m]
        return cls(fields[0], fields[1], int(fields[2]), members)

    def toLine(self):
        return (f"{self.name}:{self.password}:{self.gid}:"
                f"{','.join(self.members)}\n")

    def __repr__(self):
        return f"GroupEntry({self.toLine().rstrip()!r})"


def _parse(kind, text):
    entries = []
    for line in text.splitlines():
        if not line or line[0] in "#+-":
            continue
        try:
            entries.append(kind.fromLine(line))
        except (ValueError, AccountError):
            continue
    return entries


def parsePasswd(text):
    """
    The entries of a C{passwd} file; lines that are not entries (comments,
    NIS C{+}/C{-} lines, damaged lines) are skipped, never guessed at.

    @rtype: C{list} of L{PasswdEntry}
    """
    return _parse(PasswdEntry, text)


def parseGroup(text):
    """
    @rtype: C{list} of L{GroupEntry}
    """
    return _parse(GroupEntry, text)


def findEntry(entries, name=None, id=None):
    """
    The first entry called C{name} (if given) whose uid/gid is C{id} (if
    given), or C{None}.
    """
    for entry in entries:
        if name is not None and entry.name != name:
            continue
        if id is not None and \
                getattr(entry, "uid", getattr(entry, "gid", None)) != id:
            continue
        return entry
    return None


def decodeText(data, where):
    """
    Decode an account file; a file that is not text is refused.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AccountError(f"{where} is not a text file: repair it")


class PasswdLock:
    """
    The C{lckpwdf(3)} lock: an exclusive C{fcntl} lock on C{.pwd.lock} in
    an C{etc} directory, taken by every program that edits account files.
    Released when the process ends, however it ends.

    @ivar directory: the descriptor of the C{etc} directory (not owned).
    """

    def __init__(self, directory, timeout=LOCK_TIMEOUT, where="/etc"):
        self.directory = directory
        self.timeout = timeout
        self.where = where
        self._fd = None

    def __enter__(self):
        fd = os.open(LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=self.directory)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AccountError(
                        f"{self.where}/{LOCK_NAME} is locked by another "
                        f"program editing accounts (useradd, vipw...): "
                        f"wait for it to finish and try again")
                time.sleep(0.05)
        self._fd = fd
        removeStaleTemporaries(self.directory)
        return self

    def __exit__(self, *exc):
        os.close(self._fd)
        self._fd = None
        return False


def removeStaleTemporaries(directory):
    """
    Remove temporary files left by an edit that was killed; call only while
    holding the L{PasswdLock}, when no other edit can be under way.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                 dir_fd=directory)
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    for name in names:
        if _TEMP_MARK in name and name.startswith("."):
            try:
                os.unlink(name, dir_fd=directory)
            except FileNotFoundError:
                pass


def replaceFile(directory, name, data, mode=0o644, owner=(0, 0)):
    """
    Atomically replace C{name} in the directory descriptor C{directory} with
    C{data}.  An existing file keeps its mode and owner; a new one gets
    C{mode} and C{owner}.  The data and the rename reach the disk before
    this returns.
    """
    try:
        st = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise AccountError(f"{name} is not a regular file: refusing to "
                               f"replace it")
        mode = stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid)
    temp = f".{name}{_TEMP_MARK}{os.getpid()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600, dir_fd=directory)
    try:
        try:
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=directory)
        except OSError:
            pass
        raise
    syncDirectory(directory)


def requireRootDirectory(directory, where, exitCode=None):
    """
    Refuse the directory descriptor C{directory} unless it belongs to root
    and is not writable by group or others: a file written there decides
    what a jailed account may do, so the account must not be able to
    replace it.

    @param where: its path, for the message.
    @raise JailtwistError: one line saying how to fix it.
    """
    st = os.fstat(directory)
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise JailtwistError(
            f"{where} is not owned by root or is writable by group or "
            f"others: chown root:root and chmod 0755 it", exitCode)


def syncDirectory(directory):
    """
    Flush a directory (after a rename in it) to disk.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                 dir_fd=directory)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def readAt(directory, name, limit=64 * 1024 * 1024):
    """
    Read C{name} in the directory descriptor C{directory} (not through a
    symlink); a missing file reads as empty.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, dir_fd=directory)
    except FileNotFoundError:
        return b""
    except OSError as e:
        raise AccountError(f"cannot read {name}: {e.strerror} (it must be a "
                           f"regular file, not a symlink)")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AccountError(f"{name} is not a regular file")
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise AccountError(f"{name} is larger than {limit} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)


class AccountFiles:
    """
    The C{passwd} and C{group} files of one C{etc} directory (the host's
    C{/etc} or a jail's C{etc}), edited under the L{PasswdLock}.

    Use as a context manager: the lock is held from C{__enter__} to
    C{__exit__}; read with L{passwd}/L{group}, write with L{writePasswd}/
    L{writeGroup} (each an atomic replacement).

    @ivar where: the directory's path, for messages.
    """

    def __init__(self, directory, where, lock=True):
        self.directory = directory
        self.where = where
        self._lock = PasswdLock(directory, where=where) if lock else None

    @classmethod
    def openPath(cls, path, lock=True):
        """
        The account files of the directory at C{path} (not through a
        symlink at its last component).  Close with L{close}.
        """
        try:
            fd = os.open(path, _DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise AccountError(f"cannot open {path}: {e.strerror}")
        return cls(fd, path, lock)

    def close(self):
        if self.directory is not None:
            os.close(self.directory)
            self.directory = None

    def __enter__(self):
        if self._lock is not None:
            self._lock.__enter__()
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.__exit__(*exc)
        return False

    def _read(self, name):
        return decodeText(readAt(self.directory, name),
                          f"{self.where}/{name}")

    def passwd(self):
        return parsePasswd(self._read("passwd"))

    def group(self):
        return parseGroup(self._read("group"))

    def editPasswd(self, edit):
        """
        Rewrite C{passwd}: C{edit(entry)} returns the entry to keep (the
        same or a changed one) or C{None} to drop it.  Lines that are not
        entries are kept as they are.

        @param edit: called for every entry.
        """
        self._edit("passwd", PasswdEntry, edit)

    def editGroup(self, edit):
        self._edit("group", GroupEntry, edit)

    def appendPasswd(self, entries):
        self._append("passwd", entries)

    def appendGroup(self, entries):
        self._append("group", entries)

    def _edit(self, name, kind, edit):
        old = self._read(name)
        lines = []
        for line in old.splitlines(keepends=True):
            try:
                entry = kind.fromLine(line)
            except (ValueError, AccountError):
                lines.append(line)
                continue
            entry = edit(entry)
            if entry is not None:
                lines.append(entry.toLine())
        new = "".join(lines)
        if new != old:
            replaceFile(self.directory, name, new.encode("utf-8"))

    def _append(self, name, entries):
        if not entries:
            return
        old = self._read(name)
        if old and not old.endswith("\n"):
            old += "\n"
        new = old + "".join(entry.toLine() for entry in entries)
        replaceFile(self.directory, name, new.encode("utf-8"))
