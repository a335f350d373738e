# -*- test-case-name: tests.test_registry -*-
"""
The registry of running jails.

Linux has no kernel jail id, so jailtwist keeps one: every jail launched by
jailtwist (C{jk_chrootlaunch}) gets a jid (an integer that is never reused
while the registry directory lives) and a unique name.  The state lives
under C{/run/jailtwist/jails/}, one JSON file per jail named after its jid,
each written to a temporary file and renamed into place (a reader never sees
half a record); jid allocation and name uniqueness are serialised with an
C{flock} on C{.lock} there.

A record is alive while its init process runs: the pid I{and} its start time
(field 22 of C{/proc/PID/stat}) must match, so a reused pid never keeps a
dead jail's record alive.  L{JailRegistry.entries} prunes the others.

Other tools name a jail by jid, name or the pid of any process inside it;
L{JailRegistry.resolve} turns any of these into a pinned
L{jailtwist.enter.JailProcess} (pid, pidfd, host root path) that
L{jailtwist.enter.joinJail} can join:

  - C{3} or C{"3"} or C{"jid:3"}: the jail with jid 3;
  - C{"web"} or C{"name:web"}: the jail named C{web};
  - C{"pid:1234"}: the jail that process 1234 runs in (registered or not).

Nothing here needs privileges except writing the registry (root), and
nothing imports Twisted, C{re} or C{json}'s Python layer: jk_chrootlaunch
and jk_list read and write the registry on every run (see L{_loads}).
"""

import fcntl
import os
import time

from jailtwist.enter import EnterError, pinProcess, processStartTime
from jailtwist.errors import JailtwistError
from jailtwist.jail import hasBindList

DEFAULT_ROOT = "/run/jailtwist"

_NAME_START = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARACTERS = _NAME_START | frozenset("_.-")


def _usableName(name):
    return (0 < len(name) <= 64 and name[0] in _NAME_START
            and _NAME_CHARACTERS.issuperset(name) and not name.isdigit())


def _dumps(data):
    """
    C{json.dumps(data, sort_keys=True)} for a record (a dict of str, bool,
    int, float and lists of str), written with json's own C string encoder.
    """
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        import json
        return json.dumps(data, sort_keys=True)

    def value(v):
        if isinstance(v, str):
            return quote(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(each) for each in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        raise TypeError(f"cannot store {v!r} in a registry record")
    return "{" + ", ".join(f"{quote(key)}: {value(data[key])}"
                           for key in sorted(data)) + "}"


class _Strict:
    # What json.JSONDecoder() hands its C scanner.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name):
        return {"-Infinity": float("-inf"), "Infinity": float("inf"),
                "NaN": float("nan")}[name]


def _loads(text):
    """
    C{json.loads(text)}, through the C scanner json.loads itself uses:
    json's Python modules import C{re} and C{enum}, about 9 ms of a launch
    that otherwise takes twenty.

    @raise ValueError: if C{text} is not one JSON document.
    """
    try:
        from _json import make_scanner
    except ImportError:
        import json
        return json.loads(text)
    text = text.strip(" \t\n\r")
    try:
        value, end = make_scanner(_Strict())(text, 0)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if end != len(text):
        raise ValueError("extra data after the JSON document")
    return value


class JailRecord:
    """
    One registered jail.

    @ivar jid: its jail id (C{int}).
    @ivar name: its unique name.
    @ivar path: the jail's directory on the host.
    @ivar initPid: the host pid of its first process (the init of its pid
        namespace, or the program itself without one).
    @ivar isolation: what isolation is on, as short strings (C{"caps"},
        C{"nnp"}, C{"pid"}, C{"ipc"}, C{"uts"}, C{"net:none"},
        C{"net:192.0.2.2"}, C{"fs"}); empty for a plain chroot.
    @ivar startTime: the init's start time in clock ticks since boot.
    @ivar created: when it was registered (seconds since the epoch).
    @ivar bind: whether the jail is assembled from read-only binds of host
        paths (it has a bind list, L{jailtwist.bindlist}) rather than
        holding copies.
    """

    def __init__(self, jid, name, path, initPid, isolation, startTime,
                 created, bind=False):
        self.jid = jid
        self.name = name
        self.path = path
        self.initPid = initPid
        self.isolation = list(isolation)
        self.startTime = startTime
        self.created = created
        self.bind = bind

    def __repr__(self):
        return (f"JailRecord(jid={self.jid}, name={self.name!r}, "
                f"path={self.path!r}, initPid={self.initPid}, "
                f"isolation={self.isolation!r})")

    def __eq__(self, other):
        return isinstance(other, JailRecord) and self.asDict() == other.asDict()

    def alive(self):
        """
        @return: whether the jail's init still runs (same pid, same start
            time).
        """
        return processStartTime(self.initPid) == self.startTime

    def asDict(self):
        return {"jid": self.jid, "name": self.name, "path": self.path,
                "initPid": self.initPid, "isolation": self.isolation,
                "startTime": self.startTime, "created": self.created,
                "bind": self.bind}

    @classmethod
    def fromDict(cls, data):
        return cls(int(data["jid"]), str(data["name"]), str(data["path"]),
                   int(data["initPid"]), [str(i) for i in data["isolation"]],
                   int(data["startTime"]), float(data["created"]),
                   bool(data.get("bind", False)))


def checkName(name):
    """
    @raise JailtwistError: if C{name} cannot name a jail (it must start with
        a letter or digit, use only letters, digits, C{_ . -}, be at most 64
        characters and not be all digits, which would read as a jid).
    """
    if not _usableName(name):
        raise JailtwistError(
            f"jail name {name!r} is not usable: use up to 64 letters, digits,"
            f" '_', '.' or '-', starting with a letter or digit and not all "
            f"digits")


class JailRegistry:
    """
    The running jails, stored under C{root/jails}.

    @ivar root: the state directory (a path or L{FilePath});
        C{/run/jailtwist} by default, injectable for tests.
    @ivar jails: the directory of the records (a C{str}).
    """

    def __init__(self, root=None, clock=time.time):
        if root is None:
            root = DEFAULT_ROOT
        self.root = root
        self.jails = os.path.join(getattr(root, "path", root), "jails")
        self._clock = clock

    @property
    def directory(self):
        """
        L{jails} as a L{twisted.python.filepath.FilePath}.
        """
        from twisted.python.filepath import FilePath
        return FilePath(self.jails)

    def _record(self, name):
        return os.path.join(self.jails, name)

    # -- writing ---------------------------------------------------------------

    def _lock(self):
        os.makedirs(self.jails, exist_ok=True)
        fd = os.open(self._record(".lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def register(self, path, initPid, isolation=(), name=None):
        """
        Record a newly launched jail.

        @param path: the jail's host directory.
        @param initPid: the host pid of its first process.
        @param isolation: see L{JailRecord.isolation}.
        @param name: a unique name, or C{None} for the jail directory's
            base name (with C{-2}, C{-3}... appended if that is taken).
        @return: the new L{JailRecord}.
        @raise JailtwistError: if C{name} is unusable or already names a
            running jail, or C{initPid} is not running.
        """
        startTime = processStartTime(initPid)
        if startTime is None:
            raise JailtwistError(f"process {initPid} is not running: "
                                 f"nothing to register")
        lock = self._lock()
        try:
            live = self._prune(self._load())
            taken = {record.name for record in live}
            if name is None:
                base = os.path.basename(path.rstrip("/")) or "jail"
                base = "".join(c if c in _NAME_CHARACTERS else "_"
                               for c in base)[:56]
                if not _usableName(base):
                    base = "jail-" + base
                name, n = base, 1
                while name in taken:
                    n += 1
                    name = f"{base}-{n}"
            else:
                checkName(name)
                if name in taken:
                    raise JailtwistError(
                        f"a running jail is already named {name!r}: choose "
                        f"another name")
            jid = self._nextJid()
            record = JailRecord(jid, name, path, initPid, isolation,
                                startTime, self._clock(),
                                bind=hasBindList(path))
            self._write(record)
            return record
        finally:
            os.close(lock)

    def _nextJid(self):
        counter = self._record(".next-jid")
        try:
            with open(counter, "rb") as f:
                jid = int(f.read().decode().strip() or 1)
        except (FileNotFoundError, ValueError):
            jid = 1
        for record in self._load():
            jid = max(jid, record.jid + 1)
        self._atomicWrite(counter, f"{jid + 1}\n".encode())
        return jid

    def _atomicWrite(self, target, data):
        directory, name = os.path.split(target)
        temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)

    def _write(self, record):
        self._atomicWrite(self._record(f"{record.jid}.json"),
                          _dumps(record.asDict()).encode() + b"\n")

    def unregister(self, jid):
        """
        Forget jail C{jid} (nothing happens if it is not registered).
        """
        lock = self._lock()
        try:
            try:
                os.unlink(self._record(f"{int(jid)}.json"))
            except FileNotFoundError:
                pass
        finally:
            os.close(lock)

    # -- reading ---------------------------------------------------------------

    def _load(self):
        records = []
        try:
            names = os.listdir(self.jails)
        except FileNotFoundError:
            return records
        for name in names:
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            try:
                with open(self._record(name)) as f:
                    records.append(JailRecord.fromDict(_loads(f.read())))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        records.sort(key=lambda record: record.jid)
        return records

    def _prune(self, records):
        live = []
        for record in records:
            if record.alive():
                live.append(record)
                continue
            try:
                os.unlink(self._record(f"{record.jid}.json"))
            except OSError:
                pass
        return live

    def entries(self):
        """
        @return: the running jails' L{JailRecord}s, by jid; records whose
            init is gone are removed (when we may) and never returned.
        """
        return self._prune(self._load())

    def lookup(self, spec):
        """
        Find a running jail by jid or name (see the module docstring).

        @return: its L{JailRecord}.
        @raise JailtwistError: if there is none.
        """
        kind, value = _parseSpec(spec)
        if kind == "pid":
            record = self.findByPid(value)
            if record is None:
                raise JailtwistError(f"process {value} is not in a jail "
                                     f"registered by jailtwist")
            return record
        for record in self.entries():
            if (kind == "jid" and record.jid == value) or \
                    (kind == "name" and record.name == value):
                return record
        what = f"jid {value}" if kind == "jid" else f"name {value!r}"
        raise JailtwistError(f"no running jail with {what}: see jk_list")

    def findByPid(self, pid):
        """
        @return: the running jail that process C{pid} is in, or C{None}.  A
            process is in a jail if its root directory is the jail's, or it
            shares the pid (or mount) namespace of a jail that has its own.
        """
        try:
            root = os.stat(f"/proc/{pid}/root")
        except OSError:
            return None
        namespaces = {}
        for name in ("pid", "mnt"):
            try:
                namespaces[name] = os.stat(f"/proc/{pid}/ns/{name}").st_ino
            except OSError:
                pass
        for record in self.entries():
            try:
                jail = os.stat(record.path)
            except OSError:
                jail = None
            if jail is not None and (jail.st_dev, jail.st_ino) == \
                    (root.st_dev, root.st_ino):
                return record
            for name, isolation in (("pid", "pid"), ("mnt", "fs")):
                if isolation not in record.isolation or name not in namespaces:
                    continue
                try:
                    theirs = os.stat(f"/proc/{record.initPid}/ns/{name}")
                except OSError:
                    continue
                if theirs.st_ino == namespaces[name]:
                    return record
        return None

    def resolve(self, spec):
        """
        Pin a process of the jail named by C{spec} (jid, name or
        C{"pid:N"}) so it can be joined.

        @return: a L{jailtwist.enter.JailProcess} (close it when done) with C{root} set to
            the jail's host path and C{record} to its L{JailRecord} (C{None}
            for a process in a jail jailtwist did not launch).
        @raise JailtwistError: if there is no such jail, or the process is
            not in a jail.
        """
        kind, value = _parseSpec(spec)
        if kind != "pid":
            record = self.lookup(spec)
            process = pinProcess(record.initPid, record.path, record)
            # The pidfd pins whatever process has that pid now: it must
            # still be the init that was registered.
            if processStartTime(record.initPid) != record.startTime:
                process.close()
                raise JailtwistError(f"jail {record.name} (jid {record.jid})"
                                     f" has stopped")
            return process
        process = pinProcess(value)
        try:
            record = self.findByPid(value)
            if record is not None:
                process.root, process.record = record.path, record
            else:
                process.root = _unregisteredRoot(value)
            if not process.alive():
                raise EnterError("pin", f"process {value} has exited")
        except BaseException:
            process.close()
            raise
        return process


def _unregisteredRoot(pid):
    try:
        root = os.readlink(f"/proc/{pid}/root")
        theirs = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        ours = os.stat("/proc/self/ns/mnt").st_ino
    except OSError as e:
        raise JailtwistError(f"cannot see where process {pid} runs: "
                             f"{e.strerror}") from None
    if root == "/":
        if theirs == ours:
            raise JailtwistError(f"process {pid} is not in a jail (its root "
                                 f"is /)")
        return None
    return root


def _parseSpec(spec):
    if isinstance(spec, int):
        return "jid", spec
    text = str(spec)
    for prefix in ("jid:", "pid:"):
        if text.startswith(prefix):
            number = text[len(prefix):]
            if not number.isdigit():
                raise JailtwistError(f"{text!r}: {prefix[:-1]} must be a "
                                     f"number")
            return prefix[:-1], int(number)
    if text.startswith("name:"):
        return "name", text[5:]
    if text.isdigit():
        return "jid", int(text)
    if not text:
        raise JailtwistError("empty jail name: give a jid, a name or pid:N")
    return "name", text

