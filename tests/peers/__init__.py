"""The test-support package: what the tests and the bench (bench/) start, talk to and wait on.

Real servers on loopback addresses, each started and stopped again (and stopped at
exit at the latest, :mod:`.service`); nothing here mocks a protocol:

* :mod:`.postfix`: private Postfix instances (the relay the bench measures, the ISP
  smarthost the tests relay through); :mod:`.dovecot`: POP3 and SASL; both on
  :mod:`.daemon`'s start and stop of a forking daemon. :mod:`.dnsmasq`: DNS, failing
  names included.
* :mod:`.sink`: the recording SMTP sink (aiosmtpd, in process); :mod:`.badserver`: SMTP
  servers that misbehave on purpose.
* :mod:`.mailpipe`: ``pipeline serve`` as a subprocess and the ``pipeline`` CLI;
  :mod:`.harness`: the gateway in process on a manual clock, for tests that move time.
* :mod:`.net`: free ports, bounded waits, process ends, logs; :mod:`.certs`: a test PKI;
  :mod:`.fixtures`: the pytest fixtures (a plugin listed in tests/conftest.py).
"""
