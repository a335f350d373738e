# -*- test-case-name: tests.test_probe -*-
"""
The program a probe runs inside a jail: a few dozen bytes of machine code in
a minimal static ELF image, executed from a sealed memfd.

Why not a Python process: a fresh interpreter costs megabytes per probe and
its C{/proc/PID/exe} names a host path.  Why not a program from the jail: the
jail's files are not trusted.  This image is built here, in memory, so it
needs no compiler at install time; the kernel runs it from an anonymous,
sealed memfd, so inside the jail C{/proc/PID/exe} reads
C{/memfd:jailtwist-probe (deleted)} and nobody can write to it.

What the program does (x86-64, the listing is below)::

    prctl(PR_SET_DUMPABLE, 0)         /proc/PID/{environ,exe,fd,mem} closed
    prctl(PR_SET_NAME, argv[0])       comm (ps, pkill without -f) = title
    for (;;) pause();                 wait; SIGHUP's default action ends it

It never handles SIGHUP: the daemon recognises a fired probe by its wait
status, "killed by SIGHUP", which nothing else produces.  Everything else a
probe needs (namespaces, root, ids, parent-death signal, no descriptors, an
empty environment, C{argv = [title]}) is arranged before the C{execve}.
"""

import errno
import fcntl
import os
import platform
import struct

from jailtwist.errors import JailtwistError

#   0: bf 04 00 00 00     mov    edi, 4          PR_SET_DUMPABLE
#   5: 31 f6              xor    esi, esi        0
#   7: b8 9d 00 00 00     mov    eax, 157        __NR_prctl
#   c: 0f 05              syscall
#   e: 48 8b 74 24 08     mov    rsi, [rsp+8]    argv[0]
#  13: bf 0f 00 00 00     mov    edi, 15         PR_SET_NAME
#  18: b8 9d 00 00 00     mov    eax, 157        __NR_prctl
#  1d: 0f 05              syscall
#  1f: b8 22 00 00 00     mov    eax, 34         __NR_pause
#  24: 0f 05              syscall
#  26: eb f7              jmp    1f
_CODE = {
    "x86_64": (62, bytes.fromhex(
        "bf04000000" "31f6" "b89d000000" "0f05"
        "488b742408" "bf0f000000" "b89d000000" "0f05"
        "b822000000" "0f05" "ebf7")),
}

_BASE = 0x400000
_EHSIZE = 64
_PHENTSIZE = 56
_PT_LOAD = 1
_PT_GNU_STACK = 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4

MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
MFD_EXEC = 0x0010


def probeImage(machine=None):
    """
    @param machine: an C{os.uname().machine} value; the running machine's
        by default.
    @return: the probe program as the bytes of a static ELF executable.
    @raise JailtwistError: no probe program exists for C{machine}.
    """
    if machine is None:
        machine = platform.machine()
    if machine not in _CODE:
        raise JailtwistError(
            f"probes are built only for {', '.join(sorted(_CODE))}, "
            f"not {machine}")
    elfMachine, code = _CODE[machine]
    phnum = 2
    entryOffset = _EHSIZE + phnum * _PHENTSIZE
    size = entryOffset + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, elfMachine, 1, _BASE + entryOffset, _EHSIZE, 0,
        0, _EHSIZE, _PHENTSIZE, phnum, 0, 0, 0)
    load = struct.pack("<IIQQQQQQ", _PT_LOAD, _PF_R | _PF_X, 0, _BASE, _BASE,
                       size, size, 0x1000)
    stack = struct.pack("<IIQQQQQQ", _PT_GNU_STACK, _PF_R | _PF_W,
                        0, 0, 0, 0, 0, 16)
    return header + load + stack + code


def sealedProbe(machine=None):
    """
    Put the probe program into a new memfd, make it execute-only, and seal
    it against any change.

    @return: the memfd (close-on-exec; C{execve} through it with
        C{os.execve(fd, ...)} still works for an ELF image).
    """
    image = probeImage(machine)
    try:
        fd = os.memfd_create("jailtwist-probe",
                             MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        # Kernels before 6.3 know no MFD_EXEC; their memfds are executable.
        fd = os.memfd_create("jailtwist-probe",
                             MFD_CLOEXEC | MFD_ALLOW_SEALING)
    try:
        os.write(fd, image)
        # Execute-only: a program the account cannot read starts
        # non-dumpable, so no process of the account can catch the probe
        # between its exec and its own PR_SET_DUMPABLE.
        os.fchmod(fd, 0o111)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd
