#!/usr/bin/python
# -*- coding: utf-8 -*-
# The jailtwist.jails.jail module: a thin wrapper around jailtwist.fleet,
# run on the managed host by the Python of jailtwist's virtualenv.

from __future__ import annotations

DOCUMENTATION = r"""
module: jail
short_description: Build, extend or remove a jailtwist jail from jk_init.ini sections
version_added: "0.1.0"
description:
  - Builds the jail directory O(path), or adds to it, from sections of
    C(jk_init.ini), exactly as C(jk_init -j PATH SECTION...) does (or
    C(jk_init --bind) with O(bind=true)), through jailtwist's own Python API.
  - Idempotent. What would be added (jail paths, new bind list entries,
    accounts, the log socket, the proc mount) is found first without
    changing anything; when nothing would be added the jail is left alone
    and the task reports no change. In check mode that list is the diff.
  - Existing files in the jail are never replaced (run C(jk_update) to
    refresh copies after host upgrades).
  - With O(state=absent) the jail directory is removed, conservatively, see
    the notes.
requirements:
  - jailtwist installed on the managed host, and the module run by its
    Python (set C(ansible_python_interpreter) to C(/opt/jailtwist/bin/python)).
  - root on the managed host (C(become=true)).
options:
  path:
    description:
      - The jail directory, absolute. It and every directory above it must
        belong to root and not be writable by group or others (jailkit's
        rule); a symlink is refused.
    type: path
    required: true
  sections:
    description:
      - Sections of O(config) to build the jail from (C(jk_init -l) lists
        them), with the sections they include. Required with
        O(state=present). An unknown section fails the task and changes
        nothing.
    type: list
    elements: str
  bind:
    description:
      - Build a jail assembled from read-only binds (C(jk_init --bind)), where
        host paths are listed in the jail's C(etc/jailkit/bind.list)
        instead of being copied. Copied jails and bind jails do not mix, the
        task fails on a jail of the other kind.
    type: bool
    default: false
  state:
    description:
      - V(present) builds or extends the jail; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - The C(jk_init.ini) the sections are read from.
    type: path
    default: /etc/jailkit/jk_init.ini
notes:
  - Supports check mode and diff mode.
  - O(state=absent) refuses, with nothing removed, a path that is not
    plainly a jail (a system directory such as C(/home) or C(/srv), or a
    directory without C(etc/passwd)), a jail any account of the host still
    has its home in (remove or move the account first), a jail registered
    as running or with any process whose root is in it, and a jail with
    anything mounted inside it (such as the C(/proc) of C(need_proc)); it
    unmounts nothing. Removal goes through directory descriptors and never
    follows a symlink out of the jail. Entries for the jail in
    C(/etc/jailkit/jk_socketd.ini) and C(/etc/fstab) are left for you to
    remove.
  - Things this host lacks (a program a section names) are reported as
    warnings and listed in RV(missing), as C(jk_init) does.
author:
  - jailtwist developers
"""

EXAMPLES = r"""
- name: An sftp jail, copied from the host
  jailtwist.jails.jail:
    path: /home/sftproot
    sections: [jk_lsh, sftp, scp]

- name: The same, assembled from read-only binds of the host's files
  jailtwist.jails.jail:
    path: /srv/jails/web
    sections: [jk_lsh, sftp, scp, rsync]
    bind: true

- name: Remove a jail nobody uses any more
  jailtwist.jails.jail:
    path: /srv/jails/old
    state: absent
"""

RETURN = r"""
path:
  description: The jail directory, as given.
  returned: always
  type: str
  sample: /home/sftproot
changes:
  description:
    - What was added (or, in check mode, would be); with O(state=present),
      jail paths as seen inside the jail, C(bind PATH) for new bind list
      entries, accounts, log socket and proc mount; C(remove PATH) with
      O(state=absent).
  returned: always
  type: list
  elements: str
  sample: ["/usr/lib/openssh/sftp-server", "/etc/jailkit/jk_lsh.ini"]
missing:
  description: What the sections name that this host does not have.
  returned: always
  type: list
  elements: str
  sample: ["/usr/lib/sftp-server (does not exist; [sftp] paths)"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jailtwist.jails.plugins.module_utils.host import (
    jailtwistApi)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            sections=dict(type="list", elements="str"),
            bind=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"],
                       default="present"),
            config=dict(type="path", default="/etc/jailkit/jk_init.ini"),
        ),
        required_if=[("state", "present", ("sections",))],
        supports_check_mode=True,
    )
    fleet, JailtwistError = jailtwistApi(module)
    params = module.params
    path = params["path"]
    try:
        if params["state"] == "absent":
            outcome = fleet.removeJail(path, dryRun=module.check_mode)
            diff = {"before": f"{path}\n" if outcome.changed else "",
                    "after": ""}
        else:
            outcome = fleet.ensureJail(path, params["sections"],
                                       bind=params["bind"],
                                       configPath=params["config"],
                                       dryRun=module.check_mode)
            diff = {"before": "",
                    "after": "".join(f"{line}\n"
                                     for line in outcome.changes)}
    except JailtwistError as e:
        module.fail_json(msg=str(e), path=path)
    except OSError as e:
        module.fail_json(msg=f"{e.filename or path}: {e.strerror}",
                         path=path)
    for missing in outcome.missing:
        module.warn(f"not on this host: {missing}")
    diff.update(before_header=path, after_header=path)
    module.exit_json(changed=outcome.changed, path=path,
                     changes=list(outcome.changes),
                     missing=list(outcome.missing), diff=diff)


if __name__ == "__main__":
    main()
