"""The edge: what any connection from a stranger may cost, for the XML-RPC port and the web port alike.

nginx's answer to slow and greedy clients (``client_header_timeout``, ``client_body_timeout``,
``keepalive_timeout``, ``limit_conn``), taken as three small pieces both servers use:

- :mod:`~market.edge.gate`: how many connections may be open, in total and from one address;
- :mod:`~market.edge.deadlines`: a deadline for each phase of a connection (headers, body, idle,
  the linger after a refusal) on one timer per connection;
- :mod:`~market.edge.budget`: how many bytes of request bodies the process holds at once, shared
  fairly, waiting (reading paused) rather than buffering past the cap;

and :mod:`~market.edge.web`, which puts twisted.web's ``Site`` behind the gate and the deadlines.
The limits are the ``[connections]`` settings (``market.settings.ConnectionSettings``). This room
imports Twisted, ``market.core`` and ``market.settings`` only (tests/test_architecture.py).
"""
