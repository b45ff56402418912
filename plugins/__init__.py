"""mailpipe.plugins: the built-in stages, each registered as any third-party plugin would be.

- ``sqlite_queue``: the embedded durable queue (``queue: {sqlite: ...}``)
- ``smarthost``: delivery through the ISP's mail server
- ``direct``: delivery straight to each domain's MX hosts
- ``retry``: the retry and expiry policy (``on_failure``)
"""
