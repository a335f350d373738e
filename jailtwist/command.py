# -*- test-case-name: tests.test_command -*-
"""
How every console script ends: one line on stderr and a non-zero exit status
for a failure the user can act on, never a traceback.

Kept free of Twisted imports so that login shells start fast.
"""

import os
import sys

from jailtwist.errors import JailtwistError


def runCommand(main, argv=None, name=None):
    """
    Call C{main(argv)} and exit with its return value (C{None} means 0).

    L{JailtwistError} becomes C{NAME: message} with its exit code; a
    C{twisted.python.usage.UsageError} becomes C{NAME: message (see NAME
    --help)} with exit status 2.
    """
    if argv is None:
        argv = sys.argv[1:]
    if name is None:
        name = os.path.basename(sys.argv[0]) or "jailtwist"
    try:
        status = main(argv)
    except JailtwistError as e:
        _fail(name, str(e), e.exitCode)
    except KeyboardInterrupt:
        _fail(name, "interrupted", 130)
    except BrokenPipeError:
        # `cmd --help | head`: the reader left; exit quietly like C tools.
        _quietAfterBrokenPipe()
    except Exception as e:
        usage = sys.modules.get("twisted.python.usage")
        if usage is not None and isinstance(e, usage.UsageError):
            _fail(name, f"{e} (see '{name} --help')", 2)
        raise
    sys.exit(status or 0)


def _quietAfterBrokenPipe():
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(141)


def _fail(name, message, status):
    sys.stderr.write(f"{name}: {message}\n")
    sys.stderr.flush()
    sys.exit(status)
