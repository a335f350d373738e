# -*- test-case-name: tests.test_config -*-
"""
The one exception type that every jailtwist command turns into a one-line
error message and a non-zero exit status.
"""


class JailtwistError(Exception):
    """
    A failure the user can act on: bad input, a missing jail, an unsafe path.

    @ivar exitCode: the process exit status a command should end with.
    """

    exitCode = 1

    def __init__(self, message, exitCode=None):
        super().__init__(message)
        if exitCode is not None:
            self.exitCode = exitCode
