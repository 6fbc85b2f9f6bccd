"""Helper processes for CPU-heavy work on members' input, off the server's reactor and memory.

A stranger's module, result or test-job answer can cost seconds of CPU and hundreds of MiB to
parse, compile, decode or show. None of that may run on the reactor thread (it would stall every
client) or inside the server's memory (it would grow without bound), nor may it hold a database
transaction open. ``twistd market`` therefore keeps a small pool of helper processes:

* :mod:`market.offload.pool` — :class:`~market.offload.pool.HelperPool`, the service that starts
  them, hands each call to a free one (``pool.call("module:function", *args) -> Deferred``), limits
  each call's time (the helper is killed and replaced) and queues a bounded number of calls
  (more are refused: busy, retry);
* :mod:`market.offload.helper` — the helper process itself (standard library only until a call
  names a function), with an address-space limit it puts on itself before any call;
* :mod:`market.offload.registry` — the functions a helper may run;
* :mod:`market.offload.testing` — an in-process stand-in for tests of code that calls a pool.

This package imports nothing at import time: ``python -m market.offload.helper`` must start
without Twisted or the server's code.
"""
