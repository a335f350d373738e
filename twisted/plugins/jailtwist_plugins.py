"""
twistd plugins of jailtwist: one ServiceMaker line per daemon.
"""

from twisted.application.service import ServiceMaker

jkSocketd = ServiceMaker(
    "jailtwist jk-socketd", "jailtwist.tap.socketd",
    "Rate-limited /dev/log relay for jails (jailkit's jk_socketd)",
    "jk-socketd")

skd = ServiceMaker(
    "jailtwist skd", "jailtwist.tap.skd",
    "Socket daemon: run a program per connection (skd)",
    "skd")

jaildaemon = ServiceMaker(
    "jailtwist jaildaemon", "jailtwist.tap.jaildaemon",
    "Probes in jails that run a host command on SIGHUP, and the AMP "
    "control channel (FreeBSD's jaildaemon)",
    "jaildaemon")

jailtwistSuite = ServiceMaker(
    "jailtwist suite", "jailtwist.tap.suite",
    "Every jailtwist service on one reactor: control channel, probes, "
    "jk_socketd relays (from jailtwist.ini)",
    "jailtwist")
