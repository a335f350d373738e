#!/bin/sh
# jailtwist set-up for a fresh Debian 12 machine, run as root.
#
#   ./bootstrap.sh demo   install everything, build a demo jail and run
#                         `twistd -n jk-socketd` relaying its /dev/log
#   ./bootstrap.sh test   install everything plus the test tools and run the
#                         whole test suite (prints "N passed, N failed" last)
#   ./bootstrap.sh install  only install (system packages, venv, package)
#
# The package goes into a virtualenv built from Debian's /usr/bin/python3
# (readable and executable by every account, which login shells need), and
# its commands are linked into /usr/local/sbin.
set -eu
cd "$(dirname "$0")"
SRC=$(pwd)
VENV=${JAILTWIST_VENV:-/opt/jailtwist}

# What the installed commands use at run time.
RUNTIME_PACKAGES="python3 python3-venv rsyslog util-linux bsdutils iproute2 procps libc-bin passwd"
# What the tests start for real (rsyslogd, sshd, ssh/sftp/scp clients, static
# busybox for small jails, programs the shipped jk_init sections copy).
TEST_PACKAGES="openssh-server openssh-client busybox-static rsync git procmail
 nano vim-tiny less iputils-ping netcat-openbsd wget curl ncurses-term
 gcc libc6-dev bzip2 procps apparmor systemd"

apt_install() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "jailtwist: installing Debian packages:$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

install_package() {
    apt_install $RUNTIME_PACKAGES
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    # Build from a private copy: setuptools writes build/ and *.egg-info into
    # the tree it builds, and the source tree may be read-only or shared.
    stage=$(mktemp -d /var/tmp/jailtwist-build.XXXXXX)
    cp -a "$SRC/setup.cfg" "$SRC/pyproject.toml" "$SRC/README.md" \
        "$SRC/jailtwist" "$SRC/twisted" "$SRC/etc" "$SRC/man" "$stage/"
    "$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$stage" \
        || { rm -rf "$stage"; exit 1; }
    "$VENV/bin/pip" install -q --disable-pip-version-check "$stage"
    rm -rf "$stage"
    # Regenerate Twisted's plugin cache as root, so twistd lists our plugins.
    "$VENV/bin/python" -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
    # Replace pip's console scripts by ones that start faster and safer:
    # -I ignores PYTHON* variables and the user's site directory (login
    # shells run as untrusted accounts: an environment that reaches them
    # cannot load code outside the jail), -S skips site's start-up work
    # (.pth files, sitecustomize: a fifth of a bare start) and the venv's
    # package directory is named instead; pip's wrapper also imports re.
    "$VENV/bin/python" - <<'PY'
import os, sys, sysconfig
from importlib.metadata import distribution
packages = sysconfig.get_path("purelib")
for entry in distribution("jailtwist").entry_points:
    if entry.group != "console_scripts":
        continue
    path = os.path.join(os.path.dirname(sys.executable), entry.name)
    module, _, function = entry.value.partition(":")
    with open(path + ".new", "w") as f:
        f.write(f"#!{sys.executable} -IS\n"
                f"# jailtwist's {entry.name} (written by bootstrap.sh)\n"
                f"import sys\n"
                f"sys.path.append({packages!r})\n"
                f"from {module} import {function}\n"
                f"sys.exit({function}())\n")
    os.chmod(path + ".new", 0o755)
    os.replace(path + ".new", path)
PY
    chmod -R a+rX "$VENV"
    install_login_interpreter
    for cmd in $("$VENV/bin/python" -c '
from importlib.metadata import distribution
print(" ".join(e.name for e in distribution("jailtwist").entry_points
               if e.group == "console_scripts"))'); do
        ln -sf "$VENV/bin/$cmd" "/usr/local/sbin/$cmd"
    done
    ln -sf "$VENV/bin/twistd" /usr/local/sbin/twistd
    install_apparmor
    install_systemd
    for dir in jailkit jailtwist; do
        mkdir -p "/etc/$dir"
        for ini in "$SRC/etc/$dir"/*.ini; do
            [ -e "$ini" ] || continue
            [ -e "/etc/$dir/$(basename "$ini")" ] || install -m 0644 "$ini" "/etc/$dir/"
        done
    done
    # Prove the installed package (not the source tree) serves the plugins.
    (cd / && "$VENV/bin/twistd" --help | grep jk-socketd >/dev/null) || {
        echo "jailtwist: twistd does not list jk-socketd after install" >&2; exit 1; }
}

# The login commands run as the account before they enter its jail.  A
# process of the account outside the jails (a cron job, a jailed daemon)
# could ptrace a login while the interpreter starts, before the login can
# make itself non-dumpable.  The kernel makes a process non-dumpable at exec
# when its interpreter is not readable by the caller, so the login commands
# get a copy of the interpreter that accounts may run but not read (0711).
# An apt hook refreshes the copy whenever packages change, so it does not
# lag behind Python's security updates.
LOGIN_COMMANDS="jk_chrootsh jk_lsh jk_uchroot jk_procmailwrapper"
install_login_interpreter() {
    real=$(readlink -f "$VENV/bin/python")
    install -m 0711 -o root -g root "$real" "$VENV/bin/python-login.new"
    mv -f "$VENV/bin/python-login.new" "$VENV/bin/python-login"
    for cmd in $LOGIN_COMMANDS; do
        [ -f "$VENV/bin/$cmd" ] && \
            sed -i "1s|^#!$VENV/bin/python |#!$VENV/bin/python-login |" "$VENV/bin/$cmd"
    done
    if [ -d /etc/apt/apt.conf.d ]; then
        hook="/etc/apt/apt.conf.d/80jailtwist-$(echo "$VENV" | tr -c 'A-Za-z0-9\n' '-' | sed 's/^-*//')"
        cat > "$hook.tmp" <<APT
// jailtwist: refresh the login commands' unreadable copy of the Python
// interpreter after package changes (bootstrap.sh, install_login_interpreter).
DPkg::Post-Invoke { "if [ -x $VENV/bin/python-login ]; then install -m 0711 -o root -g root \$(readlink -f $VENV/bin/python) $VENV/bin/python-login.new && mv -f $VENV/bin/python-login.new $VENV/bin/python-login; fi"; };
APT
        mv -f "$hook.tmp" "$hook"
    fi
}

# The AppArmor profiles that give the login commands `userns` (Ubuntu 24.04+
# refuses unprivileged user namespaces to unconfined programs).  They attach
# to the real paths of the installed scripts, so the venv's bin/ is written
# into them.  The rendered file always lands in $VENV/etc/apparmor.d/; it goes
# into /etc/apparmor.d/ and is loaded only where the installed AppArmor knows
# the `userns` rule (abi 4.0): an older parser would fail on it at every boot.
install_apparmor() {
    template="$SRC/etc/apparmor.d/jailtwist-login"
    case "$VENV" in
        *[!A-Za-z0-9/._+-]*)
            echo "jailtwist: not writing AppArmor profiles: the venv path '$VENV' has characters" \
                 "AppArmor would read as a pattern; install into a plain path such as /opt/jailtwist" >&2
            return 0 ;;
    esac
    mkdir -p "$VENV/etc/apparmor.d"
    sed "s|@BIN@|$VENV/bin|g" "$template" > "$VENV/etc/apparmor.d/jailtwist-login.tmp"
    mv "$VENV/etc/apparmor.d/jailtwist-login.tmp" "$VENV/etc/apparmor.d/jailtwist-login"
    [ -e /etc/apparmor.d/abi/4.0 ] || return 0
    install -m 0644 "$VENV/etc/apparmor.d/jailtwist-login" /etc/apparmor.d/jailtwist-login
    if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
        apparmor_parser -r -W /etc/apparmor.d/jailtwist-login \
            || { echo "jailtwist: apparmor_parser could not load /etc/apparmor.d/jailtwist-login" >&2; exit 1; }
        echo "jailtwist: loaded the AppArmor profiles of the login commands (/etc/apparmor.d/jailtwist-login)"
    fi
}

# The systemd units (etc/systemd/), with the venv's bin/ written into their
# ExecStart lines: rendered into $VENV/etc/systemd/system/ (what the tests
# verify) and installed into /etc/systemd/system/, never enabled or started.
# systemd re-reads units only when it is PID 1 (/run/systemd/system exists).
install_systemd() {
    case "$VENV" in
        *[!A-Za-z0-9/._+-]*)
            echo "jailtwist: not writing systemd units: the venv path '$VENV' would need" \
                 "quoting in ExecStart; install into a plain path such as /opt/jailtwist" >&2
            return 0 ;;
    esac
    mkdir -p "$VENV/etc/systemd/system" /etc/systemd/system /etc/jailtwist/skd
    for unit in "$SRC"/etc/systemd/*.service "$SRC"/etc/systemd/*.socket; do
        name=$(basename "$unit")
        sed "s|@BIN@|$VENV/bin|g" "$unit" > "$VENV/etc/systemd/system/$name.tmp"
        mv "$VENV/etc/systemd/system/$name.tmp" "$VENV/etc/systemd/system/$name"
        install -m 0644 "$VENV/etc/systemd/system/$name" "/etc/systemd/system/$name"
    done
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload \
            || { echo "jailtwist: systemctl daemon-reload failed" >&2; exit 1; }
    fi
}

# An AppArmor parser that knows the `userns` rule, for the test that parses
# the profiles.  Debian 12's apparmor (3.0.8) predates it, so on such a
# machine the parser of Debian 13's apparmor package is unpacked (not
# installed) into a cache, and run with Debian 13's own C library loader.
APPARMOR4=/var/cache/jailtwist/apparmor4
fetch_apparmor4() {
    [ -e /etc/apparmor.d/abi/4.0 ] && return 0
    [ -x "$APPARMOR4/apparmor_parser" ] && return 0
    scratch=$(mktemp -d /var/tmp/jailtwist-apparmor4.XXXXXX)
    chmod 0755 "$scratch"
    echo "deb http://deb.debian.org/debian trixie main" > "$scratch/sources.list"
    mkdir -p "$scratch/lists/partial"
    aptopts="-q -o Dir::Etc::sourcelist=$scratch/sources.list -o Dir::Etc::sourceparts=/nonexistent -o Dir::State::Lists=$scratch/lists -o APT::Sandbox::User=root"
    ( cd "$scratch" && apt-get $aptopts update >/dev/null && apt-get $aptopts download apparmor libc6 >/dev/null ) \
        || { echo "jailtwist: could not fetch Debian 13's apparmor and libc6 for the profile test" >&2; rm -rf "$scratch"; exit 1; }
    rm -rf "$APPARMOR4"; mkdir -p "$APPARMOR4"
    dpkg-deb -x "$scratch"/apparmor_*.deb "$APPARMOR4/apparmor"
    dpkg-deb -x "$scratch"/libc6_*.deb "$APPARMOR4/libc"
    rm -rf "$scratch"
    libc=$(ls "$APPARMOR4"/libc/usr/lib/*-linux-gnu/libc.so.6 | head -n 1)
    libdir=$(dirname "$libc")
    loader=$(ls "$libdir"/ld-linux*.so.* | head -n 1)
    cat > "$APPARMOR4/apparmor_parser" <<SH
#!/bin/sh
exec "$loader" --library-path "$libdir" \
    "$APPARMOR4/apparmor/usr/sbin/apparmor_parser" --base "$APPARMOR4/apparmor/etc/apparmor.d" "\$@"
SH
    chmod 0755 "$APPARMOR4/apparmor_parser"
}

ensure_syslog() {
    [ -S /dev/log ] && return 0
    echo "jailtwist: starting rsyslogd (no syslog daemon was listening on /dev/log)"
    rsyslogd
    i=0; while [ ! -S /dev/log ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
}

demo() {
    install_package
    ensure_syslog
    jail=/srv/jailtwist-demo
    mkdir -p "$jail/dev"
    chmod 0755 /srv "$jail" "$jail/dev"
    cat > "$VENV/demo-jk_socketd.ini" <<INI
[$jail/dev/log]
base = 512
peak = 2048
interval = 10
INI
    cat <<MSG
jailtwist demo: relaying $jail/dev/log to the host syslog (/dev/log).
In another terminal, log from "inside" the jail and watch it arrive:
    logger --socket=$jail/dev/log -t demo "hello from the jail"
    tail -n 3 /var/log/syslog
Send 30 in a row to see the rate limit (512 bytes per 10 s after a 2048-byte peak) slow the sender:
    for i in \$(seq 30); do logger --socket=$jail/dev/log -t demo "message \$i padded to about a hundred bytes ........................"; done
Stop the relay with Ctrl-C; it logs a per-socket summary.
MSG
    exec "$VENV/bin/twistd" -n --pidfile= jk-socketd --config "$VENV/demo-jk_socketd.ini"
}

run_tests() {
    install_package
    apt_install $TEST_PACKAGES
    fetch_apparmor4
    # Property tests (hypothesis): the login service's request protocol,
    # the ini reader and the relay's datagram path (tests/test_fuzz_*.py).
    "$VENV/bin/pip" install -q --disable-pip-version-check hypothesis
    # The Ansible collection's tests (ansible-galaxy, ansible-playbook and
    # ansible-doc next to the venv's Python; 2.17-2.19 run on Python 3.11).
    "$VENV/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.17,<2.20'
    # Run the suite against the installed package: trial runs from a scratch
    # directory that holds only the tests, so the source tree is not importable.
    work=$(mktemp -d /var/tmp/jailtwist-trial.XXXXXX)
    ln -s "$SRC/tests" "$work/tests"
    log="$work/trial.log"
    status=0
    (cd "$work" && "$SRC/tests/isolated" "$VENV/bin/python" -m twisted.trial --temp-directory="$work/_trial_temp" tests) \
        2>&1 | tee "$log" || true
    summary=$(grep -E '^(PASSED|FAILED) \(' "$log" | tail -n 1)
    rm -rf "$work"
    passed=$(echo "$summary" | grep -oE 'successes=[0-9]+' | cut -d= -f2)
    failed=0
    for kind in failures errors unexpectedSuccesses; do
        n=$(echo "$summary" | grep -oE "$kind=[0-9]+" | cut -d= -f2)
        failed=$((failed + ${n:-0}))
    done
    if [ -z "$summary" ]; then failed=$((failed + 1)); fi
    echo "${passed:-0} passed, $failed failed"
    [ -n "$summary" ] && [ "$failed" -eq 0 ]
}

case "${1:-}" in
    demo) demo ;;
    test) run_tests ;;
    install) install_package ;;
    *) echo "usage: $0 demo|test|install" >&2; exit 2 ;;
esac
