"""Every core of one machine: ``pipeline serve`` as a supervisor and N worker processes (``workers:``).

- ``slot``: which worker this process is (``current()``); worker 1 of 1 outside a supervisor;
- ``link``: what a worker tells its supervisor (ready, wake every worker, reload the others)
  and how it ends with it;
- ``peers``: the workers' sockets, through which worker 1's console and metrics see every
  worker's live sessions;
- ``supervisor``: the master process (starts the workers, restarts one that died, passes
  SIGTERM and SIGHUP on, owns the control socket).

The queue is each backend's affair: the sqlite queue gives each worker a file of its own and
reads all of them for the administration commands (``plugins/sqlite_queue/shards.py``); the
PostgreSQL queue is simply shared. See docs/workers.md.
"""
