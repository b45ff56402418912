"""Shared outbound SMTP client pieces for the delivery plugins (smarthost, direct).

``tls`` builds client TLS contexts; ``transaction`` runs MAIL/RCPT/DATA on a
connected client and turns every reply into per-recipient outcomes;
``replies`` maps client-side failures to replies; ``connection`` opens a
smarthost connection (greeting, EHLO, STARTTLS) and maps failures of those
steps to replies (``direct`` opens its sockets itself, for happy eyeballs, in
``plugins/direct/session.py``).
"""
