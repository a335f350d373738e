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
 gcc libc6-dev bzip2 procps"

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
    chmod -R a+rX "$VENV"
    for cmd in $("$VENV/bin/python" -c '
from importlib.metadata import distribution
print(" ".join(e.name for e in distribution("jailtwist").entry_points
               if e.group == "console_scripts"))'); do
        ln -sf "$VENV/bin/$cmd" "/usr/local/sbin/$cmd"
    done
    # Login shells run as untrusted accounts: -I makes their interpreter
    # ignore PYTHON* variables and the user's site directory, so an
    # environment that reaches the shell cannot load code outside the jail.
    for cmd in jk_chrootsh jk_lsh jk_uchroot jk_procmailwrapper; do
        [ -f "$VENV/bin/$cmd" ] && \
            sed -i '1s|^\(#!.*python[0-9.]*\)$|\1 -I|' "$VENV/bin/$cmd"
    done
    ln -sf "$VENV/bin/twistd" /usr/local/sbin/twistd
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
    # Property-based tests (tests/test_fuzz_*.py) need hypothesis.
    "$VENV/bin/pip" install -q --disable-pip-version-check hypothesis
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
