"""Collecting mail from the ISP's POP3 mailboxes into the queue (``accounts[].collect``; docs/collect.md).

``service`` runs the collections (every ``every``, or at the delivery schedule's windows;
login failures retried with backoff, one event per failure episode); ``mailbox`` is one
collection of one mailbox (list, fetch, hand each message to the intake's ``admit``, delete
only what is on stable storage); ``distribute`` reads a message's header (envelope sender,
multidrop recipients, loop marks); ``status`` is what the console shows of each mailbox.

This package's ``__init__`` imports nothing, so ``status`` can be used by lower modules
(``plugin.Control``) without pulling the service in.
"""
