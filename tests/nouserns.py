"""
Run a command in a new user namespace that maps every id to itself and
whose user.max_user_namespaces is 0: inside, no user namespace can be made
(as on a hardened host), while the kernel still reports the real ids to
unix socket peers.  Only the tests' processes are affected, not the
machine's sysctl.  Usage: nouserns.py COMMAND [ARGS...] (as root).
"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
a, b = os.pipe(); c, d = os.pipe()
parent = os.getpid()
pid = os.fork()
if pid == 0:
    os.close(b); os.close(c)
    if libc.unshare(0x10000000) != 0:
        os._exit(120)
    os.write(d, b"u"); os.close(d)
    os.read(a, 1); os.close(a)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    # The command (sshd, the suite) must not outlive this wrapper, which is
    # what the tests stop: a wrapper killed outright takes it along too.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(121)
    os.execvp(sys.argv[1], sys.argv[1:])
for each in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(each, lambda number, frame: os.kill(pid, number))
os.close(a); os.close(d)
os.read(c, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 4294967295\n")
os.write(b, b"g"); os.close(b)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
