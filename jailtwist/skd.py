# -*- test-case-name: tests.test_skd -*-
"""
The socket daemon behind C{skd} and C{twistd skd}: bind one socket and run a
program for every connection (or, for a datagram socket, for every burst of
datagrams), as Chris Webb's skd does.

The accept path is built for rate: the listening socket is read by a small
L{IReadDescriptor} of its own (not a Twisted protocol), every accepted
connection is handed to the child with C{posix_spawn} (the socket itself
becomes the child's stdin and stdout: no byte passes through this process),
and every child is reaped on the reactor's own C{SIGCHLD} wake-up.  Every
descriptor this process opens is close-on-exec, so a child inherits exactly
its 0, 1 and 2.

The pieces compose as services (L{SocketDaemon}, L{Supervisor}, L{PidFile},
L{StderrLog}, L{PrivilegeDrop}) in a C{MultiService}; their
C{privilegedStartService} steps run in skd's order: bind, pidfile, logger,
privilege drop; C{startService} then listens and starts accepting.
"""

import ctypes
import errno
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys

from twisted.application import service
from twisted.internet import process as twistedProcess
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from jailtwist.errors import JailtwistError
from jailtwist.notify import MANAGER_VARIABLES

log = Logger(namespace="jailtwist.skd")

#: The variables skd sets for a child; any of them found in skd's own
#: environment would describe some other connection, so they never pass.
CONNECTION_VARIABLES = frozenset([
    "PROTO", "TCPLOCALIP", "TCPLOCALPORT", "TCPREMOTEIP", "TCPREMOTEPORT",
    "TCPLOCALHOST", "TCPREMOTEHOST", "TCPREMOTEINFO",
    "PEERPID", "PEERUID", "PEERGID"])

#: Socket-activation variables describe descriptors of skd's own, which no
#: child inherits (see L{closeOnExec}).
ACTIVATION_VARIABLES = frozenset(
    ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"])

#: Unix socket paths are limited by C{struct sockaddr_un}.
UNIX_PATH_MAX = 107

#: Signals Python ignores that a child must get back at their default.
_RESET_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")
    if hasattr(signal, name))

_PEERCRED = struct.Struct("3i")

#: How many connections one readiness event may accept before the reactor
#: gets to run other work (Twisted's own ports use a similar bound).
ACCEPT_BURST = 64



class IProgramLauncher(Interface):
    """
    Starts the per-connection program.
    """

    program = Attribute("The program's name as given, for messages.")

    def prepare():
        """
        Check that the program can be run (after any privilege drop and
        chroot), raising L{JailtwistError} when it cannot.
        """

    def launch(stdio, environ):
        """
        Start the program.

        @param stdio: a descriptor to become the child's stdin and stdout, or
            L{None} to let the child inherit them.
        @param environ: the child's complete environment.
        @return: the child's pid.
        @raise OSError: when the child cannot be started.
        """

    def execute():
        """
        Replace the current process by the program (no socket bound).
        Returns only by raising L{JailtwistError}.
        """



class IListener(Interface):
    """
    One socket skd serves, bound in C{bind} and made ready in C{listen}.
    """

    socket = Attribute("The bound L{socket.socket}, once bound.")
    stream = Attribute("True for a stream socket, False for datagrams.")

    def bind():
        """
        Create and bind the socket (the privileged step).

        @raise JailtwistError: when it cannot be bound.
        """

    def listen():
        """
        Start listening (a stream socket) after any privilege drop.
        """

    def close():
        """
        Close the socket and remove what C{bind} created on disk.

        @return: L{None} or a L{Deferred} that fires when closed.
        """

    def describe():
        """
        @return: a short human description such as C{127.0.0.1:3000}.
        """



def _positiveInteger(value, option):
    if not value.isdigit() or int(value) <= 0:
        raise JailtwistError(f"{option} takes a positive integer argument")
    return int(value)



def parseInetAddress(spec):
    """
    Split skd's C{[INTERFACE:]PORT} (C{PORT}, C{HOST:PORT} or C{[IP]:PORT}).

    @return: C{(host, port, numeric)}; C{host} is L{None} for the wildcard.
    @raise JailtwistError: for a malformed specification.
    """
    form = ("port specification must be in form PORT, HOSTNAME:PORT or "
            "[IP]:PORT (IPv6 addresses in brackets)")
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise JailtwistError(
                f"port specification '{spec}' contains unbalanced '['")
        host, rest = spec[1:end], spec[end + 1:]
        if not rest.startswith(":"):
            raise JailtwistError(form)
        port, numeric = rest[1:], True
    elif ":" in spec:
        host, port = spec.split(":", 1)
        numeric = False
    else:
        host, port, numeric = None, spec, False
    if not host:
        host = None
    if not port:
        raise JailtwistError(form)
    return host, port, numeric



def _isLiteralAddress(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.split("%", 1)[0])
            return True
        except OSError:
            pass
    return False



def _ipText(address):
    """
    The textual IP of a socket address tuple, without an IPv6 scope.
    """
    return address[0].split("%", 1)[0]



@implementer(IListener)
class InetListener:
    """
    An internet socket bound as skd binds it: C{getaddrinfo} for the
    specification, the first address that binds wins, C{SO_REUSEADDR}.

    @ivar boundPort: the port actually bound (useful with port 0).
    """

    socket = None
    boundPort = None

    def __init__(self, spec, stream=True, backlog=10):
        self.spec = spec
        self.stream = stream
        self.backlog = backlog
        self.host, self.port, self.numeric = parseInetAddress(spec)

    def describe(self):
        return self.spec

    def bind(self):
        socketType = socket.SOCK_STREAM if self.stream else socket.SOCK_DGRAM
        flags = socket.AI_PASSIVE
        if self.numeric:
            flags |= socket.AI_NUMERICHOST
        elif self.host is not None and not _isLiteralAddress(self.host):
            flags |= socket.AI_ADDRCONFIG
        try:
            candidates = socket.getaddrinfo(
                self.host, self.port, socket.AF_UNSPEC, socketType, 0, flags)
        except (socket.gaierror, UnicodeError) as e:
            raise JailtwistError(
                f"host address or port '{self.spec}' does not exist "
                f"({getattr(e, 'strerror', None) or e})")
        failure = None
        for family, kind, proto, _, address in candidates:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
            except OSError as e:
                sock.close()
                failure = (address, e)
                continue
            self.socket = sock
            self.boundPort = sock.getsockname()[1]
            return
        address, e = failure
        hint = ""
        if e.errno == errno.EADDRINUSE:
            hint = " (is another server running on it?)"
        elif e.errno == errno.EACCES:
            hint = " (ports below 1024 need root)"
        raise JailtwistError(
            f"cannot bind {_hostPort(address)}: {e.strerror}{hint}")

    def listen(self):
        if self.stream:
            self.socket.listen(self.backlog)

    def close(self):
        if self.socket is not None:
            self.socket.close()



def _hostPort(address):
    if ":" in address[0]:
        return f"[{address[0]}]:{address[1]}"
    return f"{address[0]}:{address[1]}"



@implementer(IListener)
class UnixListener:
    """
    A unix socket bound at C{path}; a socket file already there is replaced
    (anything else is refused), and the file is removed on close when it is
    still the one this listener created.
    """

    socket = None

    def __init__(self, path, stream=True, backlog=10):
        self.path = path
        self.stream = stream
        self.backlog = backlog
        self._identity = None

    def describe(self):
        return self.path

    def bind(self):
        encoded = os.fsencode(self.path)
        if not encoded:
            raise JailtwistError("empty unix socket path")
        if len(encoded) > UNIX_PATH_MAX:
            raise JailtwistError(
                f"unix socket path too long ({len(encoded)} bytes, at most "
                f"{UNIX_PATH_MAX}): choose a shorter path")
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise JailtwistError(f"cannot bind {self.path}: {e.strerror}")
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise JailtwistError(
                    f"cannot bind {self.path}: it exists and is not a socket "
                    f"(remove it or choose another path)")
            os.unlink(self.path)
        socketType = socket.SOCK_STREAM if self.stream else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_UNIX, socketType)
        try:
            sock.bind(self.path)
        except OSError as e:
            sock.close()
            raise JailtwistError(f"cannot bind {self.path}: {e.strerror}")
        st = os.lstat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self.socket = sock

    def listen(self):
        if self.stream:
            self.socket.listen(self.backlog)

    def close(self):
        if self.socket is None:
            return
        self.socket.close()
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            os.unlink(self.path)



@implementer(IListener)
class EndpointListener:
    """
    A stream socket described by a Twisted endpoint string (C{tcp:...},
    C{unix:...}, C{systemd:domain=INET:index=0}).  The endpoint binds and
    listens in one step; skd then takes over the port's socket and accepts
    with its own reader, so the port itself never reads.
    """

    stream = True
    socket = None

    def __init__(self, description, reactor=None):
        self.description = description
        self._reactor = reactor
        self._port = None

    def describe(self):
        return self.description

    def bind(self):
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory, Protocol
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        try:
            endpoint = serverFromString(reactor, self.description)
        except IndexError:
            raise JailtwistError(
                f"no inherited socket for '{self.description}': start skd "
                f"through socket activation (LISTEN_FDS and LISTEN_PID)")
        except (ValueError, TypeError, KeyError) as e:
            raise JailtwistError(
                f"bad endpoint '{self.description}': {e}")
        result = []
        endpoint.listen(Factory.forProtocol(Protocol)).addBoth(result.append)
        if not result:
            raise JailtwistError(
                f"endpoint '{self.description}' did not listen at once")
        port = result[0]
        if not hasattr(port, "socket"):
            reason = getattr(port, "value", port)
            raise JailtwistError(
                f"cannot listen on '{self.description}': {reason}")
        port.stopReading()
        self._port = port
        self.socket = port.socket

    def listen(self):
        pass

    def close(self):
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()



@implementer(IListener)
class InheritedListener:
    """
    The one socket a service manager passed by socket activation (systemd's
    C{LISTEN_PID}, C{LISTEN_FDS}, C{LISTEN_FDNAMES}; the socket is
    descriptor 3).  Its family and type come from the socket itself, so a
    C{ListenStream=} of any family and a C{ListenDatagram=} are all served
    the same way (a datagram socket in inetd's "wait" mode).
    """

    FIRST = 3
    socket = None
    stream = True

    def __init__(self, environ=None, getpid=os.getpid):
        self._environ = os.environ if environ is None else environ
        self._getpid = getpid
        self._name = None

    def describe(self):
        if self.socket is None:
            return "the socket-activation socket"
        try:
            address = self.socket.getsockname()
        except OSError:
            address = "?"
        if isinstance(address, tuple):
            address = _hostPort(address)
        elif not address:
            address = "an unnamed socket"
        name = f" ({self._name})" if self._name else ""
        return f"{address}{name}, passed as fd {self.FIRST}"

    def bind(self):
        environ = self._environ
        if environ.get("LISTEN_PID") != str(self._getpid()):
            raise JailtwistError(
                "--activated: no socket was passed to this process (LISTEN_PID "
                "is not its pid): start skd from a socket unit such as "
                "skd@NAME.socket")
        count = environ.get("LISTEN_FDS", "")
        if count != "1":
            raise JailtwistError(
                f"--activated serves exactly one socket, but LISTEN_FDS is "
                f"{count!r}: give the socket unit one Listen line")
        names = environ.get("LISTEN_FDNAMES", "").split(":")
        self._name = names[0] if names[0] else None
        try:
            st = os.fstat(self.FIRST)
        except OSError as e:
            raise JailtwistError(f"--activated: fd {self.FIRST}: {e.strerror}")
        if not stat.S_ISSOCK(st.st_mode):
            raise JailtwistError(f"--activated: fd {self.FIRST} is not a "
                                 f"socket")
        sock = socket.socket(fileno=self.FIRST)
        if sock.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock.detach()
            raise JailtwistError("--activated: the socket is neither a "
                                 "stream nor a datagram socket")
        self.stream = sock.type == socket.SOCK_STREAM
        if self.stream and not sock.getsockopt(socket.SOL_SOCKET,
                                               socket.SO_ACCEPTCONN):
            sock.detach()
            raise JailtwistError(
                "--activated: the stream socket is not listening (the socket "
                "unit must say Accept=no: skd accepts connections itself)")
        os.set_inheritable(self.FIRST, False)
        self.socket = sock

    def listen(self):
        # Listening already, with the socket unit's Backlog=.
        pass

    def close(self):
        # The socket's file, if any, belongs to the service manager.
        if self.socket is not None:
            self.socket.close()
            self.socket = None



def connectionEnvironment(connection, remote):
    """
    The variables skd sets for a stream connection.

    @param connection: the accepted L{socket.socket}.
    @param remote: the peer address C{accept} returned.
    @return: a L{dict} of variables, and the C{-v} message as
        C{(format, fields)}.
    """
    family = connection.family
    if family in (socket.AF_INET, socket.AF_INET6):
        env = {"PROTO": "TCP"}
        try:
            local = connection.getsockname()
        except OSError:
            pass
        else:
            env["TCPLOCALIP"] = _ipText(local)
            env["TCPLOCALPORT"] = str(local[1])
        env["TCPREMOTEIP"] = host = _ipText(remote)
        env["TCPREMOTEPORT"] = port = str(remote[1])
        return env, ("Accepted connection from [{host}]:{port}",
                     {"host": host, "port": port})
    env = {"PROTO": "UNIX-STREAM"}
    try:
        pid, uid, gid = _PEERCRED.unpack(connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return env, ("Accepted local connection", {})
    env["PEERPID"], env["PEERUID"] = str(pid), str(uid)
    env["PEERGID"] = str(gid)
    return env, ("Accepted local connection from pid {pid} "
                 "(uid = {uid}, gid = {gid})",
                 {"pid": pid, "uid": uid, "gid": gid})



def datagramEnvironment(family, sender):
    """
    The variables skd sets for a datagram handler, and the C{-v} message.
    """
    if family in (socket.AF_INET, socket.AF_INET6):
        return {"PROTO": "UDP"}, (
            "Received initial datagram from [{host}]:{port}",
            {"host": _ipText(sender), "port": sender[1]})
    return {"PROTO": "UNIX-DGRAM"}, ("Received initial local datagram", {})



def baseEnvironment(environ=None):
    """
    skd's own environment without any connection, socket-activation or
    service-manager variables (a handler must not notify as skd).
    """
    if environ is None:
        environ = os.environ
    return {k: v for k, v in environ.items()
            if k not in CONNECTION_VARIABLES and k not in ACTIVATION_VARIABLES
            and k not in MANAGER_VARIABLES}



class ConnectionEnvironment(dict):
    """
    A child's complete environment (a plain C{dict} to everyone) that also
    remembers its two layers: skd's own variables (C{base}, the same object
    for every connection) and the connection's (C{extra}), so that
    L{LibcSpawn} encodes only the latter for each connection.
    """

    def __init__(self, base, extra):
        dict.__init__(self, base)
        self.update(extra)
        self.base = base
        self.extra = extra



def resolveProgram(program, environ=None):
    """
    Find C{program} as C{execvp} would, once.

    @return: an absolute or relative path that can be executed.
    @raise JailtwistError: when there is no such executable.
    """
    if environ is None:
        environ = os.environ
    if "/" in program:
        if not os.path.isfile(program):
            raise JailtwistError(f"{program}: no such program")
        if not os.access(program, os.X_OK):
            raise JailtwistError(f"{program}: not executable")
        return program
    found = shutil.which(program, path=environ.get("PATH", os.defpath))
    if found is None:
        path = environ.get("PATH", os.defpath)
        raise JailtwistError(f"{program}: not found in PATH ({path})")
    return found



class LibcSpawn:
    """
    C{posix_spawn(3)} called through ctypes.  The spawn attributes (empty
    signal mask; SIGPIPE and SIGXFSZ, which Python ignores, back at their
    default) and the argument array are built once, and skd's own
    environment entries are encoded once, not for every connection as
    C{os.posix_spawn} does.
    """

    # glibc and musl agree on these (<spawn.h>).
    _SETSIGDEF = 0x04
    _SETSIGMASK = 0x08
    # Generous sizes for opaque glibc structures (80, 336 and 128 bytes on
    # x86_64); the init functions write only within the real size.
    _ACTIONS_SIZE = 512
    _ATTR_SIZE = 1024
    _SIGSET_SIZE = 256
    #: Room for a connection's own variables in the reused C{envp}.
    _EXTRA_SLOTS = 16
    #: File actions kept for this many descriptor numbers at most.
    _DUP_CACHE_SIZE = 32

    def __init__(self):
        # posix_spawn releases the GIL while the kernel starts the child
        # (CDLL); the small set-up calls need not (PyDLL).
        released = ctypes.CDLL(None, use_errno=True)
        libc = ctypes.PyDLL(None, use_errno=True)
        p, i = ctypes.c_void_p, ctypes.c_int
        self._spawn = self._function(
            released.posix_spawn, [ctypes.POINTER(i), ctypes.c_char_p, p, p,
                                   ctypes.POINTER(ctypes.c_char_p),
                                   ctypes.POINTER(ctypes.c_char_p)])
        self._actionsInit = self._function(
            libc.posix_spawn_file_actions_init, [p])
        self._actionsDup2 = self._function(
            libc.posix_spawn_file_actions_adddup2, [p, i, i])
        self._actionsDestroy = self._function(
            libc.posix_spawn_file_actions_destroy, [p])
        attrInit = self._function(libc.posix_spawnattr_init, [p])
        setFlags = self._function(libc.posix_spawnattr_setflags,
                                  [p, ctypes.c_short])
        setMask = self._function(libc.posix_spawnattr_setsigmask, [p, p])
        setDefault = self._function(libc.posix_spawnattr_setsigdefault,
                                    [p, p])
        emptySet = self._function(libc.sigemptyset, [p])
        addSet = self._function(libc.sigaddset, [p, i])
        self._encoded = {}
        self._envBase = self._envArray = None
        self._envUsed = 0
        self._dupCache = {}
        self._attr = ctypes.create_string_buffer(self._ATTR_SIZE)
        mask = ctypes.create_string_buffer(self._SIGSET_SIZE)
        default = ctypes.create_string_buffer(self._SIGSET_SIZE)
        for error in (attrInit(self._attr), emptySet(mask),
                      emptySet(default),
                      *(addSet(default, int(n)) for n in _RESET_SIGNALS),
                      setMask(self._attr, mask),
                      setDefault(self._attr, default),
                      setFlags(self._attr,
                               self._SETSIGDEF | self._SETSIGMASK)):
            if error:
                raise OSError(ctypes.get_errno() or error,
                              "posix_spawnattr set-up failed")

    def _environment(self, environ):
        """
        The C{envp} array for C{environ}.  For a L{ConnectionEnvironment}
        whose base was seen before, one array is reused: its base part is
        filled once and only the connection's entries are written (a spawn
        is over, and the child has its own copy, when L{run} returns; this
        makes one L{LibcSpawn} usable from one thread only).
        """
        base = getattr(environ, "base", None)
        extra = getattr(environ, "extra", None)
        if base is None or len(extra) > self._EXTRA_SLOTS or any(
                key in base for key in extra):
            return (ctypes.c_char_p * (len(environ) + 1))(
                *self._encode(environ), None)
        if self._envBase is not base:
            entries = self._encode(base)
            self._envArray = (ctypes.c_char_p * (
                len(entries) + self._EXTRA_SLOTS + 1))(*entries)
            self._envBase = base
            self._envUsed = len(entries)
        array, at = self._envArray, self._envUsed
        fs = os.fsencode
        for key, value in extra.items():
            array[at] = fs(key) + b"=" + fs(value)
            at += 1
        array[at] = None
        return array

    def _encode(self, environ):
        """
        C{KEY=VALUE} bytes for C{environ}; an entry whose value is the very
        object seen before (skd's own variables, the same for every
        connection) is not encoded again.
        """
        cache = self._encoded
        out = []
        for key, value in environ.items():
            hit = cache.get(key)
            if hit is not None and hit[0] is value:
                out.append(hit[1])
            else:
                entry = os.fsencode(key) + b"=" + os.fsencode(value)
                cache[key] = (value, entry)
                out.append(entry)
        return out

    def _dupActions(self, stdio):
        """
        File actions that make C{stdio} the child's 0 and 1.  Accepted
        connections keep getting the same lowest free descriptor, so the
        actions are built once per descriptor number and kept (building
        them costs four C calls, and glibc checks the descriptor limit
        twice per C{dup2} action).
        """
        actions = self._dupCache.get(stdio)
        if actions is None:
            actions = ctypes.create_string_buffer(self._ACTIONS_SIZE)
            for error in (self._actionsInit(actions),
                          self._actionsDup2(actions, stdio, 0),
                          self._actionsDup2(actions, stdio, 1)):
                if error:
                    self._actionsDestroy(actions)
                    raise OSError(error, os.strerror(error))
            if len(self._dupCache) >= self._DUP_CACHE_SIZE:
                self._actionsDestroy(self._dupCache.pop(
                    next(iter(self._dupCache))))
            self._dupCache[stdio] = actions
        return actions

    @staticmethod
    def _function(function, argtypes):
        function.argtypes = argtypes
        function.restype = ctypes.c_int
        return function

    def arguments(self, argv):
        """
        @return: C{argv} as the C array C{posix_spawn} takes (reusable).
        """
        return (ctypes.c_char_p * (len(argv) + 1))(
            *(os.fsencode(a) for a in argv), None)

    def prepare(self, executable, argv, environ, stdio):
        """
        Build everything a spawn needs; L{run} then only calls into the C
        library.

        @param argv: a list, or an array from L{arguments}.
        """
        if isinstance(argv, list):
            argv = self.arguments(argv)
        env = self._environment(environ)
        actions = None if stdio is None else self._dupActions(stdio)
        return (os.fsencode(executable), argv, env, actions)

    def run(self, prepared):
        """
        Spawn what L{prepare} built.

        @return: the child's pid.
        @raise OSError: when the child could not be started or exec'd.
        """
        executable, argv, env, actions = prepared
        pid = ctypes.c_int()
        error = self._spawn(ctypes.byref(pid), executable, actions,
                            self._attr, argv, env)
        if error:
            raise OSError(error, os.strerror(error))
        return pid.value

    def __call__(self, executable, argv, environ, stdio):
        """
        Spawn C{executable} with C{argv} and C{environ}, with C{stdio} (if
        not L{None}) as its 0 and 1.

        @return: the child's pid.
        @raise OSError: when the child could not be started or exec'd.
        """
        return self.run(self.prepare(executable, argv, environ, stdio))



def _libcSpawn():
    try:
        return LibcSpawn()
    except (OSError, AttributeError):
        return None



@implementer(IProgramLauncher)
class SpawnLauncher:
    """
    Start the program with C{posix_spawn}: the connection is dup'ed onto the
    child's 0 and 1, signals Python ignores are reset, the signal mask is
    cleared.  Nothing runs in the child before C{execve}.
    """

    def __init__(self, argv, environ=None, libc=True):
        """
        @param libc: use L{LibcSpawn} when the C library offers it (it
            costs less per child here than C{os.posix_spawn}, which
            converts the whole environment every time), else
            C{os.posix_spawn}.
        """
        self.argv = list(argv)
        self.program = self.argv[0]
        self._environ = environ
        self.executable = None
        self._arguments = None
        self._libc = _libcSpawn() if libc else None

    def prepare(self):
        self.executable = resolveProgram(self.program, self._environ)
        if self._libc is not None:
            self._arguments = self._libc.arguments(self.argv)

    def launch(self, stdio, environ):
        if self._libc is not None:
            return self._libc.run(self._libc.prepare(
                self.executable, self._arguments, environ, stdio))
        actions = ()
        if stdio is not None:
            actions = ((os.POSIX_SPAWN_DUP2, stdio, 0),
                       (os.POSIX_SPAWN_DUP2, stdio, 1))
        return os.posix_spawn(
            self.executable, self.argv, environ, file_actions=actions,
            setsigmask=(), setsigdef=_RESET_SIGNALS)

    def execute(self):
        for signum in _RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        executable = self.executable or resolveProgram(self.program)
        try:
            os.execv(executable, self.argv)
        except OSError as e:
            raise JailtwistError(f"cannot run {self.program}: {e.strerror}")



@implementer(IProgramLauncher)
class JailLauncher:
    """
    Start the program inside a jail: fork, put the connection on 0 and 1,
    optionally unshare namespaces (C{net}: no network but the connection),
    enter the jail through L{jailtwist.enter.confine} (chroot into the jail,
    optional capability ceiling, optional uid/gid switch, optional
    no_new_privs), then C{execvpe} (PROG is looked up in the jail's PATH).

    The jail is checked as jailkit's C tools check one (root-owned, not
    writable by group or others) and opened once; every child chroots
    through that descriptor, so renaming the directory later changes
    nothing.
    """

    #: Namespaces a per-connection child may be put in (a pid namespace
    #: would need another fork and an init, so it is not offered).
    NAMESPACES = ("net", "ipc", "uts", "mnt")

    def __init__(self, argv, jail, uid=None, gid=None, capabilities=None,
                 noNewPrivs=False, namespaces=()):
        """
        @param namespaces: names from L{NAMESPACES} to unshare before
            entering the jail: with C{net}, the handler has no network at
            all except the connection it was given.
        """
        self.namespaces = tuple(namespaces)
        for name in self.namespaces:
            if name not in self.NAMESPACES:
                raise JailtwistError(
                    f"unknown namespace '{name}' for --unshare: use "
                    f"{', '.join(self.NAMESPACES)}")
        self.argv = list(argv)
        self.program = self.argv[0]
        self.jail = jail
        self.uid = uid
        self.gid = gid
        self.capabilities = capabilities
        self.noNewPrivs = noNewPrivs
        self._root = None
        self._bind = False

    def prepare(self):
        from jailtwist.jail import Jail
        jail = Jail(self.jail)
        jail.checkSafe(parents=False)
        if self._root is None:
            self._root = jail.openRoot()
            from jailtwist.jail import bindListPresent
            self._bind = bindListPresent(self._root)
        # Built once here, not in every connection's child.
        from jailtwist.enter import compileSyscallFilter
        compileSyscallFilter("ceiling" if self.capabilities is not None
                             else "join")

    def _confinement(self, root=None):
        from jailtwist.enter import Confinement
        groups = () if self.gid is None else (self.gid,)
        return Confinement(root=self._root if root is None else root,
                           uid=self.uid, gid=self.gid,
                           groups=groups, capabilities=self.capabilities,
                           noNewPrivs=self.noNewPrivs,
                           syscallFilter=self.capabilities is not None)

    def _unshareFlags(self):
        from jailtwist.enter import NAMESPACES
        flags = dict(NAMESPACES)
        result = 0
        for name in self.namespaces:
            result |= flags[name]
        return result

    def _enterBindJail(self, flags):
        """
        A bind jail, in the child for one connection: its list is read and
        checked now (so a host upgrade since skd started is what the jail
        gets) from the descriptor opened at start, and assembled in the
        child's own private mount namespace before the chroot.  Host paths
        the host lacks are reported on stderr and skipped.
        """
        from jailtwist import bindlist
        from jailtwist.enter import confine, enterBindJailNamespace
        binds = bindlist.prepareBinds(self._root, self.jail)
        try:
            for missing in binds.checked.missing:
                os.write(2, f"skd: {self.jail}: {missing}\n".encode(
                    "utf-8", "replace"))
            root = enterBindJailNamespace(binds, flags)
            try:
                confine(self._confinement(root))
            finally:
                os.close(root)
        finally:
            binds.close()

    def launch(self, stdio, environ):
        from jailtwist.enter import confine, unshare
        confinement = self._confinement()
        flags = self._unshareFlags()
        pid = os.fork()
        if pid:
            return pid
        try:
            signal.set_wakeup_fd(-1)
            if stdio is not None:
                os.dup2(stdio, 0)
                os.dup2(stdio, 1)
            for signum in _RESET_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            if self._bind:
                self._enterBindJail(flags)
            else:
                if flags:
                    unshare(flags)
                confine(confinement)
            os.execvpe(self.program, self.argv, environ)
        except BaseException as e:
            reason = getattr(e, "strerror", None) or str(e)
            try:
                os.write(2, f"Exec failed: {self.program} in {self.jail}: "
                            f"{reason}\n".encode("utf-8", "replace"))
            finally:
                os._exit(127)

    def execute(self):
        from jailtwist.enter import confine, unshare
        for signum in _RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        flags = self._unshareFlags()
        if self._bind:
            self._enterBindJail(flags)
        else:
            if flags:
                unshare(flags)
            confine(self._confinement())
        try:
            os.execvp(self.program, self.argv)
        except OSError as e:
            raise JailtwistError(f"cannot run {self.program} in {self.jail}: "
                                 f"{e.strerror}")



@implementer(IReadDescriptor)
class _Readable:
    """
    A descriptor the reactor watches for one callback.
    """

    def __init__(self, fd, callback, prefix):
        self._fd = fd
        self._callback = callback
        self._prefix = prefix

    def fileno(self):
        return self._fd

    def doRead(self):
        # An unexpected error must not make the reactor drop this reader
        # (skd would silently stop accepting): report it and carry on.
        try:
            return self._callback()
        except Exception:
            log.failure("Unexpected error in {prefix}", prefix=self._prefix)

    def connectionLost(self, reason):
        pass

    def logPrefix(self):
        return self._prefix



class ChildWatch:
    """
    Reap one child when its pidfd becomes readable, then call
    C{onExit(pid, status)} with the raw wait status.
    """

    #: Without a pidfd (out of descriptors), poll this often instead.
    pollInterval = 0.1

    def __init__(self, reactor, pid, onExit):
        self.pid = pid
        self._reactor = reactor
        self._onExit = onExit
        self._pidfd = None
        self._poll = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._poll = reactor.callLater(self.pollInterval, self._reap)
            return
        self._reader = _Readable(self._pidfd, self._reap, "skd child")
        reactor.addReader(self._reader)

    def _reap(self):
        self._poll = None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            if self._pidfd is None:
                self._poll = self._reactor.callLater(self.pollInterval,
                                                     self._reap)
            return
        self.close()
        self._onExit(self.pid, status)

    def close(self):
        if self._pidfd is not None:
            self._reactor.removeReader(self._reader)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None



class SigchldReaper:
    """
    Reap watched children when the reactor's own C{SIGCHLD} wake-up runs
    C{twisted.internet.process.reapAllProcesses}.  A connection then costs
    no pidfd, no reader and no extra reactor event: the reactor wakes for
    C{SIGCHLD} anyway, and one wake-up reaps every child that has exited.

    Children of this process that are not watched here (Twisted's own, or
    a L{ChildWatch}'s) are never reaped here: C{waitid(WNOWAIT)} only looks.
    """

    #: Our key in Twisted's table of reap handlers; never a pid, so it
    #: cannot collide with a C{spawnProcess} child's entry.
    key = "jailtwist.skd"

    def __init__(self):
        self.watched = {}

    def watch(self, pid, onExit):
        if not self.watched:
            twistedProcess.reapProcessHandlers[self.key] = self
        self.watched[pid] = onExit
        return _ReapedChild(self, pid)

    def forget(self, pid):
        self.watched.pop(pid, None)
        if not self.watched:
            twistedProcess.reapProcessHandlers.pop(self.key, None)

    def reapProcess(self):
        """
        Called by C{reapAllProcesses}: reap every watched child that has
        exited.
        """
        peek = os.WEXITED | os.WNOHANG | os.WNOWAIT
        while self.watched:
            try:
                info = os.waitid(os.P_ALL, 0, peek)
            except ChildProcessError:
                return
            if info is None:
                return
            if info.si_pid not in self.watched:
                # Someone else's child comes first; look at ours one by one.
                for pid in list(self.watched):
                    self._reap(pid, os.WNOHANG)
                return
            self._reap(info.si_pid, 0)

    def _reap(self, pid, flags):
        try:
            done, status = os.waitpid(pid, flags)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            onExit = self.watched[pid]
            self.forget(pid)
            try:
                onExit(pid, status)
            except Exception:
                # The other children must still be reaped in this pass.
                log.failure("Error handling the exit of pid {pid}", pid=pid)



class _ReapedChild:
    """
    A child watched by a L{SigchldReaper}; C{close} stops watching it.
    """

    def __init__(self, reaper, pid):
        self.pid = pid
        self._reaper = reaper

    def close(self):
        self._reaper.forget(self.pid)



_reaper = SigchldReaper()


def watchChildExit(reactor, pid, onExit):
    """
    Watch child C{pid} and call C{onExit(pid, status)} once it is reaped:
    through the reactor's C{SIGCHLD} wake-up when the running reactor has
    installed one (it has in C{skd} and C{twistd}), else through a
    L{ChildWatch}.
    """
    if callable(signal.getsignal(signal.SIGCHLD)) and reactor.running:
        return _reaper.watch(pid, onExit)
    return ChildWatch(reactor, pid, onExit)



def describeExit(program, pid, status):
    """
    @return: C{(format, fields)} for a child's wait status.
    """
    if os.WIFSIGNALED(status):
        return ("{program} (pid {pid}) was terminated by signal {signal}",
                {"program": program, "pid": pid,
                 "signal": os.WTERMSIG(status)})
    return ("{program} (pid {pid}) exited with status {status}",
            {"program": program, "pid": pid,
             "status": os.waitstatus_to_exitcode(status)})



def ensureStandardDescriptors():
    """
    Open /dev/null on any of 0, 1, 2 that is closed, so that no socket ever
    lands there (a child's 0/1/2 must be exactly what skd gives it).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            else:
                os.set_inheritable(fd, True)



def closeOnExec():
    """
    Mark every descriptor above 2 close-on-exec, including any skd itself
    inherited (a socket-activation descriptor, a stray pipe from whoever
    started it), so that a child inherits only its 0, 1 and 2.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        fds = range(3, min(soft, 1 << 16))
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass



class _ChildService(service.Service):
    """
    What L{SocketDaemon} and L{Supervisor} share: the reactor (injected, or
    the global one looked up when first needed) and the report of a child's
    exit.
    """

    _reactor = None
    verbose = False

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def _reportExit(self, pid, status):
        if self.verbose:
            message, fields = describeExit(self.launcher.program, pid, status)
            log.info(message, **fields)



class SocketDaemon(_ChildService):
    """
    Serve one L{IListener}: for a stream socket, accept every connection and
    start the program on it without waiting for it; for a datagram socket,
    start the program on the socket itself when a datagram is waiting and
    look again only when it has exited.

    @ivar children: the running children, by pid.
    """

    name = "skd"

    def __init__(self, listener, launcher, maxClients=0, noDelay=False,
                 verbose=False, environ=None, announce=None, reactor=None,
                 watchChild=None):
        """
        @param listener: an L{IListener}.
        @param launcher: an L{IProgramLauncher}.
        @param maxClients: stop accepting at this many children (0: never).
        @param noDelay: set C{TCP_NODELAY} on every accepted TCP connection.
        @param verbose: report every connection and every child's exit.
        @param environ: skd's environment (default: C{os.environ}, read
            when the service starts, after any privilege drop).
        @param announce: called with the bound port, once listening, when
            port 0 was asked for (skd prints it on stdout).
        @param watchChild: called as C{watchChild(reactor, pid, onExit)} to
            watch a child; L{watchChildExit} by default.
        """
        self.listener = listener
        self.launcher = launcher
        self.maxClients = maxClients
        self.noDelay = noDelay
        self.verbose = verbose
        self._environ = environ
        self._announce = announce
        self._reactor = reactor
        self._watchChild = watchChildExit if watchChild is None else watchChild
        self.children = {}
        self._reader = None
        self._reading = False
        self._retry = None
        self._base = None

    def privilegedStartService(self):
        self.listener.bind()
        closeOnExec()
        _ChildService.privilegedStartService(self)

    def startService(self):
        if self.listener.socket is None:
            self.listener.bind()
            closeOnExec()
        ensureStandardDescriptors()
        self.launcher.prepare()
        try:
            self.listener.listen()
        except OSError as e:
            raise JailtwistError(
                f"cannot listen on {self.listener.describe()}: {e.strerror}")
        port = getattr(self.listener, "boundPort", None)
        if (self._announce is not None and port is not None
                and getattr(self.listener, "port", None) == "0"):
            self._announce(port)
        sock = self.listener.socket
        self._base = baseEnvironment(self._environ)
        if self.listener.stream:
            sock.setblocking(False)
            callback = self._acceptSome
        else:
            sock.setblocking(True)
            callback = self._receive
        self._reader = _Readable(sock.fileno(), callback, "skd")
        service.Service.startService(self)
        self._startReading()

    def stopService(self):
        service.Service.stopService(self)
        self._stopReading()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        for watch in list(self.children.values()):
            watch.close()
        self.children.clear()
        return self.listener.close()

    def _startReading(self):
        if not self._reading and self.running:
            self._reading = True
            self.reactor.addReader(self._reader)

    def _stopReading(self):
        if self._reading:
            self._reading = False
            self.reactor.removeReader(self._reader)

    def _full(self):
        return self.maxClients and len(self.children) >= self.maxClients

    def _acceptSome(self):
        sock = self.listener.socket
        for _ in range(ACCEPT_BURST):
            if self._full():
                self._stopReading()
                return
            try:
                connection, remote = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO,
                               errno.EPERM):
                    continue
                log.error("Accept failed: {error}", error=e.strerror)
                self._stopReading()
                self._retry = self.reactor.callLater(1.0, self._resume)
                return
            try:
                self._serve(connection, remote)
            finally:
                connection.close()

    def _resume(self):
        self._retry = None
        if not self._full():
            self._startReading()

    def _serve(self, connection, remote):
        env, (message, fields) = connectionEnvironment(connection, remote)
        if self.noDelay and connection.family != socket.AF_UNIX:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.verbose:
            log.info(message, **fields)
        self._launch(connection.fileno(),
                     ConnectionEnvironment(self._base, env))

    def _launch(self, stdio, environ):
        try:
            pid = self.launcher.launch(stdio, environ)
        except OSError as e:
            return self._started(None, e)
        return self._started(pid, None)

    def _started(self, pid, error):
        if error is not None:
            log.error("Exec failed: {program}: {error}",
                      program=self.launcher.program,
                      error=error.strerror or error)
            return None
        self.children[pid] = self._watchChild(self.reactor, pid,
                                              self._childExited)
        if self.verbose:
            log.info("Started {program} (pid {pid})",
                     program=self.launcher.program, pid=pid)
        return pid

    def _childExited(self, pid, status):
        self.children.pop(pid, None)
        self._reportExit(pid, status)
        if self.listener.stream:
            if self._retry is None and not self._full():
                self._startReading()
        elif not self.children:
            self._startReading()

    def _receive(self):
        sock = self.listener.socket
        try:
            _, sender = sock.recvfrom(0, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.error("Recv failed: {error}", error=e.strerror)
            return
        env, (message, fields) = datagramEnvironment(sock.family, sender)
        if self.verbose:
            log.info(message, **fields)
        sock.setblocking(True)
        self._stopReading()
        if self._launch(sock.fileno(),
                        ConnectionEnvironment(self._base, env)) is None:
            # Nothing will read it: drop the datagram rather than spin.
            try:
                sock.recv(1, socket.MSG_DONTWAIT)
            except OSError:
                pass
            self._startReading()



class Supervisor(_ChildService):
    """
    No socket: run the program with skd's own stdio (and whatever else skd
    inherited, as skd passes it on); when it exits, run it again
    (C{restart}) or stop the reactor.  A program that ran for less
    than C{minimumRun} seconds is restarted only after that long, so a
    program that cannot start does not spin.
    """

    name = "skd"
    minimumRun = 1.0

    def __init__(self, launcher, restart=False, verbose=False, environ=None,
                 reactor=None):
        self.launcher = launcher
        self.restart = restart
        self.verbose = verbose
        self._environ = environ
        self._reactor = reactor
        self.child = None
        self.exitStatus = None
        self._started = None
        self._pending = None

    def startService(self):
        ensureStandardDescriptors()
        self.launcher.prepare()
        service.Service.startService(self)
        self._start()

    def stopService(self):
        service.Service.stopService(self)
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self.child is not None:
            self.child.close()
            self.child = None

    def _start(self):
        self._pending = None
        if not self.running:
            return
        environ = dict(os.environ if self._environ is None else self._environ)
        if self.verbose:
            log.info("Started {program}", program=self.launcher.program)
        self._started = self.reactor.seconds()
        try:
            pid = self.launcher.launch(None, environ)
        except OSError as e:
            log.error("Exec failed: {program}: {error}",
                      program=self.launcher.program, error=e.strerror or e)
            self._finished(1 << 8)
            return
        self.child = watchChildExit(self.reactor, pid, self._exited)

    def _exited(self, pid, status):
        self.child = None
        self._reportExit(pid, status)
        self._finished(status)

    def _finished(self, status):
        self.exitStatus = os.waitstatus_to_exitcode(status)
        if not self.running:
            return
        if not self.restart:
            self.reactor.stop()
            return
        ran = self.reactor.seconds() - self._started
        self._pending = self.reactor.callLater(
            max(0.0, self.minimumRun - ran), self._start)



class PidFile(service.Service):
    """
    Write the daemon's pid to C{path} (a symlink there is refused) and
    remove it when the service stops, if it still holds this pid.
    """

    def __init__(self, path, getpid=os.getpid):
        self.path = path
        self._getpid = getpid
        self._written = None

    def privilegedStartService(self):
        pid = self._getpid()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise JailtwistError(f"cannot write pidfile {self.path}: "
                                 f"{e.strerror}")
        with os.fdopen(fd, "w") as f:
            f.write(f"{pid}\n")
        self._written = pid
        service.Service.privilegedStartService(self)

    def stopService(self):
        service.Service.stopService(self)
        if self._written is None:
            return
        try:
            with open(self.path) as f:
                mine = f.read().strip() == str(self._written)
            if mine:
                os.unlink(self.path)
        except OSError:
            pass



#: syslog facility and priority names (as C{<sys/syslog.h>} spells them).
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
    "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)}}
PRIORITIES = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
    "info": 6, "debug": 7}
_PRIORITY_ALIASES = {"panic": "emerg", "error": "err", "warn": "warning"}



def _decode(name, table, shift):
    """
    A syslog name, or a number as C{<sys/syslog.h>} encodes it (facilities
    shifted left by 3, as skd decodes them), to its canonical name.
    """
    if name.lower() in table:
        return name.lower()
    if name.lower() in _PRIORITY_ALIASES and table is PRIORITIES:
        return _PRIORITY_ALIASES[name.lower()]
    if name.isdigit():
        value = int(name)
        if value % (1 << shift) == 0:
            for known, code in table.items():
                if code == value >> shift:
                    return known
    return None



def parseLogSpec(spec):
    """
    Parse skd's C{-L} argument.

    @return: C{("truncate", path)}, C{("append", path)} or
        C{("syslog", tag, facility, priority)} with C{logger(1)}'s names.
    @raise JailtwistError: for an unknown facility or priority.
    """
    if spec.startswith(">>"):
        path = spec[2:].lstrip(" \t")
        kind = "append"
    elif spec.startswith(">"):
        path = spec[1:].lstrip(" \t")
        kind = "truncate"
    else:
        tag, _, level = spec.partition(":")
        if not tag:
            raise JailtwistError(
                f"invalid log specification '{spec}': the tag is empty")
        if not level:
            return ("syslog", tag, "daemon", "notice")
        facility, _, priority = level.partition(".")
        fac = _decode(facility, FACILITIES, 3)
        pri = _decode(priority, PRIORITIES, 0)
        if fac is None or pri is None:
            raise JailtwistError(
                f"invalid log specification '{spec}': use "
                f"TAG:FACILITY.PRIORITY such as daemon.notice or "
                f"local3.warning")
        return ("syslog", tag, fac, pri)
    if not path:
        raise JailtwistError(f"invalid log specification '{spec}': no file")
    return (kind, path)



class StderrLog(service.Service):
    """
    skd's C{-L}: open the log (a file, or a C{logger(1)} process feeding
    syslog) while privileged, and make it the process's stderr (so every
    child's stderr too) once started.
    """

    def __init__(self, spec, syslogSocket=None, redirect=True):
        """
        @param spec: a parsed L{parseLogSpec} tuple.
        @param syslogSocket: the syslog socket for C{logger(1)} (its default,
            C{/dev/log}, when L{None}).
        @param redirect: make the log descriptor 2 when started.
        """
        self.spec = spec
        self.syslogSocket = syslogSocket
        self.redirect = redirect
        self.fd = None
        self.logger = None

    def privilegedStartService(self):
        kind = self.spec[0]
        if kind in ("truncate", "append"):
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_CLOEXEC
            flags |= os.O_APPEND if kind == "append" else os.O_TRUNC
            try:
                self.fd = os.open(self.spec[1], flags | os.O_NOFOLLOW, 0o666)
            except OSError as e:
                raise JailtwistError(
                    f"cannot open log file {self.spec[1]}: {e.strerror}")
        else:
            _, tag, facility, priority = self.spec
            command = ["logger", "-e", "-t", tag, "-p",
                       f"{facility}.{priority}"]
            if self.syslogSocket is not None:
                command[1:1] = ["-u", self.syslogSocket]
            readEnd, self.fd = os.pipe()
            try:
                self.logger = subprocess.Popen(
                    command, stdin=readEnd, stdout=subprocess.DEVNULL,
                    cwd="/", start_new_session=False)
            except OSError as e:
                os.close(self.fd)
                self.fd = None
                raise JailtwistError(f"cannot start logger: {e.strerror}")
            finally:
                os.close(readEnd)
        service.Service.privilegedStartService(self)

    def startService(self):
        service.Service.startService(self)
        if self.redirect and self.fd is not None:
            sys.stderr.flush()
            os.dup2(self.fd, 2)
            os.close(self.fd)
            self.fd = 2



def privilegeTarget(environ=None):
    """
    Read skd's C{-U} settings: numeric C{$UID} and C{$GID} (both required)
    and C{$ROOT} (optional).

    @return: C{(uid, gid, root)}, C{root} L{None} when unset or empty.
    @raise JailtwistError: for a missing or non-numeric value.
    """
    environ = os.environ if environ is None else environ

    def number(name):
        value = environ.get(name)
        if value is None:
            raise JailtwistError(
                f"${name} not set: -U needs numeric UID and GID in the "
                f"environment (and ROOT to chroot)")
        if not value.isdigit():
            raise JailtwistError(f"${name} has invalid value '{value}': "
                                 f"it must be a number")
        return int(value)

    gid = number("GID")
    uid = number("UID")
    return uid, gid, environ.get("ROOT") or None



class PrivilegeDrop(service.Service):
    """
    skd's C{-U}: after binding, chroot into C{$ROOT} when it is set, then
    become C{$GID} (as the only group) and C{$UID}, through
    L{jailtwist.enter.confine}.
    """

    def __init__(self, environ=None):
        self._environ = environ

    def privilegedStartService(self):
        from jailtwist.enter import Confinement, confine
        uid, gid, root = privilegeTarget(self._environ)
        confine(Confinement(root=root, uid=uid, gid=gid, groups=(gid,)))
        service.Service.privilegedStartService(self)
