"""mailpipe.core: the pipeline itself.

The core knows nothing of ISPs, DNS or SQLite. It holds the message model
(``message``), the hook specifications (``hookspecs``), the plugin machinery
(``plugin``, ``registry``, ``chain``), configuration (``config``), the SMTP
intake (``intake``), the delivery scheduler (``scheduler``), the gateway that
wires them together (``gateway``) and the command line (``cli``).
"""
