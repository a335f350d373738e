"""
jailtwist: jail tools and daemons for Linux on one Twisted reactor.

A rebuild of jailkit, FreeBSD's jaildaemon and skd, with namespace isolation.
"""

__version__ = "0.1.0"
