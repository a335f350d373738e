# -*- coding: utf-8 -*-
# What the modules of jailtwist.jails share: jailtwist's API on the managed
# host, or a failed task that says how to make it importable.

from __future__ import annotations

import sys


def jailtwistApi(module):
    """
    Import jailtwist on the managed host.

    @param module: the AnsibleModule (failed with one line when jailtwist
        cannot be imported by the Python that runs it).
    @return: C{(fleet, JailtwistError)}: the module L{jailtwist.fleet} and
        the error type its refusals raise.
    """
    try:
        from jailtwist import fleet
        from jailtwist.errors import JailtwistError
    except ImportError as e:
        module.fail_json(
            msg=f"jailtwist cannot be imported by {sys.executable} ({e}): "
                f"install jailtwist on this host and set "
                f"ansible_python_interpreter to its Python "
                f"(/opt/jailtwist/bin/python)")
    return fleet, JailtwistError
