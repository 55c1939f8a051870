"""Fixtures that start real local stand-ins on free loopback ports and stop them.

One module per stand-in; ``tests/conftest.py`` registers every module here whose name
does not start with ``_``. A server that cannot start fails the test with the reason
(its output included); it never skips.
"""
