"""POP3, the core's client: collecting mail (``core/collect``) and POP-before-SMTP (the smarthost plugin).

``client`` speaks the protocol on asyncio streams (POP3S, STLS, multi-line answers of any
line length); ``login`` connects to an Internet Mail Account's server and logs in (USER/PASS,
APOP, XOAUTH2 with a ``TokenProvider``).
"""

from .client import Listed, Pop3Client, Pop3Error, Pop3LoginFailed, Pop3TooLarge
from .login import CommandTokens, TokenProvider, default_port, describe, endpoint, mechanism, open_mailbox, pop3_login

__all__ = ["CommandTokens", "Listed", "Pop3Client", "Pop3Error", "Pop3LoginFailed", "Pop3TooLarge", "TokenProvider",
           "default_port", "describe", "endpoint", "mechanism", "open_mailbox", "pop3_login"]
