#!/usr/bin/python
# -*- coding: utf-8 -*-
# The jailtwist.jails.jailed_user module: a thin wrapper around
# jailtwist.fleet, run on the managed host by the Python of jailtwist's
# virtualenv.

from __future__ import annotations

DOCUMENTATION = r"""
module: jailed_user
short_description: Create an account in a jailtwist jail, or move one into it, with its jk_lsh policy
version_added: "0.1.0"
description:
  - Puts the account O(name) in the jail O(jail), as C(jk_addjailuser)
    (when the account does not exist, it is created with C(useradd), home
    C(JAIL/./home/NAME)) or C(jk_jailuser) (when it exists) do, through
    jailtwist's own Python API. The host's C(/etc/passwd) gets jailtwist's
    C(jk_chrootsh) as the shell; the jail's C(etc/passwd) gets O(shell).
  - With O(lsh_executables), the jail's C(etc/jailkit/jk_lsh.ini) gets a
    section C([NAME]) holding exactly the programs (and O(lsh_paths),
    O(lsh_umask)) the account may run through jk_lsh; other sections are
    kept. Without it the file is not touched (its C([DEFAULT]) section, or
    a C([group NAME]) one, applies).
  - Idempotent; every passwd and group edit holds C(/etc/.pwd.lock) and is
    atomic. An account with running processes is refused when it would
    change (nothing is changed), and accepted when already in place.
requirements:
  - jailtwist installed on the managed host, and the module run by its
    Python (set C(ansible_python_interpreter) to C(/opt/jailtwist/bin/python)).
  - root on the managed host (C(become=true)).
  - The jail built first (for example with M(jailtwist.jails.jail) and the
    C(jk_lsh) section), so that it has an C(etc/passwd).
options:
  name:
    description: The account.
    type: str
    required: true
  jail:
    description: The jail directory, absolute.
    type: path
    required: true
  shell:
    description:
      - The shell inside the jail. C(jk_lsh) (any directory) means the
        jk_lsh policy of the jail applies; any other shell must be an
        executable file in the jail.
    type: str
    default: /usr/sbin/jk_lsh
  move_home:
    description:
      - For an existing account whose home is outside the jail, copy the
        home into the jail (same path inside) and remove the old one.
        Without it an empty home is created in the jail.
    type: bool
    default: false
  uid:
    description:
      - The uid of a new account (C(useradd -u)). For an existing account
        with another uid the task fails (uids are never changed).
    type: int
  group:
    description: The primary group of a new account (C(useradd -g)).
    type: str
  comment:
    description: The GECOS field of a new account (C(useradd -c)).
    type: str
  password:
    description:
      - The encrypted password field of a new account (C(useradd -p));
        C(*) allows key logins without a password.
    type: str
  lsh_executables:
    description:
      - Absolute paths (inside the jail) of the programs the account may
        run through jk_lsh, for example C(/usr/lib/openssh/sftp-server) and
        C(/usr/bin/scp).
    type: list
    elements: str
  lsh_paths:
    description:
      - Directories a bare command name is looked up in (scp clients send
        C(scp -t ...)). Needs O(lsh_executables).
    type: list
    elements: str
  lsh_umask:
    description:
      - The umask (octal) of the programs run; a per-account section does
        not inherit the C([DEFAULT]) one. Needs O(lsh_executables).
    type: str
notes:
  - Supports check mode and diff mode (the changes, and the jk_lsh.ini text
    before and after).
  - Put C(DisableForwarding yes) in sshd for jailed accounts and keep
    C(Subsystem sftp /usr/lib/openssh/sftp-server) (see C(jk_chrootsh(8))).
author:
  - jailtwist developers
"""

EXAMPLES = r"""
- name: An sftp and scp account in the jail, for key logins only
  jailtwist.jails.jailed_user:
    name: alice
    jail: /home/sftproot
    password: "*"
    lsh_executables: [/usr/lib/openssh/sftp-server, /usr/bin/scp]
    lsh_paths: [/usr/bin, /usr/lib/openssh]
    lsh_umask: "022"

- name: Move an existing account and its home into the jail
  jailtwist.jails.jailed_user:
    name: bob
    jail: /home/sftproot
    move_home: true
"""

RETURN = r"""
changes:
  description: What was changed (or, in check mode, would be), one line each.
  returned: always
  type: list
  elements: str
  sample: ["creating account alice (useradd)", "adding alice to /home/sftproot/etc/passwd"]
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jailtwist.jails.plugins.module_utils.host import (
    jailtwistApi)


def lshItems(module):
    """
    The C([NAME]) section of jk_lsh.ini the parameters ask for, or None.
    """
    params = module.params
    executables = params["lsh_executables"]
    if executables is None:
        if params["lsh_paths"] is not None or params["lsh_umask"] is not None:
            module.fail_json(msg="lsh_paths and lsh_umask need "
                                 "lsh_executables (the section jk_lsh uses "
                                 "must list the programs allowed)")
        return None
    if not executables:
        module.fail_json(msg="lsh_executables is empty: jk_lsh would refuse "
                             "every command; list at least one program")
    items = []
    for key, values in (("executables", executables),
                        ("paths", params["lsh_paths"] or [])):
        for value in values:
            if not value.startswith("/") or "," in value \
                    or not value.isprintable():
                module.fail_json(msg=f"lsh_{key} entry {value!r} must be an "
                                     f"absolute path without a comma")
        if values:
            items.append((key, ", ".join(values)))
    umask = params["lsh_umask"]
    if umask is not None:
        if not re.fullmatch(r"0?[0-7]{3}", umask):
            module.fail_json(msg=f"lsh_umask {umask!r} must be an octal "
                                 f"umask such as 022 or 0077")
        items.append(("umask", umask))
    return items


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            jail=dict(type="path", required=True),
            shell=dict(type="str", default="/usr/sbin/jk_lsh"),
            move_home=dict(type="bool", default=False),
            uid=dict(type="int"),
            group=dict(type="str"),
            comment=dict(type="str"),
            password=dict(type="str", no_log=True),
            lsh_executables=dict(type="list", elements="str"),
            lsh_paths=dict(type="list", elements="str"),
            lsh_umask=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    fleet, JailtwistError = jailtwistApi(module)
    params = module.params
    lsh = lshItems(module)
    uid = params["uid"]
    try:
        outcome = fleet.ensureJailedUser(
            params["name"], params["jail"], shell=params["shell"],
            moveHome=params["move_home"],
            uid=None if uid is None else str(uid), group=params["group"],
            comment=params["comment"], password=params["password"],
            lsh=lsh, dryRun=module.check_mode)
    except JailtwistError as e:
        module.fail_json(msg=str(e))
    except OSError as e:
        module.fail_json(msg=f"{e.filename or params['jail']}: {e.strerror}")
    diff = [{"before_header": params["name"], "after_header": params["name"],
             "before": "",
             "after": "".join(f"{line}\n" for line in outcome.changes
                              if "jk_lsh.ini" not in line)}]
    if lsh is not None:
        where = f"{params['jail']}/etc/jailkit/jk_lsh.ini"
        diff.append({"before_header": where, "after_header": where,
                     "before": outcome.before, "after": outcome.after})
    module.exit_json(changed=outcome.changed, changes=list(outcome.changes),
                     diff=diff)


if __name__ == "__main__":
    main()
