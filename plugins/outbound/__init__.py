"""The one outbound SMTP client, used by both delivery plugins (``smarthost`` and ``direct``).

Lower to higher: ``replies`` (the error vocabulary: ``OutboundError`` and every
client-side failure mapped to its reply), ``tls`` (the TLS policy and its
context), ``session`` (connect or take a connected socket, greeting, EHLO with
HELO fallback, STARTTLS per policy, AUTH), ``pool`` (sessions kept for reuse
per destination, port, TLS policy and login, under a cap), ``transaction``
(MAIL/RCPT/DATA on a session, an outcome per recipient). The plugins keep only
what is theirs: direct the MX lookup and the address race, smarthost the server
order and the login modes.
"""
