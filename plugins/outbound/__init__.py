"""Shared outbound SMTP client pieces for the delivery plugins (smarthost, direct).

``tls`` builds client TLS contexts; ``transaction`` runs MAIL/RCPT/DATA on a
connected client and turns every reply into per-recipient outcomes;
``connection`` opens a connection (greeting, EHLO, STARTTLS, AUTH) and maps
failures of those steps to replies.
"""
