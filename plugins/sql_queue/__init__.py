"""What the SQL queue backends (``sqlite_queue``, ``postgres_queue``) share: the parts that do not
depend on the SQL dialect.

Lower to higher: ``filters`` (the WHERE clauses of the message log, the event levels and the
queue list, written for a ``Dialect``: its placeholder and its case-insensitive comparison),
``rows`` (the core's objects from rows: a transfer record, a listed message's counts),
``claims`` (what a backend remembers of the messages it handed out between ``claim_due``,
``record`` and ``release``, and their body loaders), ``reads`` (the admin face's and the
transfer face's read questions, answered through the backend's own read jobs), ``plugin``
(the queue plugin and its ``history_days`` option). Each backend keeps its SQL and how a job
runs (worker thread, connection pool).
"""
