"""A private Postfix instance relaying everything it accepts on loopback to one ``smtp-sink``.

The same private instance the tests start (tests/peers/postfix.py): its own
config, queue and data directories under a work dir, chroot off, a log file,
the listener bound explicitly in master.cf. Durability is left at Postfix's
defaults (queue files are fsynced before ``250``), and so are flow control
(``in_flow_delay``), process limits and delivery concurrency: it is the Debian
package as shipped, configured as a relay. Only what a relay on loopback needs
is set, plus ``smtpd_peername_lookup = no`` (mailpipe does no reverse DNS either).
"""

from __future__ import annotations

from pathlib import Path

from tests.peers.net import free_port
from tests.peers.postfix import PostfixInstance


class PostfixRelay(PostfixInstance):
    """``postfix -c WORKDIR/etc start``: listens on ``host:port``, relays to ``[127.0.0.1]:sink_port``."""

    def __init__(self, workdir: Path, sink_port: int, *, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout: float = 30.0) -> None:
        super().__init__(workdir, relay_port=sink_port, host=host, name="bench", myhostname="relay.bench.test",
                         generated_by="bench/postfix_relay.py", start_timeout=start_timeout)
        self.port = port or free_port(host)

    def listen_ports(self) -> list[int]:
        """The one smtpd listener."""
        return [self.port]

    def listeners(self) -> list[str]:
        """One smtpd on ``host:port``, with Postfix's defaults."""
        return [f"{self.host}:{self.port} inet n - n - - smtpd\n"]

    def main_cf(self) -> dict[str, str]:
        """A relay for every client on loopback."""
        return {
            **super().main_cf(),
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
        }
