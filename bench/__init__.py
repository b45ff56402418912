"""mailpipe against Postfix on this machine, and queue scaling: ``python -m bench.run`` from the repository root.

The bench starts its peers with the test-support package (tests/peers): the
private Postfix, ``pipeline serve``, free ports, bounded waits and process
ends are the same code the tests use. See bench/README.md.
"""
