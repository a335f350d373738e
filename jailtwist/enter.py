# -*- test-case-name: tests.test_enter -*-
"""
Entering jails: the one module of jailtwist that makes privileged or
low-level calls (unshare, setns, mount, pivot_root, chroot, capabilities,
no_new_privs, uid/gid switching, network plumbing).  Everything else -- the
login shells, jk_chrootlaunch, the probes of jaildaemon, skd -- enters a jail
through the functions below, so this is the file to audit.

Entry points
============

  - L{enterAsUser}C{(jail, home, namespaces=(), uid=None, gid=None)} --
    logins (jk_chrootsh, jk_uchroot).  Run by an unprivileged user: a new
    user and mount namespace mapping only the caller's own uid and gid
    (setgroups denied), optional C{net}/C{ipc}/C{uts} namespaces, chroot into
    the jail, chdir to the home, C{PR_SET_NO_NEW_PRIVS}, every capability
    dropped; the caller then execs.  Run as root: a plain chroot and a
    C{setgroups([])}/C{setgid}/C{setuid} switch to C{uid}/C{gid}.  When the
    kernel refuses an unprivileged user namespace, L{UserNamespaceRefused}
    says why in one line and names the setting to change.

  - L{assembleBinds}C{(rootFd, prepared)} (with L{cloneBinds} and
    L{attachBinds}, L{enterBindJailNamespace}) -- every way into a bind jail
    (C{jk_init --bind}): in the entry's private mount namespace, bind each
    host path checked and pinned by L{jailtwist.bindlist.prepareBinds}
    read-only, nosuid and nodev on its mount point before the root changes.

  - L{enterForAccount}C{(jail, home, uid, gid, groups)} -- the root login
    service (for logins where no user namespace can be made), in the fresh
    process it spawns: chroot, empty bounding set, the account's ids and
    groups, no capabilities, no_new_privs, then chdir as the account.

  - L{pinProcess}C{(pid)} / L{joinJail}C{(process, ...)} -- probes
    (jaildaemon).  Join a running jail given by any process in it: the
    process is pinned by a pidfd so a reused pid never attaches to the wrong
    jail, its root directory is opened, and C{setns(pidfd, ...)} joins its
    user (only if it differs), mount, pid, net, ipc and uts namespaces in one
    atomic call (Linux >= 5.8); then C{chroot} to its root.  B{Joining a pid
    namespace only affects children}: fork after L{joinJail}; the child is
    the one inside the jail's pid namespace.  Call it in a single-threaded
    (freshly forked) process: the kernel refuses to move a threaded process
    into another user or mount namespace.

  - L{confine}C{(Confinement(...))} -- skd and any forked child before exec:
    chroot, chdir, capability ceiling (bounding set, ambient and inheritable
    sets), C{setgroups}/C{setgid}/C{setuid}, no_new_privs.  Nothing in it
    allocates much or takes locks, so it is safe between C{fork} and C{exec}.

  - L{launch}C{(LaunchSpec(...))} -- jk_chrootlaunch.  jailkit's plain chroot
    launch (exec in place) or, with any namespace asked for, the jail call:
    pid namespace with a fresh C{/proc} and a small init that reaps and
    forwards signals, ipc/uts namespaces, a network namespace with a veth
    pair and exactly one address (or no network), a mount namespace in which
    the jail becomes the root with C{pivot_root}, C{/proc/sys} read-only and
    a C{/dev} holding only null, zero, full, random, urandom, tty and the
    jail's log socket.

  - L{confineRelay}C{(syslogPath, user)} -- jk_socketd: chroot into the
    directory of the host syslog socket and become C{user} with no groups.

  - L{parseCapabilities}, L{DEFAULT_CEILING}, L{capabilityNames},
    L{setDeathSignal}, L{setDumpable} -- small pieces for the above users.

Why ctypes and not a library
============================
Python 3.11 has no C{os.unshare}/C{os.setns} (3.12 added them) and nothing
for C{mount}, C{pivot_root}, C{capset} or the capability bounding set.  The
candidates were python-prctl (a C extension over libcap: capabilities and
prctl only, last release 2021, needs libcap-dev to build from PyPI),
pyroute2 (netlink only) and the stdlib.  ctypes on the libc already loaded in
the interpreter (C{CDLL(None)}, no library search, a few milliseconds to
import) covers every call with about fifteen small wrappers that are all in
this file, each checked for errors and each documented with the kernel
interface it uses; no new dependency has to be built, installed or audited.
Calls libc has no wrapper for (C{pivot_root}, C{open_tree}, C{move_mount})
go through C{syscall(2)} with the numbers of the running architecture.

Why iproute2 and not pyroute2
=============================
A jail's network is four to six commands run once per launch (create a veth
pair whose jail end is created directly inside the jail's namespace, address
and route both ends).  iproute2's C{ip} is already a runtime dependency,
is what administrators read and debug with, and its command lines are
logged verbatim in errors.  pyroute2 would add a large pure-Python dependency
(and its import time) for those few calls.  C{ip} is run by absolute path
with an empty environment, never through a shell.

Nothing here imports Twisted: login shells import this module.  Signals
are handled through C{_signal}, the C module under C{signal}: the same
functions and numbers without C{signal}'s enum wrappers, whose import
(C{enum}) would cost every login and launch about 5 ms.
"""

import _signal as signal
import ctypes
import errno
import os
import stat

from jailtwist.errors import JailtwistError

# -- kernel constants ------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Namespace names as in /proc/PID/ns, in the order setns needs them joined
# one by one (user first so its capabilities apply to the rest, mnt last so
# /proc/PID paths still resolve on the host until the end).
NAMESPACES = (("user", CLONE_NEWUSER), ("ipc", CLONE_NEWIPC),
              ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("pid", CLONE_NEWPID), ("cgroup", CLONE_NEWCGROUP),
              ("mnt", CLONE_NEWNS))
_NAMESPACE_FLAGS = dict(NAMESPACES)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004

# syscall numbers libc has no wrapper for.  open_tree and move_mount were
# added after the syscall tables were unified (same number everywhere but
# alpha); pivot_root differs per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41,
                   "ppc64le": 203, "s390x": 217, "i686": 217, "i386": 217,
                   "armv7l": 218}
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219,
               "ppc64le": 271, "s390x": 280, "i686": 288, "i386": 288,
               "armv7l": 311}
KEYCTL_JOIN_SESSION_KEYRING = 1

# Capability numbers (linux/capability.h), index = number.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
    "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
    "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
_CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITIES)}

# The ceiling for a jailed root when none is named: what an ordinary daemon
# started as root needs to set itself up (bind a low port, chown its files,
# switch to its own user, signal its children).  Everything that reaches the
# kernel, the hardware, the host's network or other processes' memory stays
# out: SYS_MODULE SYS_RAWIO MKNOD NET_ADMIN SYS_ADMIN SYS_BOOT SYS_TIME
# SYS_PTRACE MAC_ADMIN MAC_OVERRIDE AUDIT_CONTROL SYSLOG DAC_READ_SEARCH, and
# also SYS_CHROOT (the classic chroot escape), NET_RAW (forged packets),
# LINUX_IMMUTABLE, IPC_OWNER, SYS_PACCT, SYS_NICE, SYS_RESOURCE, LEASE,
# SETFCAP, BPF, PERFMON, CHECKPOINT_RESTORE and the rest.
DEFAULT_CEILING = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "NET_BIND_SERVICE", "AUDIT_WRITE"})

# The exit statuses jailkit's jk_chrootlaunch uses for each step (callers
# may use their own; EnterError.step names the step).
STEP_EXIT_CODES = {"chdir": 33, "chroot": 35, "setgid": 37, "setuid": 39,
                   "exec": 31}
ISOLATION_EXIT_CODE = 45


class EnterError(JailtwistError):
    """
    A step of entering a jail failed.

    @ivar step: which step: C{"unshare"}, C{"setns"}, C{"chroot"},
        C{"chdir"}, C{"mount"}, C{"pivot_root"}, C{"network"},
        C{"capabilities"}, C{"setgroups"}, C{"setgid"}, C{"setuid"},
        C{"exec"}, C{"pin"} -- callers map it to their own exit codes.
    @ivar errno: the kernel's error number, or C{None}.
    """

    def __init__(self, step, message, errno=None, exitCode=None):
        if exitCode is None:
            exitCode = STEP_EXIT_CODES.get(step, ISOLATION_EXIT_CODE)
        super().__init__(message, exitCode)
        self.step = step
        self.errno = errno


class UserNamespaceRefused(EnterError):
    """
    The kernel refused an unprivileged user namespace; the message names the
    cause and the setting that controls it.
    """


# -- libc ------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_c_ulong = ctypes.c_ulong
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
# Only the request is passed (NS_GET_PARENT takes no argument).
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        _c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, _c_ulong, _c_ulong, _c_ulong,
                        _c_ulong]
_libc.syscall.restype = ctypes.c_long


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc.capget.argtypes = [ctypes.POINTER(_CapHeader),
                         ctypes.POINTER(_CapData)]
_libc.capset.argtypes = [ctypes.POINTER(_CapHeader),
                         ctypes.POINTER(_CapData)]


def _check(result, call, *args):
    if result == -1:
        number = ctypes.get_errno()
        raise OSError(number, f"{call}: {os.strerror(number)}",
                      *[a for a in args[:1]])
    return result


def _path(value):
    if value is None:
        return None
    return os.fsencode(value)


def unshare(flags):
    """
    C{unshare(2)}: move this process into new namespaces (for
    C{CLONE_NEWPID}, its future children).
    """
    _check(_libc.unshare(flags), "unshare")


def setns(fd, nstype=0):
    """
    C{setns(2)} with a namespace file or (Linux >= 5.8) a pidfd and several
    C{CLONE_NEW*} flags at once.
    """
    _check(_libc.setns(fd, nstype), "setns")


def mount(source, target, fstype, flags=0, data=None):
    """
    C{mount(2)}.
    """
    _check(_libc.mount(_path(source), _path(target), _path(fstype), flags,
                       _path(data)), "mount", target)


def umount(target, flags=0):
    """
    C{umount2(2)}.
    """
    _check(_libc.umount2(_path(target), flags), "umount2", target)


def _syscall(number, *args):
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


def pivotRoot(newRoot, putOld):
    """
    C{pivot_root(2)}.
    """
    machine = os.uname().machine
    if machine not in _SYS_PIVOT_ROOT:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture "
                                    f"{machine}")
    _syscall(_SYS_PIVOT_ROOT[machine], ctypes.c_char_p(_path(newRoot)),
             ctypes.c_char_p(_path(putOld)))


def newSessionKeyring():
    """
    C{keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)}: leave the inherited
    session keyring (the launching administrator's: Kerberos tickets,
    encryption keys) for a new, empty, anonymous one.  Kernels without keys
    support are fine: there is nothing to leave.
    """
    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return
    try:
        _syscall(number, ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                 ctypes.c_void_p(None))
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise EnterError("unshare", f"cannot leave the session keyring: "
                                        f"{e.strerror}", e.errno) from None


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """
    C{prctl(2)}; returns its result.
    """
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


def setDeathSignal(signum):
    """
    C{PR_SET_PDEATHSIG}: receive C{signum} when the parent dies.
    """
    prctl(PR_SET_PDEATHSIG, signum)


def restoreExecSignals(extra=()):
    """
    Before an exec: put back the dispositions Python changed at start-up
    (C{SIGPIPE} and C{SIGXFSZ} ignored, which an exec keeps) and those of
    C{extra}, and empty the signal mask; a program must not start with a
    pipe's end ignored.
    """
    for signum in (signal.SIGPIPE, signal.SIGXFSZ) + tuple(extra):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def setDumpable(dumpable):
    """
    C{PR_SET_DUMPABLE}: a non-dumpable process cannot be ptraced by its own
    uid, and its C{/proc/PID} files (exe, environ, maps, fd) are root's.
    """
    prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)


def setProcessTitle(title):
    """
    Make C{/proc/PID/cmdline} and C{comm} of this process read C{title}
    (cut to what fits): the command line is rewritten in place in the
    memory the kernel reads it from (Python works on its own copy of
    C{argv}).  A jail's init uses it so that the jail does not see the
    launcher's command line with its host paths.
    """
    data = title.encode("utf-8", "replace")
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    argStart, argEnd = int(fields[45]), int(fields[46])
    size = argEnd - argStart
    if 2 <= size <= 1 << 20:
        shown = data[:size - 1]
        ctypes.memmove(argStart, shown + bytes(size - len(shown)), size)
    with open("/proc/self/comm", "wb") as f:
        f.write(data[:15])


def setNoNewPrivs():
    """
    C{PR_SET_NO_NEW_PRIVS}: no exec of this process or its descendants can
    gain privileges again (setuid bits and file capabilities are ignored).
    """
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def noNewPrivs():
    """
    @return: whether C{PR_SET_NO_NEW_PRIVS} is set on this process.
    """
    return bool(prctl(PR_GET_NO_NEW_PRIVS))


# -- capabilities ------------------------------------------------------------

def capabilityNames(numbers):
    """
    @return: the sorted names (without C{CAP_}) of capability C{numbers}.
    """
    return sorted(CAPABILITIES[n] if n < len(CAPABILITIES) else f"CAP_{n}"
                  for n in numbers)


def parseCapabilities(text):
    """
    Parse a capability list: names with or without C{CAP_}, any case,
    separated by commas or spaces; C{default} stands for L{DEFAULT_CEILING},
    C{none} for the empty set, C{all} for every capability.

    @return: a C{frozenset} of names without C{CAP_}.
    @raise JailtwistError: for an unknown name, naming it.
    """
    names = set()
    for word in text.replace(",", " ").split():
        upper = word.upper()
        if upper.startswith("CAP_"):
            upper = upper[4:]
        if upper == "DEFAULT":
            names |= DEFAULT_CEILING
        elif upper == "NONE":
            continue
        elif upper == "ALL":
            names |= set(CAPABILITIES)
        elif upper in _CAPABILITY_NUMBERS:
            names.add(upper)
        else:
            raise JailtwistError(
                f"unknown capability {word!r}: use names such as "
                f"NET_BIND_SERVICE or CAP_CHOWN, or 'default' / 'none'")
    return frozenset(names)


def _lastCapability():
    # PR_CAPBSET_READ answers EINVAL past the kernel's last capability;
    # this works without /proc (after pivot_root).
    last = len(CAPABILITIES) - 1
    while last > 0:
        try:
            prctl(PR_CAPBSET_READ, last)
            break
        except OSError:
            last -= 1
    while True:
        try:
            prctl(PR_CAPBSET_READ, last + 1)
        except OSError:
            return last
        last += 1


def boundingSet():
    """
    @return: the set of capability numbers in this process's bounding set.
    """
    return {n for n in range(_lastCapability() + 1)
            if prctl(PR_CAPBSET_READ, n)}


def getCapabilities():
    """
    C{capget(2)} for this process.

    @return: C{(effective, permitted, inheritable)} as sets of numbers.
    """
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    sets = []
    for name in ("effective", "permitted", "inheritable"):
        bits = getattr(data[0], name) | (getattr(data[1], name) << 32)
        sets.append({n for n in range(64) if bits & (1 << n)})
    return tuple(sets)


def setCapabilities(effective, permitted, inheritable):
    """
    C{capset(2)} for this process; each argument a set of numbers.
    """
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for name, numbers in (("effective", effective),
                          ("permitted", permitted),
                          ("inheritable", inheritable)):
        bits = 0
        for n in numbers:
            bits |= 1 << n
        setattr(data[0], name, bits & 0xffffffff)
        setattr(data[1], name, bits >> 32)
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _numbers(names):
    return {_CAPABILITY_NUMBERS[name] for name in names}


def limitCapabilities(keep):
    """
    Make C{keep} (names) the ceiling of this process and its descendants:
    every other capability leaves the bounding set (so no exec, setuid-root
    program or file capability can bring it back), the ambient set is
    cleared, and the effective, permitted and inheritable sets are cut down
    to C{keep}.  Needs C{CAP_SETPCAP}; to give up root as well, use
    L{confine}, which switches the uid between the two halves.
    """
    limitBoundingSet(keep)
    trimCapabilities(keep)


def limitBoundingSet(keep):
    """
    Remove every capability not named in C{keep} from the bounding set and
    clear the ambient set; the effective and permitted sets are untouched
    (so a following C{setuid} still works).
    """
    keepNumbers = _numbers(keep)
    try:
        for number in range(_lastCapability() + 1):
            if number not in keepNumbers:
                prctl(PR_CAPBSET_DROP, number)
        try:
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError as e:
            if e.errno != errno.EINVAL:   # kernels before 4.3
                raise
    except OSError as e:
        raise EnterError("capabilities",
                         f"cannot limit the capability bounding set: "
                         f"{e.strerror}", e.errno) from None


def trimCapabilities(keep):
    """
    Cut the effective and permitted sets down to C{keep} (names) and empty
    the inheritable set.
    """
    keepNumbers = _numbers(keep)
    try:
        effective, permitted, inheritable = getCapabilities()
        setCapabilities(effective & keepNumbers, permitted & keepNumbers,
                        set())
    except OSError as e:
        raise EnterError("capabilities", f"cannot drop capabilities: "
                                         f"{e.strerror}", e.errno) from None


# -- users --------------------------------------------------------------------

def switchUser(uid, gid, groups=()):
    """
    Become C{uid}/C{gid} with exactly the supplementary C{groups} (none by
    default: jailkit kept the caller's, root's gid 0 included).
    """
    try:
        os.setgroups(list(groups))
    except OSError as e:
        raise EnterError("setgid", f"setgroups({list(groups)}) failed: "
                                   f"{e.strerror}", e.errno) from None
    _setIds(uid, gid)


def _setIds(uid, gid):
    """
    Set real, effective and saved gid, then uid (the gid first: after the
    uid change it would no longer be allowed).
    """
    try:
        os.setresgid(gid, gid, gid)
    except OSError as e:
        raise EnterError("setgid", f"setgid({gid}) failed: {e.strerror}",
                         e.errno) from None
    try:
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise EnterError("setuid", f"setuid({uid}) failed: {e.strerror}",
                         e.errno) from None


# -- confinement (skd, jk_chrootlaunch, forked children) ------------------------

class Confinement:
    """
    What L{confine} does to the calling process, in this order: chroot,
    chdir, capability bounding set, uid/gid switch, remaining capabilities,
    no_new_privs.

    @ivar root: the jail to chroot into (a host path), an open directory
        descriptor of it, or C{None} to stay.
    @ivar cwd: the directory to change to afterwards (inside the jail).
    @ivar uid: the uid to become, or C{None} to stay.
    @ivar gid: the gid to become (defaults to C{uid} when only that is
        given).
    @ivar groups: the supplementary groups to have; none by default.
    @ivar capabilities: names (see L{parseCapabilities}) to keep in the
        bounding set, or C{None} to leave the bounding set alone (jailkit's
        behaviour).  A process that becomes non-root loses its effective
        capabilities anyway; the bounding set is what stops setuid-root
        programs inside the jail from getting them back.
    @ivar noNewPrivs: set C{PR_SET_NO_NEW_PRIVS} (setuid programs in the
        jail then run with the caller's privileges).
    @ivar syscallFilter: install L{installSyscallFilter}'s filter (what a
        capability ceiling for a jailed root comes with).
    """

    def __init__(self, root=None, cwd="/", uid=None, gid=None, groups=(),
                 capabilities=None, noNewPrivs=False, syscallFilter=False):
        self.root = root
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.groups = tuple(groups)
        self.capabilities = (None if capabilities is None
                             else frozenset(capabilities))
        self.noNewPrivs = noNewPrivs
        self.syscallFilter = syscallFilter

    def __repr__(self):
        return (f"Confinement(root={self.root!r}, cwd={self.cwd!r}, "
                f"uid={self.uid!r}, gid={self.gid!r}, groups={self.groups!r},"
                f" capabilities={self.capabilities!r}, "
                f"noNewPrivs={self.noNewPrivs!r}, "
                f"syscallFilter={self.syscallFilter!r})")


def chrootInto(root):
    """
    C{chroot} into C{root} (a path or an open directory descriptor), leaving
    the working directory at the new root.
    """
    try:
        if isinstance(root, int):
            os.fchdir(root)
            os.chroot(".")
        else:
            os.chdir(root)
            os.chroot(root)
        os.chdir("/")
    except OSError as e:
        raise EnterError("chroot", f"could not change root to {root}: "
                                   f"{e.strerror}", e.errno) from None


def confine(confinement):
    """
    Apply a L{Confinement} to the calling process (typically a forked child
    about to exec).

    @raise EnterError: naming the step that failed.
    """
    c = confinement
    if c.root is not None:
        chrootInto(c.root)
    if c.cwd:
        try:
            os.chdir(c.cwd)
        except OSError as e:
            raise EnterError("chdir", f"chdir({c.cwd}) failed inside the "
                                      f"jail: {e.strerror}", e.errno) from None
    if c.capabilities is not None:
        limitBoundingSet(c.capabilities)
    if c.syscallFilter:
        # Still root here, so no no_new_privs is needed for it.
        installSyscallFilter()
    elif c.root is not None:
        installJoinFilter()
    if c.uid is not None:
        switchUser(c.uid, c.gid if c.gid is not None else c.uid, c.groups)
    elif c.gid is not None:
        try:
            os.setgroups(list(c.groups))
            os.setresgid(c.gid, c.gid, c.gid)
        except OSError as e:
            raise EnterError("setgid", f"setgid({c.gid}) failed: "
                                       f"{e.strerror}", e.errno) from None
    if c.capabilities is not None:
        trimCapabilities(c.capabilities)
    if c.noNewPrivs:
        setNoNewPrivs()


# -- the syscall filter of a jail with a capability ceiling ------------------
#
# Capabilities do not cover three ways a jailed root reaches past its jail
# without a user namespace: the kernel keyrings are per uid, not per jail
# (uid 0 in the jail reads and writes the host root's user and persistent
# keyrings); a new user namespace gives back every capability inside it (and
# the kernel's attack surface that comes with one); and a setuid-root file
# made in the jail is setuid root for host users who can reach the jail's
# directory.  A seccomp filter refuses exactly those calls, as Docker's
# default profile (keyrings, user namespaces) and systemd's RestrictSUIDSGID=
# do.  io_uring is refused too, since its operations bypass the filter.

SECCOMP_SET_MODE_FILTER = 1
_SYS_SECCOMP = {"x86_64": 317}
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_BPF_LD_ABS = 0x20   # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE = 0x35      # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET = 0x45     # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET = 0x06      # BPF_RET | BPF_K
_SETID_MODE = 0o6000
_CREATES = os.O_CREAT | 0o20000000   # O_CREAT or __O_TMPFILE

#: (syscall number, [(argument index, mask), ...], errno) on x86_64: the
#: call is refused when every listed argument has a bit of its mask set.
_FILTERED_X86_64 = (
    (248, (), errno.EPERM),                          # add_key
    (249, (), errno.EPERM),                          # request_key
    (250, (), errno.EPERM),                          # keyctl
    (272, ((0, CLONE_NEWUSER),), errno.EPERM),       # unshare
    (56, ((0, CLONE_NEWUSER),), errno.EPERM),        # clone
    (435, (), errno.ENOSYS),                         # clone3: flags unseen
    (90, ((1, _SETID_MODE),), errno.EPERM),          # chmod
    (91, ((1, _SETID_MODE),), errno.EPERM),          # fchmod
    (268, ((2, _SETID_MODE),), errno.EPERM),         # fchmodat
    (452, ((2, _SETID_MODE),), errno.EPERM),         # fchmodat2
    (2, ((1, _CREATES), (2, _SETID_MODE)), errno.EPERM),    # open
    (257, ((2, _CREATES), (3, _SETID_MODE)), errno.EPERM),  # openat
    (85, ((1, _SETID_MODE),), errno.EPERM),          # creat
    (133, ((1, _SETID_MODE),), errno.EPERM),         # mknod
    (259, ((2, _SETID_MODE),), errno.EPERM),         # mknodat
    (437, (), errno.ENOSYS),                         # openat2: how unseen
    (425, (), errno.EPERM),                          # io_uring_setup
    (426, (), errno.EPERM),                          # io_uring_enter
    (427, (), errno.EPERM),                          # io_uring_register
    (308, (), errno.EPERM),                          # setns
)

#: setns for the join filter, by machine: C{(AUDIT_ARCH_*, numbers)} for
#: the machine's own calls and for each ABI its kernel also runs (x32
#: calls carry bit 30 of the number; i386 and arm are the compat ABIs).
_SETNS = {
    "x86_64": ((0xC000003E, (308, 308 | _X32_SYSCALL_BIT)),
               (0x40000003, (346,))),
    "aarch64": ((0xC00000B7, (268,)), (0x40000028, (375,))),
    "riscv64": ((0xC00000F3, (268,)),),
    "ppc64le": ((0xC0000015, (350,)),),
    "s390x": ((0x80000016, (339,)),),
    "armv7l": ((0x40000028, (375,)),),
    "i686": ((0x40000003, (346,)),),
}
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort),
                ("filter", ctypes.POINTER(_SockFilter))]


def _argumentOffset(index):
    # struct seccomp_data: nr, arch, instruction_pointer, args[6]; the low
    # 32 bits of a 64-bit argument come first on little-endian x86_64.
    return 16 + 8 * index


def filterProgram(rules=_FILTERED_X86_64):
    """
    The classic BPF program of the jail's syscall filter, as a list of
    C{(code, jt, jf, k)}: calls of another architecture and x32 calls are
    refused with C{ENOSYS}; each rule refuses its call (when its argument
    masks match) with its errno; everything else is allowed.
    """
    program = [(_BPF_LD_ABS, 0, 0, 4),
               (_BPF_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
               (_BPF_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
               (_BPF_LD_ABS, 0, 0, 0),
               (_BPF_JGE, 0, 1, _X32_SYSCALL_BIT),
               (_BPF_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    for number, masks, error in rules:
        # LD nr; JEQ number; (LD arg; JSET mask)*; RET errno.  Every "no"
        # jumps past the rule's end, to the next rule's LD nr.
        length = 2 + 2 * len(masks) + 1
        program.append((_BPF_LD_ABS, 0, 0, 0))
        program.append((_BPF_JEQ, 0, length - 2, number))
        for position, (index, mask) in enumerate(masks):
            left = length - 2 - 2 * position
            program.append((_BPF_LD_ABS, 0, 0, _argumentOffset(index)))
            program.append((_BPF_JSET, 0, left - 2, mask))
        program.append((_BPF_RET, 0, 0, _RET_ERRNO | error))
    program.append((_BPF_RET, 0, 0, _RET_ALLOW))
    return program


_compiled = {}


def compileSyscallFilter(kind="ceiling"):
    """
    Build a filter's C program once per process (call it before forking
    children that install it, as skd does for every connection, so that no
    child builds it again).

    @param kind: C{"ceiling"} (L{filterProgram}) or C{"join"}
        (L{joinFilterProgram}).
    @return: the C{struct sock_fprog} to install.
    """
    if kind not in _compiled:
        program = (filterProgram() if kind == "ceiling"
                   else joinFilterProgram())
        instructions = (_SockFilter * len(program))(*program)
        # The program array must live as long as the fprog pointing at it.
        _compiled[kind] = (instructions,
                           _SockFprog(len(program), instructions))
    return _compiled[kind][1]


def joinFilterProgram(machine=None):
    """
    The classic BPF program of L{installJoinFilter}: C{setns} of every ABI
    the machine's kernel runs answers C{EPERM}; every other call, of any
    ABI, is allowed.

    @raise EnterError: for a machine whose numbers are not in L{_SETNS}.
    """
    machine = machine or os.uname().machine
    if machine not in _SETNS:
        raise EnterError("seccomp", f"the setns filter is not written for "
                                    f"{machine}; jailtwist cannot keep a "
                                    f"jailed program from joining a login "
                                    f"here")
    program = []
    for arch, numbers in _SETNS[machine]:
        # LD arch; JEQ arch (else skip the block); LD nr; JEQ each number
        # (to RET EPERM); RET ALLOW; RET EPERM.
        count = len(numbers)
        program.append((_BPF_LD_ABS, 0, 0, 4))
        program.append((_BPF_JEQ, 0, count + 3, arch))
        program.append((_BPF_LD_ABS, 0, 0, 0))
        for index, number in enumerate(numbers):
            program.append((_BPF_JEQ, count - index, 0, number))
        program.append((_BPF_RET, 0, 0, _RET_ALLOW))
        program.append((_BPF_RET, 0, 0, _RET_ERRNO | errno.EPERM))
    program.append((_BPF_RET, 0, 0, _RET_ALLOW))
    return program


def installJoinFilter():
    """
    Refuse C{setns} to the calling thread for good (it is part of
    L{installSyscallFilter}'s filter too).  Every program a jail runs in
    the host's user namespace gets it, whatever its uid (plain
    C{jk_chrootlaunch}, C{skd --jail}, probes, the root login service's
    logins): the accounts own the user namespaces of their logins (through
    L{enterAsUser}), and the kernel gives every process of the owner's uid
    in the parent namespace every capability in them, so a jailed program
    of the account (or a jailed root that becomes the account) could join
    a login's namespace through a pidfd of any of its processes and take
    C{CAP_SYS_CHROOT} there to leave its chroot.  Nothing a jailed program
    does needs C{setns}.  Needs C{PR_SET_NO_NEW_PRIVS} or C{CAP_SYS_ADMIN}.

    @raise EnterError: for a machine the filter is not written for, or
        when the kernel refuses it.
    """
    fprog = compileSyscallFilter("join")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                   ctypes.addressof(fprog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise EnterError("seccomp", f"could not refuse setns to the jailed "
                                    f"program: {os.strerror(number)}",
                         number)


def installSyscallFilter():
    """
    Install the jail's syscall filter (see L{filterProgram}) on the calling
    thread, for good: it is inherited across fork and exec and cannot be
    removed.  Needs C{PR_SET_NO_NEW_PRIVS} or C{CAP_SYS_ADMIN}.

    @raise EnterError: on an architecture the filter is not written for,
        or when the kernel refuses it.
    """
    machine = os.uname().machine
    if machine not in _SYS_SECCOMP:
        raise EnterError("seccomp", f"the syscall filter exists for x86_64 "
                                    f"only, not {machine}; launch without "
                                    f"a capability ceiling")
    fprog = compileSyscallFilter()
    try:
        _syscall(_SYS_SECCOMP[machine], ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                 ctypes.c_uint(0), ctypes.byref(fprog))
    except OSError as e:
        raise EnterError("seccomp", f"could not install the syscall filter: "
                                    f"{e.strerror}", e.errno) from None


# -- bind jails ---------------------------------------------------------------
#
# A bind jail (jk_init --bind) is assembled by every way in, in the entry's
# own private mount namespace, from the binds jailtwist.bindlist checked and
# pinned (PreparedBinds).  The new mount API is used: open_tree(
# OPEN_TREE_CLONE) makes a detached copy of exactly the checked host object,
# mount_setattr makes that copy read-only, nosuid and nodev while nobody can
# see it, and move_mount attaches it, already read-only, on the checked
# mount point.  With mount(MS_BIND) and a remount there is a moment in which
# the bind is writable (and mount(2) takes paths, which would be resolved
# again).  The calls take descriptors, so nothing is looked up by path
# after the checks but the reopening below, which must land on the same
# device and inode as the pinned descriptor.  Linux >= 5.12.

class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def privateMounts():
    """
    Make every mount of this process's (new) mount namespace private, so
    nothing mounted in it propagates to the host, and nothing later
    mounted on the host appears in it.
    """
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as e:
        raise EnterError("mount", f"cannot make the mount namespace private: "
                                  f"{e.strerror}", e.errno) from None


def _reopenSame(start, path, pinned, what, directories):
    """
    Open C{path} from the directory descriptor C{start} (in this mount
    namespace), one component at a time and following no symlink, and
    require it to be the object C{pinned} was opened on.

    @param directories: a C{dict} of the directories opened on the way,
        by path, shared by the calls for one jail (close them).
    """
    parent, name = path.rstrip("/").rsplit("/", 1)
    try:
        fd = start
        walked = ""
        for part in [p for p in parent.split("/") if p]:
            walked += "/" + part
            if walked not in directories:
                directories[walked] = os.open(
                    part, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY
                    | os.O_CLOEXEC, dir_fd=fd)
            fd = directories[walked]
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=fd)
    except OSError as e:
        raise EnterError("mount", f"cannot reopen the {what} {path}: "
                                  f"{e.strerror}", e.errno) from None
    a, b = os.fstat(fd), os.fstat(pinned)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        os.close(fd)
        raise EnterError("mount", f"the {what} {path} changed while the "
                                  f"jail was being assembled: refusing to "
                                  f"continue")
    return fd


def _closeAll(directories):
    for fd in directories.values():
        os.close(fd)


def cloneBinds(prepared):
    """
    The first half of L{assembleBinds}, while C{/} is still the host's and
    this process is in its own private mount namespace: a detached,
    read-only, nosuid, nodev copy of each pinned host source.

    @param prepared: a L{jailtwist.bindlist.PreparedBinds}.
    @return: one C{open_tree} descriptor per mount of the plan (close them,
        or pass them to L{attachBinds}).
    @raise EnterError: step C{mount}.
    """
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
                      | MOUNT_ATTR_NODEV, 0, 0, 0)
    trees = []
    directories = {}
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for mount_, hostFd, _ in prepared.pins:
            source = _reopenSame(root, mount_.source, hostFd, "host path",
                                 directories)
            try:
                if stat.S_ISDIR(os.fstat(source).st_mode) != mount_.directory:
                    raise EnterError("mount", f"the host path "
                                              f"{mount_.source} changed kind")
                tree = _syscall(_SYS_OPEN_TREE, ctypes.c_int(source),
                                ctypes.c_char_p(b""),
                                ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC
                                              | AT_EMPTY_PATH))
                trees.append(tree)
                _syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(tree),
                         ctypes.c_char_p(b""), ctypes.c_uint(AT_EMPTY_PATH),
                         ctypes.byref(attr), ctypes.c_size_t(
                             ctypes.sizeof(attr)))
            except OSError as e:
                hint = (" (bind jails need Linux 5.12 or later)"
                        if e.errno == errno.ENOSYS else "")
                raise EnterError("mount", f"cannot bind {mount_.source}: "
                                          f"{e.strerror}{hint}",
                                 e.errno) from None
            finally:
                os.close(source)
    except BaseException:
        for tree in trees:
            os.close(tree)
        raise
    finally:
        _closeAll(directories)
        os.close(root)
    return trees


def attachBinds(rootFd, prepared, trees):
    """
    The second half of L{assembleBinds}: attach each copy from
    L{cloneBinds} on its pinned mount point, reached from C{rootFd} (the
    jail's root in this mount namespace).  The descriptors in C{trees} are
    closed.

    @raise EnterError: step C{mount}.
    """
    directories = {}
    try:
        for (mount_, _, pointFd), tree in zip(prepared.pins, trees,
                                               strict=True):
            point = _reopenSame(rootFd, mount_.target, pointFd,
                                "mount point", directories)
            try:
                _syscall(_SYS_MOVE_MOUNT, ctypes.c_int(tree),
                         ctypes.c_char_p(b""), ctypes.c_int(point),
                         ctypes.c_char_p(b""),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH
                                       | MOVE_MOUNT_T_EMPTY_PATH))
            except OSError as e:
                raise EnterError("mount", f"cannot bind {mount_.source} in "
                                          f"the jail: {e.strerror}",
                                 e.errno) from None
            finally:
                os.close(point)
    finally:
        _closeAll(directories)
        for tree in trees:
            os.close(tree)


def assembleBinds(rootFd, prepared):
    """
    Assemble a bind jail: bind every pinned host source of C{prepared}
    read-only, nosuid and nodev on its mount point under C{rootFd}.  Call
    it in the entry's own mount namespace, after L{privateMounts}, before
    changing root, with C{rootFd} opened in that namespace (a descriptor
    opened before C{unshare} still refers to the host's mounts, and a
    mount made under it would not be seen; see L{enterJailRoot}).

    @param prepared: a L{jailtwist.bindlist.PreparedBinds} (its pins stay
        open: the caller closes it).
    @raise EnterError: step C{mount}; the jail must then not be entered.
    """
    attachBinds(rootFd, prepared, cloneBinds(prepared))


def _enterDirectory(jail):
    try:
        if isinstance(jail, int):
            os.fchdir(jail)
        else:
            os.chdir(jail)
    except OSError as e:
        raise EnterError("chroot", f"could not change to the jail {jail}: "
                                   f"{e.strerror}", e.errno) from None


def enterBindJailNamespace(prepared, flags=0):
    """
    For a way in running as root: a new mount namespace (with the extra
    C{CLONE_NEW*} C{flags}), made private, with the binds of C{prepared}
    assembled in it.

    @return: an C{O_PATH} descriptor of the jail's root in the new
        namespace, to change root to (close it).
    @raise EnterError: step C{unshare} or C{mount}.
    """
    _enterDirectory(prepared.rootFd)
    try:
        unshare(CLONE_NEWNS | flags)
    except OSError as e:
        raise EnterError("unshare", f"cannot create the jail's mount "
                                    f"namespace: {e.strerror}",
                         e.errno) from None
    return _bindJailRoot(prepared)


def _bindJailRoot(prepared):
    """
    With the jail's directory as the working directory before C{unshare}
    (the kernel moves it to this namespace's copy of the mount), open that
    copy, make the namespace private and assemble the binds in it.

    @return: an C{O_PATH} descriptor of the jail's root in this namespace.
    """
    privateMounts()
    root = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        assembleBinds(root, prepared)
    except BaseException:
        os.close(root)
        raise
    return root


# -- logins -------------------------------------------------------------------

_USERNS_SETTINGS = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0",
     "kernel.unprivileged_userns_clone=0 forbids them (set it to 1)"),
    ("/proc/sys/user/max_user_namespaces", "0",
     "user.max_user_namespaces=0 forbids them (set it above 0)"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "AppArmor restricts them: kernel.apparmor_restrict_unprivileged_userns"
     "=1 (set it to 0, or give the login shell an AppArmor profile with "
     "'userns,')"),
)


def _sysctl(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _userNamespaceRefused(error):
    for path, bad, reason in _USERNS_SETTINGS:
        if _sysctl(path) == bad:
            return UserNamespaceRefused(
                "unshare",
                f"the kernel refused a user namespace ({error.strerror}): "
                f"{reason}", error.errno)
    if error.errno == errno.ENOSPC:
        reason = ("too many user namespaces: user.max_user_namespaces is "
                  "exhausted (raise it)")
    elif error.errno == errno.EINVAL:
        reason = "the process has threads (enter the jail before starting any)"
    else:
        reason = ("check kernel.unprivileged_userns_clone, "
                  "user.max_user_namespaces and AppArmor's "
                  "kernel.apparmor_restrict_unprivileged_userns")
    return UserNamespaceRefused(
        "unshare", f"the kernel refused a user namespace ({error.strerror}): "
                   f"{reason}", error.errno)


def _namespaceFlags(namespaces, allowed):
    flags = 0
    for name in namespaces:
        if name not in allowed:
            raise JailtwistError(
                f"unknown namespace {name!r}: use {', '.join(allowed)}")
        flags |= _NAMESPACE_FLAGS[name]
    return flags


def _writeFile(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def loopbackUp():
    """
    Bring C{lo} up in this process's network namespace (a new network
    namespace starts with it down), with the C{SIOCSIFFLAGS} ioctl.
    """
    import fcntl
    import struct
    # _socket: socket's C module, without socket.py's enum wrappers.
    import _socket
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x",
                              fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS,
                    struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        sock.close()


def _loopbackUpOrFail():
    try:
        loopbackUp()
    except OSError as e:
        raise EnterError("network", f"cannot bring lo up: {e.strerror}",
                         e.errno) from None


def _unshareAsRoot(flags):
    """
    As root: unshare the namespaces in C{flags} (nothing when 0), bringing
    C{lo} up in a new network namespace.
    """
    if not flags:
        return
    try:
        unshare(flags)
    except OSError as e:
        raise EnterError("unshare", f"unshare failed: {e.strerror}",
                         e.errno) from None
    if flags & CLONE_NEWNET:
        _loopbackUpOrFail()


# NS_GET_PARENT: _IO(0xb7, 0x2), the user namespace a namespace belongs to.
_NS_GET_PARENT = 0xb702


def mappedUserNamespace(jail, uid, gid):
    """
    A new user namespace that maps only C{uid} and C{gid} (and denies
    C{setgroups}), made without this process ever becoming dumpable.

    The kernel lets an unprivileged process write a namespace's maps only
    through the C{/proc} files of a dumpable member of it, and any process
    of the same uid, a jailed one included, may ptrace a dumpable process.
    A login still has the host's root at this point, so it must not be the
    one: a forked child makes the namespace, changes root into C{jail},
    closes every descriptor and drops every capability, and only then
    becomes dumpable; this process writes the maps from outside (its
    C{/proc} files are open to the namespace's owner now), takes the
    namespace by descriptor and kills the child.  A tracer that catches the
    child gets a process of the account in the jail with no capability.
    (Joining the namespace is another matter: any process of the account
    in the host's user namespace may, by the kernel's rule for a
    namespace's owner; the ones jailtwist confines cannot, see
    L{installJoinFilter}.)

    @param jail: the jail (host path or open directory descriptor).
    @return: C{(userns, child)}: a descriptor of the namespace (close it;
        join it with L{setns}), and the child's pid: it has been sent
        C{SIGKILL}; reap it with C{waitpid} (later: it dies meanwhile).
    @raise UserNamespaceRefused: the kernel refuses the namespace.
    @raise EnterError: step C{unshare}, for any other failure.
    """
    report, reported = os.pipe()
    hold, held = os.pipe()
    parent = os.getpid()
    try:
        child = os.fork()
    except OSError as e:
        for fd in (report, reported, hold, held):
            os.close(fd)
        raise EnterError("unshare", f"cannot fork to make the login's user "
                                    f"namespace: {e.strerror}",
                         e.errno) from None
    if child == 0:
        os.close(report)
        os.close(held)
        _userNamespaceChild(jail, parent, reported, hold)
    os.close(reported)
    os.close(hold)
    try:
        answer = os.read(report, 16)
        if answer != b"ready":
            step, _, number = answer.decode("ascii", "replace").partition(" ")
            number = int(number) if number.isdigit() else errno.EIO
            error = OSError(number, os.strerror(number))
            if step == "unshare":
                raise _userNamespaceRefused(error)
            if step == "chroot":
                raise _unmappable(uid, gid, error, "chroot",
                                  "cannot change root into the jail in the "
                                  "login's user namespace")
            raise _unmappable(uid, gid, error)
        proc = f"/proc/{child}"
        try:
            _writeFile(f"{proc}/setgroups", "deny")
            _writeFile(f"{proc}/uid_map", f"{uid} {uid} 1\n")
            _writeFile(f"{proc}/gid_map", f"{gid} {gid} 1\n")
            userns = os.open(f"{proc}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _unmappable(uid, gid, e) from None
        try:
            _checkChildOf(userns)
        except BaseException:
            os.close(userns)
            raise
    except BaseException:
        os.kill(child, signal.SIGKILL)
        # Not waited for: a tracer holding it must not hold the login.
        os.waitpid(child, os.WNOHANG)
        raise
    finally:
        os.close(report)
        os.close(held)
    os.kill(child, signal.SIGKILL)
    return userns, child


def _userNamespaceChild(jail, parent, report, hold):
    """
    The child of L{mappedUserNamespace}: never returns.
    """
    step = "unshare"
    try:
        setDeathSignal(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        unshare(CLONE_NEWUSER)
        step = "chroot"
        chrootInto(jail)
        low, high = sorted((report, hold))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 2 ** 31 - 1)
        step = "capabilities"
        # No capability, and no exec can bring one back (no_new_privs; its
        # uid is never 0 in the namespace).
        setCapabilities(set(), set(), set())
        setNoNewPrivs()
        setDumpable(True)
        os.write(report, b"ready")
        os.read(hold, 1)
    except BaseException as e:
        number = getattr(e, "errno", None) or errno.EIO
        try:
            os.write(report, f"{step} {number}".encode("ascii"))
        except OSError:
            pass
    os._exit(0)


def _unmappable(uid, gid, error, step="unshare", what=None):
    # Ubuntu's AppArmor restriction lets unshare succeed and then withholds
    # the namespace's capabilities: say so.
    path, bad, reason = _USERNS_SETTINGS[2]
    if _sysctl(path) == bad:
        return UserNamespaceRefused(
            "unshare", f"the user namespace has no capabilities "
                       f"({error.strerror}): {reason}", error.errno)
    what = what or (f"cannot map uid {uid} and gid {gid} into the user "
                    f"namespace")
    return EnterError(step, f"{what}: {error.strerror}", error.errno)


def _checkChildOf(userns):
    """
    Require the namespace C{userns} to be a child of this process's own.
    """
    parent = _libc.ioctl(userns, _NS_GET_PARENT)
    if parent < 0:
        number = ctypes.get_errno()
        raise EnterError("unshare", f"cannot check the login's user "
                                    f"namespace: {os.strerror(number)}",
                         number)
    try:
        theirs = os.fstat(parent)
    finally:
        os.close(parent)
    ours = os.stat("/proc/self/ns/user")
    if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
        raise EnterError("unshare", "the login's user namespace is not a "
                                    "child of the login's own",
                         errno.EPERM)


def _checkOwnMaps(uid, gid):
    """
    After joining the login's namespace: it must map exactly C{uid} and
    C{gid}, with C{setgroups} denied.
    """
    def fields(name):
        with open(f"/proc/self/{name}") as f:
            return f.read().split()
    if (fields("uid_map") != [str(uid), str(uid), "1"]
            or fields("gid_map") != [str(gid), str(gid), "1"]
            or fields("setgroups") != ["deny"]):
        raise EnterError("unshare", "the login's user namespace does not map "
                                    "only the account's own ids",
                         errno.EPERM)


def enterAsUser(jail, home="/", namespaces=(), uid=None, gid=None,
                binds=None, ready=None):
    """
    Enter C{jail} for a login; the caller execs the shell afterwards.

    Unprivileged (the normal case for jailtwist's login shells, which are
    not setuid): a new user namespace that maps only the caller's own uid
    and gid (after C{setgroups} is denied, so no group can be dropped to
    escape a negative-permission check), made without the login ever being
    dumpable (L{mappedUserNamespace}), with a mount namespace and the
    extras, then chroot, chdir, no_new_privs, and every
    capability (which the new user namespace handed out) is dropped from
    all sets.  Files in the jail owned by other ids show as C{nobody}.

    As root (euid 0): the extra namespaces are unshared, then a plain chroot
    and a switch to C{uid}/C{gid} with no supplementary groups.

    @param jail: the jail (host path or open directory descriptor), already
        checked by the caller (L{jailtwist.jail.Jail.checkSafe}).
    @param home: the directory to change to, as seen inside the jail.
    @param namespaces: extra namespaces among C{"net"} (only C{lo}, brought
        up), C{"ipc"}, C{"uts"}.
    @param uid: as root, the uid to become (required); ignored otherwise.
    @param gid: as root, the gid to become (required); ignored otherwise.
    @param binds: for a bind jail, its L{jailtwist.bindlist.PreparedBinds}
        (checked and pinned before any namespace, with the caller's real
        credentials): a new mount namespace is then always made (also as
        root), made private, and the binds are assembled in it before the
        chroot.  The binds are not locked (this user namespace owns the
        mount namespace that created them): it is the capabilities dropped
        here, before the exec, that keep the program from unmounting or
        remounting them, and any namespace it makes later gets them locked.
    @param ready: called once entering can no longer be refused for want
        of a user namespace (it has been made), while this process is
        still on the host.
    @raise UserNamespaceRefused: the kernel refuses unprivileged user
        namespaces; the message names the setting.
    @raise EnterError: for any other failing step (C{step} names it).
    """
    ready = ready or (lambda: None)
    flags = _namespaceFlags(namespaces, ("net", "ipc", "uts"))
    if binds is not None:
        # unshare moves the working directory to the new namespace's copy
        # of its mount: that is how the jail is found there without being
        # looked up again by path.
        _enterDirectory(jail)
    if os.geteuid() == 0:
        if uid is None or gid is None:
            raise JailtwistError("enterAsUser as root needs uid and gid")
        if binds is not None:
            flags |= CLONE_NEWNS
        ready()
        _unshareAsRoot(flags)
        root = _bindJailRoot(binds) if binds is not None else jail
        try:
            confine(Confinement(root=root, cwd=home, uid=uid, gid=gid,
                                noNewPrivs=True))
        finally:
            if binds is not None:
                os.close(root)
        return
    ownUid, ownGid = os.getuid(), os.getgid()
    # The child must stay this process's to wait for (its pid reserved
    # until then): an ignored SIGCHLD, inherited from the caller, would
    # have the kernel reap it at once.
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        userns, child = mappedUserNamespace(jail, ownUid, ownGid)
        try:
            _enterUserNamespace(userns, jail, home, flags, binds, ownUid,
                                ownGid, ready)
        finally:
            # Reaped last, so that it dies while the jail is entered; not
            # waited for: a tracer that holds it must not hold the login
            # (the program inherits it then).
            try:
                os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                pass
    finally:
        signal.signal(signal.SIGCHLD, previous)


def _enterUserNamespace(userns, jail, home, flags, binds, ownUid, ownGid,
                        ready):
    """
    The rest of L{enterAsUser}: join C{userns} (made by
    L{mappedUserNamespace}), make the other namespaces, change root.
    """
    try:
        ready()
        setns(userns, CLONE_NEWUSER)
        _checkOwnMaps(ownUid, ownGid)
        unshare(CLONE_NEWNS | flags)
    except OSError as e:
        raise EnterError("unshare", f"cannot enter the login's user "
                                    f"namespace: {e.strerror}",
                         e.errno) from None
    finally:
        os.close(userns)
    if flags & CLONE_NEWNET:
        _loopbackUpOrFail()
    if binds is not None:
        root = _bindJailRoot(binds)
        try:
            chrootInto(root)
        finally:
            os.close(root)
    else:
        chrootInto(jail)
    setNoNewPrivs()
    limitCapabilities(())
    # Only now, without the namespace's capabilities: CAP_DAC_OVERRIDE
    # there would let the account into a home its mode shuts it out of.
    try:
        os.chdir(home)
    except OSError as e:
        raise EnterError("chdir", f"chdir({home}) failed inside the jail: "
                                  f"{e.strerror}", e.errno) from None


def enterForAccount(jail, home, uid, gid, groups=(), namespaces=(),
                    binds=None):
    """
    The root login service's entry (in a fresh process it spawned, about to
    exec): optional extra namespaces, chroot into C{jail}, an empty
    capability bounding set, C{uid}/C{gid} with exactly C{groups}, no
    capability left, C{PR_SET_NO_NEW_PRIVS}; only then, as the account,
    chdir to C{home} (so the home's permissions apply as they do for a
    login through a user namespace).

    @param jail: an open directory descriptor (or path) of the checked jail.
    @param binds: for a bind jail, its L{jailtwist.bindlist.PreparedBinds}:
        a new mount namespace is made private and the binds are assembled
        in it before the chroot.
    @raise EnterError: naming the step that failed; C{JailtwistError} if
        not root or asked to stay root.
    """
    if os.geteuid() != 0:
        raise JailtwistError("enterForAccount needs root")
    if uid == 0 or gid == 0 or 0 in groups:
        raise JailtwistError("the login service never runs a program as "
                             "root or with group 0")
    flags = _namespaceFlags(namespaces, ("net", "ipc", "uts"))
    if binds is not None:
        _enterDirectory(jail)
        flags |= CLONE_NEWNS
    _unshareAsRoot(flags)
    root = _bindJailRoot(binds) if binds is not None else jail
    try:
        confine(Confinement(root=root, cwd="/", uid=uid, gid=gid,
                            groups=groups, capabilities=(), noNewPrivs=True))
    finally:
        if binds is not None:
            os.close(root)
    if any(getCapabilities()) or os.getresuid() != (uid, uid, uid):
        raise EnterError("capabilities", "capabilities or ids survived the "
                                         "switch to the account")
    # Logins must not share the daemon's session keyring (nor each other's):
    # a new one, owned by the account, as pam_keyinit gives.
    newSessionKeyring()
    try:
        os.chdir(home)
    except OSError as e:
        raise EnterError("chdir", f"chdir({home}) failed inside the jail: "
                                  f"{e.strerror}", e.errno) from None


def adoptCallerState(state, cgroupRoot="/sys/fs/cgroup"):
    """
    The root login service's helper, still root: take the caller's process
    state instead of the daemon's (as the caller's own login set it up
    with pam_limits, pam_loginuid and pam_systemd): its cgroup (v2), audit
    login uid, nice value, OOM score adjustment and resource limits (soft
    and hard: the caller could raise its soft limits to its hard ones
    anyway).

    @param state: from L{jailtwist.loginservice.callerState}.
    @raise EnterError: naming the step (C{cgroup}, C{loginuid},
        C{limits}) that failed; the login is then refused.
    """
    import resource
    cgroup = state.get("cgroup")
    if cgroup is not None and cgroup != _ownCgroup():
        if not cgroup.startswith("/") or "/.." in cgroup or "\0" in cgroup:
            raise EnterError("cgroup", f"the caller's cgroup {cgroup!r} is "
                                       f"not a plain path")
        try:
            _writeFile(os.path.join(cgroupRoot, cgroup.lstrip("/"),
                                    "cgroup.procs"), "0")
        except OSError as e:
            raise EnterError("cgroup", f"cannot join the caller's cgroup "
                                       f"{cgroup}: {e.strerror}",
                             e.errno) from None
    loginuid = state.get("loginuid")
    if loginuid is not None:
        try:
            with open("/proc/self/loginuid") as f:
                own = int(f.read())
            if own != loginuid:
                _writeFile("/proc/self/loginuid", str(loginuid))
        except OSError as e:
            raise EnterError("loginuid", f"cannot set the audit login uid "
                                         f"{loginuid}: {e.strerror}",
                             e.errno) from None
    # A nice value or OOM score adjustment below the daemon's needs
    # capabilities a service may lack: the daemon's then stays (it can only
    # be the less favoured one).
    try:
        os.setpriority(os.PRIO_PROCESS, 0, state["nice"])
    except PermissionError:
        pass
    try:
        _writeFile("/proc/self/oom_score_adj", str(state["oomScoreAdj"]))
    except PermissionError:
        pass
    try:
        for name, (soft, hard) in sorted(state["rlimits"].items()):
            number = getattr(resource, name, None)
            if number is not None:
                # Never above the daemon's own hard limit (raising one
                # needs CAP_SYS_RESOURCE, which a service may lack).
                own = resource.getrlimit(number)[1]
                hard = _lowerLimit(hard, own)
                resource.setrlimit(number, (_lowerLimit(soft, hard), hard))
    except (OSError, ValueError) as e:
        raise EnterError("limits", f"cannot take the caller's limits: {e}",
                         getattr(e, "errno", None) or 0) from None


def _lowerLimit(a, b):
    infinity = -1
    if a == infinity:
        return b
    if b == infinity:
        return a
    return min(a, b)


def _ownCgroup():
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return None


# -- joining a running jail (probes) ---------------------------------------------

class JailProcess:
    """
    A process inside a running jail, pinned so that a reused pid cannot
    make a later join land in another jail.

    @ivar pid: the process id (in this process's pid namespace).
    @ivar pidfd: a pidfd for it (from C{pidfd_open}); the process is known
        alive as long as signalling it with 0 through this descriptor works.
    @ivar root: the jail's path on the host, when known (C{None} otherwise).
    @ivar record: the registry record it was found through, or C{None}.
    """

    def __init__(self, pid, pidfd, root=None, record=None):
        self.pid = pid
        self.pidfd = pidfd
        self.root = root
        self.record = record

    def __repr__(self):
        return f"JailProcess(pid={self.pid}, root={self.root!r})"

    def alive(self):
        """
        @return: whether the pinned process still runs (a zombie counts).
        """
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def namespace(self, name):
        """
        @return: the inode number of the process's C{name} namespace.
        @raise EnterError: if the process is gone.
        """
        st = os.stat(f"/proc/{self.pid}/ns/{name}")
        if not self.alive():
            raise EnterError("pin", f"process {self.pid} has exited")
        return st.st_ino

    def close(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pinProcess(pid, root=None, record=None):
    """
    Pin process C{pid} with a pidfd.

    @return: a L{JailProcess} (close it when done).
    @raise EnterError: if there is no such process.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise EnterError("pin", f"no process {pid}", errno.ESRCH) from None
    except OSError as e:
        raise EnterError("pin", f"cannot pin process {pid}: {e.strerror}",
                         e.errno) from None
    os.set_inheritable(pidfd, False)
    return JailProcess(pid, pidfd, root, record)


def processStartTime(pid):
    """
    @return: the start time of C{pid} in clock ticks since boot (field 22 of
        C{/proc/PID/stat}), which with the pid identifies a process across
        pid reuse; C{None} if there is no such process or it has exited (a
        zombie).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the
    # last ')'.  A zombie has ended: it counts as gone.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def joinJail(process, namespaces=("user", "mnt", "pid", "net", "ipc",
                                  "uts"), chroot=True):
    """
    Join the jail that C{process} (a L{JailProcess}) runs in.

    The namespaces that differ from ours are joined with one
    C{setns(pidfd, flags)} (atomic, Linux >= 5.8); the user namespace only
    if it differs (the kernel refuses re-entering one's own).  Then, with
    C{chroot}, the process's root directory -- opened before joining and
    checked to belong to the still-living pinned process -- becomes ours.

    B{The pid namespace applies only to children}: fork after this call and
    do the jailed work in the child.  Call it single-threaded.

    A bind jail (C{jk_init --bind}) entered by any of jailtwist's ways in
    runs in a mount namespace of its own holding its binds: joining it
    (C{"mnt"}) and changing to the process's root shows the binds.  One
    entered by other tools (a plain chroot) has no mount namespace of its
    own and no binds; the caller then sees its empty mount points, as its
    processes do: nothing is assembled here.

    @raise EnterError: if the process is gone or a step fails.
    """
    pid = process.pid
    flags = 0
    for name in namespaces:
        if name not in _NAMESPACE_FLAGS:
            raise JailtwistError(f"unknown namespace {name!r}")
        try:
            theirs = os.stat(f"/proc/{pid}/ns/{name}").st_ino
            ours = os.stat(f"/proc/self/ns/{name}").st_ino
        except OSError as e:
            raise EnterError("setns", f"cannot read the {name} namespace of "
                                      f"process {pid}: {e.strerror}",
                             e.errno) from None
        if theirs != ours:
            flags |= _NAMESPACE_FLAGS[name]
    rootFd = None
    if chroot:
        try:
            rootFd = os.open(f"/proc/{pid}/root",
                             os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise EnterError("chroot", f"cannot open the root of process "
                                       f"{pid}: {e.strerror}",
                             e.errno) from None
    try:
        # Everything above was read through /proc/PID: it belongs to the
        # pinned process only if that process still lives now.
        if not process.alive():
            raise EnterError("pin", f"process {pid} exited while joining "
                                    f"its jail", errno.ESRCH)
        if flags:
            try:
                setns(process.pidfd, flags)
            except OSError as e:
                raise EnterError("setns", f"cannot join the namespaces of "
                                          f"process {pid}: {e.strerror}",
                                 e.errno) from None
        if rootFd is not None:
            chrootInto(rootFd)
    finally:
        if rootFd is not None:
            os.close(rootFd)


# -- jk_socketd ---------------------------------------------------------------

def confineRelay(syslogPath, user="nobody"):
    """
    Confine a relay that has bound its sockets: chroot into the directory
    that holds the host syslog socket, symlinks resolved (so it can
    reconnect when syslog
    re-creates it, and reach nothing else), become C{user} from the host's
    passwd with no supplementary groups, every capability dropped, and
    no_new_privs.

    @return: the syslog socket's path relative to the new working directory.
    """
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise JailtwistError(f"user {user} does not exist: create it or "
                             f"name another with --user") from None
    # Followed once, now: after the chroot a symlink such as systemd's
    # /dev/log -> /run/systemd/journal/dev-log could not be, and every
    # reconnect after a syslog restart would fail.
    directory, name = os.path.split(os.path.realpath(syslogPath))
    confine(Confinement(root=directory, cwd="/", uid=entry.pw_uid,
                        gid=entry.pw_gid, capabilities=frozenset(),
                        noNewPrivs=True))
    return name


# -- launching a jail (jk_chrootlaunch) ----------------------------------------

# Device nodes of a jail's minimal /dev: name, major, minor.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))

# Parts of a fresh /proc that stay read-only for everyone in the jail,
# jailed root included: the sysctls (many of them global to the host) and
# the few other writable files that reach the kernel.
READ_ONLY_PROC = ("sys", "sysrq-trigger", "irq", "bus", "fs")

# Signals the launcher passes on to the jail's init, and the init to the
# program (or, once the program has exited, to every process in the jail).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                     signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                     signal.SIGWINCH)

_IP_CANDIDATES = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


class Isolation:
    """
    The jail call's guarantees a launch asks for; each is a separate switch
    and everything off is jailkit's plain chroot.

    @ivar capabilities: names kept in the bounding set (the capability
        ceiling), or C{None} for no ceiling.
    @ivar noNewPrivs: set C{PR_SET_NO_NEW_PRIVS}.
    @ivar pid: a pid namespace with a fresh C{/proc} and a small init.
    @ivar ipc: an IPC namespace.
    @ivar uts: a UTS namespace; C{hostname} is set in it.
    @ivar hostname: the jail's host name (with C{uts}).
    @ivar network: C{None} (the host's network), C{"none"} (a network
        namespace with only C{lo}) or C{"veth"} (plus a veth pair with
        C{address} in the jail and C{hostAddress} on the host's end).
    @ivar filesystem: a mount namespace where the jail becomes the root with
        C{pivot_root} and gets a minimal C{/dev}.
    """

    def __init__(self, capabilities=None, noNewPrivs=False, pid=False,
                 ipc=False, uts=False, hostname=None, network=None,
                 address=None, hostAddress=None, filesystem=False):
        self.capabilities = (None if capabilities is None
                             else frozenset(capabilities))
        self.noNewPrivs = noNewPrivs
        self.pid = pid
        self.ipc = ipc
        self.uts = uts
        self.hostname = hostname
        if network not in (None, "none", "veth"):
            raise JailtwistError(f"unknown network mode {network!r}")
        if network == "veth":
            if address is None or hostAddress is None:
                raise JailtwistError("a veth network needs the jail's "
                                     "address and the host's address")
            import ipaddress
            try:
                address = str(ipaddress.ip_address(address))
                hostAddress = str(ipaddress.ip_address(hostAddress))
            except ValueError as e:
                raise JailtwistError(str(e)) from None
        self.network = network
        self.address = address
        self.hostAddress = hostAddress
        self.filesystem = filesystem

    @property
    def namespaced(self):
        """
        Whether any namespace is asked for (the launch then forks).
        """
        return bool(self.pid or self.ipc or self.uts or self.network
                    or self.filesystem)

    def names(self):
        """
        @return: a short list describing what is on, e.g. C{["caps", "nnp",
            "pid", "net:192.0.2.2"]} (what the registry and jk_list show).
        """
        names = []
        if self.capabilities is not None:
            names.append("caps")
        if self.noNewPrivs:
            names.append("nnp")
        if self.pid:
            names.append("pid")
        if self.ipc:
            names.append("ipc")
        if self.uts:
            names.append("uts")
        if self.network == "none":
            names.append("net:none")
        elif self.network == "veth":
            names.append(f"net:{self.address}")
        if self.filesystem:
            names.append("fs")
        return names

    def __repr__(self):
        return f"Isolation({', '.join(self.names()) or 'none'})"


class LaunchSpec:
    """
    One program to start in a jail.

    @ivar jail: the jail's host path (already checked by the caller).
    @ivar executable: the program's path inside the jail.
    @ivar argv: its arguments, C{argv[0]} included.
    @ivar uid: the uid to run as, or C{None} to stay root.
    @ivar gid: the gid to run as, or C{None} to stay.
    @ivar isolation: an L{Isolation}.
    @ivar onStarted: called in the launcher with the host pid of the jail's
        first process (the program itself, or the jail's init in a pid
        namespace) before the program runs (jailkit writes its pidfile
        then).  An exception from it aborts the launch.
    @ivar onReady: called in the launcher with the same pid once the jail
        is set up (root changed, mounts made) and the program has been
        executed, so that whoever finds the jail through it (the registry)
        and joins it sees the finished jail.  An exception from it kills
        the jail.  Without namespaces it is called with C{onStarted}, just
        before the exec.
    @ivar vethName: the name of the host's end of the veth pair (at most 15
        bytes); by default C{jtv} followed by a pid.
    @ivar binds: for a bind jail, its L{jailtwist.bindlist.PreparedBinds}
        (pinned from a descriptor of C{jail}); the launch then always makes
        a private mount namespace and assembles them in it before the
        program runs, also without other namespaces.
    """

    def __init__(self, jail, executable, argv, uid=None, gid=None,
                 isolation=None, onStarted=None, vethName=None,
                 onReady=None, binds=None):
        self.jail = jail
        self.executable = executable
        self.argv = list(argv)
        self.uid = uid
        self.gid = gid
        self.isolation = isolation if isolation is not None else Isolation()
        self.onStarted = onStarted
        self.onReady = onReady
        self.vethName = vethName
        self.binds = binds


def launch(spec):
    """
    Start C{spec}'s program in its jail.

    Without namespaces this is jailkit's jk_chrootlaunch: C{onStarted} with
    our own pid, chroot, capability ceiling, uid/gid switch with no
    supplementary groups, no_new_privs, file descriptors above 2 closed,
    exec in place -- it never returns.

    With namespaces the launcher forks; the child unshares the namespaces,
    the launcher (still in the host's namespaces) creates the veth pair with
    the jail's end created directly in the child's network namespace (so no
    interface is ever left half-moved in the host) and configures the host's
    end, the child configures its end from inside.  With a pid namespace the
    child forks the jail's init (pid 1 inside), which sets up the jail's
    root and mounts, forks the program, then reaps every process in the jail
    and forwards signals.  The launcher waits for the program (not the jail)
    to end and forwards signals it gets to the jail's first process, so a
    program that stays in the foreground keeps jk_chrootlaunch running and a
    daemon that forks away lets it return, as with jailkit.  On every
    failure path the host's end of the veth pair is deleted.

    @return: the program's exit status (shell style: 128 + signal number
        when killed by a signal).
    @raise EnterError: naming the failed step; its exit code is jailkit's
        for the chroot, chdir, setgid, setuid and exec steps and
        L{ISOLATION_EXIT_CODE} for namespaces, mounts and network.
    """
    isolation = spec.isolation
    if not isolation.namespaced:
        for callback in (spec.onStarted, spec.onReady):
            if callback is not None:
                callback(os.getpid())
        if spec.binds is not None:
            root = enterBindJailNamespace(spec.binds)
            try:
                chrootInto(root)
            finally:
                os.close(root)
        else:
            chrootInto(spec.jail)
        if isolation.capabilities is not None:
            limitBoundingSet(isolation.capabilities)
        _exec(spec)
    return _Launcher(spec).run()


def _exitStatus(raw):
    code = os.waitstatus_to_exitcode(raw)
    return 128 - code if code < 0 else code


def _findIp():
    for candidate in _IP_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise EnterError("network", "iproute2's ip is not installed "
                                "(apt-get install iproute2)")


def _runIp(ip, *commands):
    """
    Run C{ip} commands (each a list of words) in one C{ip -batch} process,
    which stops at the first failure.

    @raise EnterError: naming the command that failed and ip's message.
    """
    if len(commands) == 1:
        argv, text = [ip] + list(commands[0]), b""
    else:
        argv, text = [ip, "-batch", "-"], "".join(
            " ".join(words) + "\n" for words in commands).encode()
    status, stderr = _run(argv, text)
    if status != 0:
        shown = "; ".join("ip " + " ".join(words) for words in commands)
        raise EnterError("network", f"'{shown}' failed: "
                                    f"{stderr.strip() or status}")


def _run(argv, text):
    """
    Run C{argv} with an empty environment, C{text} (a few hundred bytes at
    most) on its standard input, its output discarded and no descriptor but
    0, 1 and 2 inherited; a plain fork and exec, because importing
    C{subprocess} would cost a launch about 10 ms, in the launcher and
    again in the jail's first process.

    @return: its exit status and what it wrote on standard error.
    """
    inRead, inWrite = os.pipe2(os.O_CLOEXEC)
    errRead, errWrite = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            for fd, target in ((inRead, 0), (null, 1), (errWrite, 2)):
                os.dup2(fd, target)
            _closeAllBut({0, 1, 2})
            os.execve(argv[0], argv, {})
        finally:
            os._exit(127)
    for fd in (inRead, errWrite, null):
        os.close(fd)
    try:
        os.write(inWrite, text)
    except BrokenPipeError:
        pass
    finally:
        os.close(inWrite)
    stderr = b"".join(iter(lambda: os.read(errRead, 4096), b""))
    os.close(errRead)
    _, raw = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(raw), stderr.decode("utf-8", "replace")


def _hostPrefix(address):
    return "128" if ":" in address else "32"


def _noDad(address):
    # An IPv6 address stays tentative (unusable, routes through it refused)
    # until duplicate address detection ends; a point-to-point link between
    # two namespaces has nothing to detect.
    return ["nodad"] if ":" in address else []


class _Launcher:
    """
    The launcher's side of a namespaced launch (see L{launch}).
    """

    def __init__(self, spec):
        self.spec = spec
        self.isolation = spec.isolation
        self.child = None
        self.hostLink = None
        self.initPidfd = None
        self.ip = _findIp() if self.isolation.network == "veth" else None
        self.jailFd = None

    def run(self):
        try:
            self.jailFd = os.open(self.spec.jail, os.O_PATH | os.O_DIRECTORY
                                  | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise EnterError("chroot", f"cannot open jail {self.spec.jail}: "
                                       f"{e.strerror}", e.errno) from None
        reportRead, reportWrite = os.pipe2(os.O_CLOEXEC)
        goRead, goWrite = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(reportRead)
            os.close(goWrite)
            _JailChild(self.spec, self.jailFd, reportWrite, goRead).run()
        self.child = pid
        os.close(reportWrite)
        os.close(goRead)
        os.close(self.jailFd)
        previous = {}
        try:
            status = self._follow(reportRead, goWrite, previous)
        except BaseException:
            self._abort()
            raise
        finally:
            os.close(reportRead)
            if goWrite is not None:
                try:
                    os.close(goWrite)
                except OSError:
                    pass
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.initPidfd is not None:
                os.close(self.initPidfd)
        return status

    def _follow(self, reportRead, goWrite, previous):
        status = None
        initPid = None
        for line in _readLines(reportRead):
            kind, _, rest = line.partition(" ")
            if kind == "net":
                self._plumbHost()
                os.write(goWrite, b"go\n")
            elif kind == "init":
                initPid = int(rest)
                self.initPidfd = os.pidfd_open(initPid)
                for signum in FORWARDED_SIGNALS:
                    previous[signum] = signal.signal(signum, self._forward)
                if self.spec.onStarted is not None:
                    self.spec.onStarted(initPid)
                os.write(goWrite, b"go\n")
            elif kind == "ready":
                self._ready(initPid)
            elif kind == "error":
                raise _parseError(rest)
            elif kind == "exit":
                status, _, last = rest.partition(" ")
                status = int(status)
                if last == "last":
                    # The jail's init exits now that the jail is empty: let
                    # it finish, so the caller sees the jail gone.
                    _waitReadable(self.initPidfd, 2.0)
        if self.isolation.pid:
            os.waitpid(self.child, 0)
            self.child = None
            if status is None:
                raise EnterError("exec", "the jail's init was killed before "
                                         "the program ended",
                                 exitCode=128 + signal.SIGKILL)
            return status
        # Without a pid namespace the child became the program (the report
        # pipe closed on exec): wait for it.
        if initPid is not None and processStartTime(initPid) is not None:
            self._ready(initPid)
        _, raw = os.waitpid(self.child, 0)
        self.child = None
        return _exitStatus(raw)

    def _ready(self, initPid):
        if self.spec.onReady is not None:
            self.spec.onReady(initPid)

    def _forward(self, signum, frame):
        if self.initPidfd is not None:
            try:
                signal.pidfd_send_signal(self.initPidfd, signum)
            except OSError:
                pass

    def _plumbHost(self):
        """
        Create the veth pair with the jail's end made directly inside the
        child's network namespace, then address the host's end.
        """
        child = self.child
        ours = os.stat("/proc/self/ns/net").st_ino
        theirs = os.stat(f"/proc/{child}/ns/net").st_ino
        if ours == theirs:
            raise EnterError("network", "the jail's network namespace is the "
                                        "host's: refusing to create its link")
        name = self.spec.vethName or f"jtv{child}"
        iso = self.isolation
        _runIp(self.ip, ["link", "add", name, "type", "veth", "peer", "name",
                         "eth0", "netns", str(child)])
        self.hostLink = name
        _runIp(self.ip,
               ["link", "set", "dev", name, "addrgenmode", "none"],
               ["address", "add", iso.hostAddress, "peer",
                f"{iso.address}/{_hostPrefix(iso.address)}", "dev", name]
               + _noDad(iso.address),
               ["link", "set", "dev", name, "up"],
               # IPv6 does not route to an address's peer by itself.
               ["route", "replace",
                f"{iso.address}/{_hostPrefix(iso.address)}", "dev", name])

    def _abort(self):
        if self.hostLink is not None:
            _run([self.ip, "link", "delete", "dev", self.hostLink], b"")
            self.hostLink = None
        if self.child is not None:
            try:
                os.kill(self.child, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(self.child, 0)
            self.child = None
        if self.initPidfd is not None:
            try:
                signal.pidfd_send_signal(self.initPidfd, signal.SIGKILL)
            except OSError:
                pass


def _waitReadable(fd, timeout):
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(int(timeout * 1000))


def _readLines(fd):
    buffer = b""
    while True:
        data = os.read(fd, 4096)
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")


def _send(fd, text):
    os.write(fd, text.replace("\n", " ").encode("utf-8", "replace") + b"\n")


def _sendError(fd, error):
    number = getattr(error, "errno", None) or 0
    _send(fd, f"error {error.step} {number} {error.exitCode} {error}")


def _parseError(rest):
    step, number, code, message = rest.split(" ", 3)
    return EnterError(step, message, int(number) or None, int(code))


class _JailChild:
    """
    The forked side of a namespaced launch: the child that unshares, the
    jail's init (with a pid namespace) and the program.  Every method ends
    in C{exec} or C{os._exit}; failures are reported to the launcher as one
    line on the report pipe.
    """

    def __init__(self, spec, jailFd, report, go):
        self.spec = spec
        self.isolation = spec.isolation
        self.jailFd = jailFd
        self.report = report
        self.go = go

    def run(self):
        code = ISOLATION_EXIT_CODE
        try:
            for signum in FORWARDED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            self._unshare()
            if self.isolation.pid:
                unshare(CLONE_NEWPID)
                # A pid namespace's init drops signals it has no handler
                # for: keep them pending until its handlers are in place.
                signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
                init = os.fork()
                if init:
                    _send(self.report, f"init {init}")
                    os._exit(0)
                # The init stays this forked interpreter: the launcher
                # imports only the standard library's builtins and
                # jailtwist's light modules, so a fresh one (tried: python
                # -I -S with only this module) held as much memory (about
                # 9.5 MB resident, 3.5 MB of it anonymous) and took 12 ms
                # more to start.
                self._init()
            else:
                _send(self.report, f"init {os.getpid()}")
                self._waitGo()
                self._setupRoot()
                if self.isolation.capabilities is not None:
                    limitBoundingSet(self.isolation.capabilities)
                _exec(self.spec, errorFd=self.report)
        except EnterError as e:
            code = e.exitCode
            _sendError(self.report, e)
        except BaseException as e:
            _sendError(self.report, EnterError(
                "unshare", f"{e.__class__.__name__}: {e}",
                getattr(e, "errno", None)))
        os._exit(code)

    def _waitGo(self):
        if os.read(self.go, 16) != b"go\n":
            raise EnterError("unshare", "the launcher went away")

    def _unshare(self):
        iso = self.isolation
        flags = 0
        if iso.filesystem or iso.pid or self.spec.binds is not None:
            flags |= CLONE_NEWNS
        if iso.pid:
            # The host's cgroup path (often naming the service or user that
            # launched the jail) stays out of /proc/self/cgroup.
            flags |= CLONE_NEWCGROUP
        if iso.ipc:
            flags |= CLONE_NEWIPC
        if iso.uts:
            flags |= CLONE_NEWUTS
        if iso.network:
            flags |= CLONE_NEWNET
        try:
            unshare(flags)
        except OSError as e:
            raise EnterError("unshare", f"cannot create the jail's "
                                        f"namespaces: {e.strerror}",
                             e.errno) from None
        newSessionKeyring()
        if iso.uts:
            import _socket
            _socket.sethostname(iso.hostname or "jail")
        if iso.network == "none":
            loopbackUp()
        elif iso.network == "veth":
            _send(self.report, "net")
            self._waitGo()
            ip = _findIp()
            prefix = _hostPrefix(iso.address)
            _runIp(ip,
                   ["link", "set", "dev", "lo", "up"],
                   ["link", "set", "dev", "eth0", "addrgenmode", "none"],
                   ["address", "add", iso.address, "peer",
                    f"{iso.hostAddress}/{prefix}", "dev", "eth0"]
                   + _noDad(iso.address),
                   ["link", "set", "dev", "eth0", "up"],
                   ["route", "replace", f"{iso.hostAddress}/{prefix}",
                    "dev", "eth0"],
                   ["route", "add", "default", "via", iso.hostAddress,
                    "dev", "eth0"])

    def _setupRoot(self):
        """
        Change root (pivot_root with filesystem isolation, chroot
        otherwise), then mount what the jail gets: a fresh /proc (pid
        namespace) with its kernel-facing parts read-only, and a minimal
        /dev.  Mounts are made after the root changed, so every path is
        resolved inside the jail: a symlink planted there can only point
        somewhere else in the jail.
        """
        iso = self.isolation
        jail = self.spec.jail
        binds = self.spec.binds
        if iso.filesystem or iso.pid or binds is not None:
            privateMounts()
        if iso.filesystem:
            # A bind jail's host sources are cloned while the host's root
            # is still there, and attached inside the new root.
            trees = cloneBinds(binds) if binds is not None else None
            logTree = self._pivot(jail)
            if trees is not None:
                root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    attachBinds(root, binds, trees)
                finally:
                    os.close(root)
        elif iso.pid or binds is not None:
            # After unshare, descriptors opened before refer to the host's
            # mounts (mounting under them fails): reopen the jail in this
            # namespace and check it is the same directory.
            inner = _reopen(jail, self.jailFd)
            try:
                if binds is not None:
                    assembleBinds(inner, binds)
                chrootInto(inner)
            finally:
                os.close(inner)
            logTree = None
        else:
            chrootInto(self.jailFd)
            logTree = None
        os.close(self.jailFd)
        try:
            if iso.filesystem:
                self._minimalDev(logTree)
            if iso.pid:
                _makeDirectory("/proc", 0o555)
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            if iso.pid or iso.filesystem:
                self._protectProc()
        except OSError as e:
            raise EnterError("mount", f"cannot set up the jail's mounts: "
                                      f"{e.strerror}", e.errno) from None

    def _pivot(self, jail):
        try:
            inner = _reopen(jail, self.jailFd)
            try:
                logTree = _cloneLogSocket(inner)
            finally:
                os.close(inner)
            mount(jail, jail, None, MS_BIND | MS_REC)
            bound = _reopen(jail, self.jailFd)
            try:
                os.fchdir(bound)
            finally:
                os.close(bound)
            pivotRoot(".", ".")
            umount(".", MNT_DETACH)
            os.chdir("/")
        except OSError as e:
            raise EnterError("chroot", f"cannot make {jail} the root "
                                       f"(pivot_root): {e.strerror}",
                             e.errno) from None
        return logTree

    def _minimalDev(self, logTree):
        if os.path.islink("/dev"):
            raise EnterError("mount", "the jail's /dev is a symlink: make it "
                                      "a directory")
        _makeDirectory("/dev", 0o755)
        mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
              "mode=755,size=64k,nr_inodes=64")
        old = os.umask(0)
        try:
            for name, major, minor in DEVICES:
                os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR,
                         os.makedev(major, minor))
            if logTree is not None:
                os.mknod("/dev/log", 0o666 | stat.S_IFREG)
                _syscall(_SYS_MOVE_MOUNT, ctypes.c_int(logTree),
                         ctypes.c_char_p(b""), ctypes.c_int(AT_FDCWD),
                         ctypes.c_char_p(b"/dev/log"),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
                os.close(logTree)
        finally:
            os.umask(old)
        mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID
              | MS_NOEXEC)

    def _protectProc(self):
        if not os.path.exists("/proc/self"):
            return
        for name in READ_ONLY_PROC:
            path = f"/proc/{name}"
            if not os.path.exists(path):
                continue
            mount(path, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY
                  | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def _init(self):
        """
        The jail's pid 1: set up the root, fork the program, then reap every
        process in the jail and forward signals until none is left.
        """
        iso = self.isolation
        self._waitGo()
        self._setupRoot()
        setProcessTitle("jailtwist-init")
        if iso.capabilities is not None:
            limitBoundingSet(iso.capabilities)
        setDumpable(False)
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC) \
            if os.path.exists("/dev/null") else None
        execRead, execWrite = os.pipe2(os.O_CLOEXEC)
        program = os.fork()
        if program == 0:
            os.close(execRead)
            try:
                _exec(self.spec, errorFd=execWrite)
            finally:
                os._exit(STEP_EXIT_CODES["exec"])
        os.close(execWrite)
        failure = b"".join(iter(lambda: os.read(execRead, 4096), b""))
        os.close(execRead)
        if failure:
            os.write(self.report, failure)
        else:
            _send(self.report, "ready")
        # The init keeps only what it needs: signalling the jail's
        # processes, and the pipe to the launcher.  Nothing it inherited
        # from the launcher (the host's syslog socket, the terminal) stays.
        trimCapabilities({"KILL"})
        if null is not None:
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        _closeAllBut({0, 1, 2, self.report})
        alive = True

        def forward(signum, frame):
            try:
                os.kill(program if alive else -1, signum)
            except OSError:
                pass

        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        status = 0
        while True:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            if pid == program:
                alive = False
                status = _exitStatus(raw)
                if not failure:
                    _send(self.report, f"exit {status} "
                                       f"{'last' if _reapAll() else 'more'}")
                os.close(self.report)
        os._exit(status)


def _closeAllBut(keep):
    """
    Close every file descriptor not in C{keep}.
    """
    low = 0
    for fd in sorted(keep) + [1 << 20]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1


def _reapAll():
    """
    Reap every exited child without waiting.

    @return: whether no child is left.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def _reopen(path, pinned):
    """
    Open directory C{path} again (in this mount namespace) and check that it
    is the directory C{pinned} was opened on.
    """
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                 | os.O_CLOEXEC)
    a, b = os.fstat(fd), os.fstat(pinned)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        os.close(fd)
        raise EnterError("chroot", f"{path} changed while the jail was being "
                                   f"set up: refusing to continue")
    return fd


def _cloneLogSocket(jailFd):
    """
    @return: a detached clone (C{open_tree}) of the jail's C{dev/log} socket,
        to be mounted over the new C{/dev/log}, or C{None} if the jail has
        no log socket.
    """
    try:
        dev = os.open("dev", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                      | os.O_CLOEXEC, dir_fd=jailFd)
    except OSError:
        return None
    try:
        try:
            st = os.stat("log", dir_fd=dev, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISSOCK(st.st_mode):
            return None
        AT_SYMLINK_NOFOLLOW = 0x100
        tree = _syscall(_SYS_OPEN_TREE, ctypes.c_int(dev),
                        ctypes.c_char_p(b"log"),
                        ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC
                                      | AT_SYMLINK_NOFOLLOW))
        if not stat.S_ISSOCK(os.fstat(tree).st_mode):
            os.close(tree)
            return None
        return tree
    finally:
        os.close(dev)


def _makeDirectory(path, mode):
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass


def _exec(spec, errorFd=None):
    """
    Become the program: uid/gid switch with no supplementary groups, the
    remaining capabilities cut to the ceiling, no_new_privs, signal
    dispositions and mask back to defaults, descriptors above 2 closed,
    exec.  Never returns.
    """
    iso = spec.isolation
    try:
        if iso.capabilities is not None:
            # Installed while still root (CAP_SYS_ADMIN needs no
            # no_new_privs for it); nothing below needs a filtered call.
            installSyscallFilter()
        else:
            installJoinFilter()
        if spec.uid is not None or spec.gid is not None:
            uid = spec.uid if spec.uid is not None else os.getuid()
            gid = spec.gid if spec.gid is not None else os.getgid()
            switchUser(uid, gid, ())
        if iso.capabilities is not None:
            trimCapabilities(iso.capabilities)
        if iso.noNewPrivs:
            setNoNewPrivs()
        restoreExecSignals(FORWARDED_SIGNALS)
        if iso.namespaced:
            # A new session has no controlling terminal: a jailed program
            # cannot push keystrokes (TIOCSTI) into the terminal of the
            # administrator who launched it.  Signals from that terminal
            # still reach it through the launcher.
            os.setsid()
        _closeAllBut({0, 1, 2} if errorFd is None else {0, 1, 2, errorFd})
        try:
            os.execv(spec.executable, spec.argv)
        except OSError as e:
            raise EnterError("exec", f"failed to execute {spec.executable} "
                                     f"in jail {spec.jail}: {e.strerror}",
                             e.errno) from None
    except EnterError as e:
        if errorFd is None:
            raise
        _sendError(errorFd, e)
        os._exit(e.exitCode)


# -- jaildaemon's probes (appended by the jaildaemon engineer) -------------------

def switchUserAfterJoining(uid, gid):
    """
    L{switchUser} with no supplementary groups, for a process that has
    joined a running jail's user namespace with L{joinJail}.  When that
    namespace denies C{setgroups} (as unprivileged container tools set it
    up), the groups cannot be dropped any more: the caller drops them
    before joining (C{os.setgroups([])} while still host root), and then
    only the gid and uid are switched here.  Any group still held is an
    error, never silently kept.
    """
    try:
        switchUser(uid, gid, ())
    except EnterError as e:
        if e.step != "setgid" or e.errno != errno.EPERM or os.getgroups():
            raise
        _setIds(uid, gid)
