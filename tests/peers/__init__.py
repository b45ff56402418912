"""Real servers that the tests talk to: SMTP sinks, Postfix, Dovecot, dnsmasq.

Each module starts one kind of peer on a loopback address and stops it again.
Nothing here mocks a protocol: the peers are the real programs (or aiosmtpd,
in process, for the recording sink).
"""
