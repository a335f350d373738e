"""
Tests for jailtwist; run with trial (see the README for the isolated runner).
"""
