"""Replies that mean "this server no longer takes passwords: use OAuth2".

Microsoft 365 answers a password login (AUTH PLAIN/LOGIN) for client submission with
``550 5.7.30 Basic authentication is not supported for Client Submission`` once SMTP AUTH
with passwords is off for the tenant, or ``535 5.7.139 Authentication unsuccessful,
SmtpClientAuthentication is disabled for the Tenant``; Google answers ``534 5.7.9
Application-specific password required`` for accounts that may not log in with their password.
"""

from __future__ import annotations

import re

from mailpipe.core.errors import Reply

_PATTERNS = re.compile(
    r"\b5\.7\.30\b|\b5\.7\.139\b|basic authentication is (?:not supported|disabled)"
    r"|smtpclientauthentication is disabled|\b5\.7\.9\b.*application-specific password required",
    re.IGNORECASE,
)


def basic_auth_refused(reply: Reply) -> bool:
    """Whether ``reply`` (a server's, or mailpipe's reply quoting one) says password logins are refused for good."""
    return reply.enhanced in ("5.7.30", "5.7.139") or bool(_PATTERNS.search(reply.text))
