"""Test support that ships with mailpipe, for plugin authors' own test suites (needs pytest).

- ``mailpipe.core.testing.queue``: ``QueueConformance``, the queue interface's promises as
  a pytest class that any queue backend runs against itself.
"""
