# -*- test-case-name: tests.test_loginservice -*-
"""
The wire format between a login command that cannot make a user namespace
(L{jailtwist.loginclient}) and the root login service
(L{jailtwist.loginservice}).  Standard library only: the client side is on
the start-up path of a login.

Every message is a frame: a 4-byte big-endian length, then that many bytes,
the first of which names the message.  The client sends:

  - C{Q} (request), exactly once, first, with its stdin, stdout and stderr
    in C{SCM_RIGHTS} on the same C{sendmsg}: NUL-separated fields --
    protocol version, program (C{jk_chrootsh}, C{jk_uchroot},
    C{jk_procmailwrapper}), C{t} or C{-} (a terminal or not), rows,
    columns, the number of arguments and the arguments (without
    C{argv[0]}), the number of environment entries and the entries.
  - C{W} (window size): rows and columns, two 16-bit numbers.
  - C{S} (signal): one byte, C{SIGHUP} or C{SIGTERM}.

The service sends C{E} (refused: a one-byte exit status and a one-line
message) or C{X} (the program ended: a one-byte exit status, C{128+N} for a
death by signal N) and closes the connection.

Who the caller is never travels in a frame: the service takes it from the
socket (C{SO_PEERCRED}).
"""

import signal
import struct

VERSION = b"1"

#: Where the service listens unless C{[login] endpoint} says otherwise.
DEFAULT_SOCKET = "/run/jailtwist/login.sock"
DEFAULT_ENDPOINT = f"unix:{DEFAULT_SOCKET}:mode=0666"
SUITE_CONFIG = "/etc/jailtwist/jailtwist.ini"

PROGRAMS = ("jk_chrootsh", "jk_uchroot", "jk_procmailwrapper")

# Limits: a request holds a command line and an environment, nothing more.
# One argument may be as long as the kernel allows (MAX_ARG_STRLEN, 128 KiB:
# sshd passes a whole command as one); at most MAX_PENDING of these wait in
# the service's memory at once.
MAX_REQUEST = 256 * 1024
MAX_CONTROL = 16
MAX_ARGUMENTS = 1024
MAX_ENVIRONMENT = 256
#: The descriptors a request carries: stdin, stdout, stderr.
DESCRIPTORS = 3

REQUEST = b"Q"
WINDOW = b"W"
SIGNAL = b"S"
REFUSED = b"E"
EXITED = b"X"

#: Signals a client may pass on to its program.
SIGNALS = (signal.SIGHUP, signal.SIGTERM)

_LENGTH = struct.Struct(">I")
_WINDOW = struct.Struct(">HH")


class ProtocolError(Exception):
    """
    A frame that breaks the protocol; the message is one line for the peer.
    """


class Request:
    """
    What a login command asks for.

    @ivar program: one of L{PROGRAMS}.
    @ivar tty: whether the client's stdin is a terminal (a pty is wanted).
    @ivar rows: terminal rows (0 without a terminal).
    @ivar columns: terminal columns.
    @ivar arguments: C{argv[1:]} of the login command, C{str}s.
    @ivar environment: a C{dict} of C{str} to C{str}.
    """

    def __init__(self, program, tty=False, rows=0, columns=0, arguments=(),
                 environment=None):
        self.program = program
        self.tty = tty
        self.rows = rows
        self.columns = columns
        self.arguments = list(arguments)
        self.environment = dict(environment or {})

    def __eq__(self, other):
        return isinstance(other, Request) and vars(self) == vars(other)

    def __repr__(self):
        return f"Request({vars(self)!r})"


def frame(kind, body=b""):
    """
    @return: one frame of C{kind} with C{body}.
    """
    return _LENGTH.pack(1 + len(body)) + kind + body


def _encode(text):
    data = text.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ProtocolError("a NUL byte in an argument or variable")
    return data


def _decode(data):
    return data.decode("utf-8", "surrogateescape")


def serialiseRequest(request):
    """
    @return: the C{Q} frame for C{request}.
    @raise ProtocolError: if it cannot be sent (NUL bytes, too large).
    """
    if request.program not in PROGRAMS:
        raise ProtocolError(f"unknown program {request.program!r}")
    env = [f"{k}={v}" for k, v in request.environment.items()]
    fields = [VERSION, request.program.encode(),
              b"t" if request.tty else b"-",
              b"%d" % request.rows, b"%d" % request.columns,
              b"%d" % len(request.arguments)]
    fields += [_encode(a) for a in request.arguments]
    fields += [b"%d" % len(env)] + [_encode(e) for e in env]
    body = b"\0".join(fields)
    if 1 + len(body) > MAX_REQUEST:
        raise ProtocolError(f"the request is larger than {MAX_REQUEST} bytes")
    return frame(REQUEST, body)


def _number(field, limit, what):
    if not field.isdigit() or len(field) > 5:
        raise ProtocolError(f"bad {what}")
    value = int(field)
    if value > limit:
        raise ProtocolError(f"bad {what}")
    return value


def parseRequest(payload):
    """
    @param payload: a frame's bytes after the length (C{Q} included).
    @rtype: L{Request}
    @raise ProtocolError: for anything but a well-formed request.
    """
    if payload[:1] != REQUEST:
        raise ProtocolError("the first message must be a request")
    fields = payload[1:].split(b"\0")
    if len(fields) < 7 or fields[0] != VERSION:
        raise ProtocolError("not a version 1 request")
    program = fields[1].decode("ascii", "replace")
    if program not in PROGRAMS:
        raise ProtocolError("unknown program")
    if fields[2] not in (b"t", b"-"):
        raise ProtocolError("bad terminal flag")
    rows = _number(fields[3], 0xFFFF, "rows")
    columns = _number(fields[4], 0xFFFF, "columns")
    count = _number(fields[5], MAX_ARGUMENTS, "argument count")
    rest = fields[6:]
    if len(rest) < count + 1:
        raise ProtocolError("truncated arguments")
    arguments = [_decode(a) for a in rest[:count]]
    envCount = _number(rest[count], MAX_ENVIRONMENT, "environment count")
    entries = rest[count + 1:]
    if len(entries) != envCount:
        raise ProtocolError("environment count does not match")
    environment = {}
    for entry in entries:
        name, sep, value = entry.partition(b"=")
        if not sep or not name:
            raise ProtocolError("bad environment entry")
        environment[_decode(name)] = _decode(value)
    return Request(program, fields[2] == b"t", rows, columns, arguments,
                   environment)


def window(rows, columns):
    return frame(WINDOW, _WINDOW.pack(rows, columns))


def parseWindow(payload):
    if len(payload) != 1 + _WINDOW.size:
        raise ProtocolError("bad window size message")
    return _WINDOW.unpack(payload[1:])


def signalFrame(number):
    return frame(SIGNAL, bytes([number]))


def parseSignal(payload):
    if len(payload) != 2 or payload[1] not in SIGNALS:
        raise ProtocolError("bad signal message")
    return payload[1]


def refusal(code, message):
    """
    The C{E} frame: exit status C{code} and one line (control characters
    are replaced, the length is bounded).
    """
    line = "".join(c if c.isprintable() else "?" for c in message)[:1024]
    return frame(REFUSED, bytes([code & 0xFF]) + line.encode("utf-8",
                                                             "replace"))


def exited(code):
    return frame(EXITED, bytes([code & 0xFF]))


def parseResult(payload):
    """
    @return: C{(exitCode, message or None)} from an C{E} or C{X} frame.
    @raise ProtocolError: for anything else.
    """
    if payload[:1] == EXITED and len(payload) == 2:
        return payload[1], None
    if payload[:1] == REFUSED and len(payload) >= 2:
        return payload[1], payload[2:].decode("utf-8", "replace")
    raise ProtocolError("bad message from the login service")


class FrameDecoder:
    """
    Cut a byte stream into frames, refusing any longer than the limit in
    force: L{MAX_REQUEST} for the first, L{MAX_CONTROL} after it (or
    C{limit} if given).
    """

    def __init__(self, first=MAX_REQUEST, later=MAX_CONTROL):
        self._buffer = b""
        self._limit = first
        self._later = later

    def feed(self, data):
        """
        @return: a C{list} of the complete frames' payloads.
        @raise ProtocolError: for an empty or oversized frame.
        """
        self._buffer += data
        frames = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length == 0 or length > self._limit:
                raise ProtocolError(f"a message of {length} bytes (the limit "
                                    f"is {self._limit})")
            if len(self._buffer) < _LENGTH.size + length:
                break
            frames.append(self._buffer[_LENGTH.size:_LENGTH.size + length])
            self._buffer = self._buffer[_LENGTH.size + length:]
            self._limit = self._later
        return frames

    @property
    def pending(self):
        return len(self._buffer)


def socketPath(config=SUITE_CONFIG):
    """
    The path the service listens on: C{[login] endpoint} of the suite's
    ini (a C{unix:} endpoint), else L{DEFAULT_SOCKET}.
    """
    try:
        with open(config, encoding="utf-8") as f:
            text = f.read(256 * 1024)
    except (OSError, UnicodeDecodeError):
        return DEFAULT_SOCKET
    from jailtwist.config import ConfigError, parseIni
    try:
        section = parseIni(text, config).section("login")
        endpoint = section.getString("endpoint") if section else None
    except ConfigError:
        return DEFAULT_SOCKET
    return endpointPath(endpoint) or DEFAULT_SOCKET


def endpointPath(description):
    """
    @return: the socket path of a C{unix:} server or client endpoint
        description, or C{None} for any other kind.
    """
    if not description or not description.startswith("unix:"):
        return None
    rest = description[len("unix:"):]
    path, escaped = [], False
    for char in rest:
        if escaped:
            path.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            break
        else:
            path.append(char)
    value = "".join(path)
    if value.startswith("address="):
        value = value[len("address="):]
    elif value.startswith("path="):
        value = value[len("path="):]
    return value
