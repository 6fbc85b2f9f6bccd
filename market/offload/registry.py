"""The functions a helper process may run, as ``"module:function"``.

Each one takes and returns plain data (anything ``pickle`` carries between the server and its own
helper), is safe to run on a stranger's input inside a helper's limits, and imports little: a
helper imports the module of the first call that names it. Add a function here to run it in the
pool; nothing else can be called.
"""

from __future__ import annotations

FUNCTIONS: frozenset[str] = frozenset(
    {
        # XML-RPC ``job``: the module's validation and compilation
        "market.jobs.submission:checked_module",
        # the web form: the module's functions, then validation, compilation, the arguments frozen
        "market.jobs.submission:examined_module",
        # the batch form: the argument sets read and each frozen, the module checked once
        "market.jobs.batches:frozen_batch",
        # a result shown on a page, downloaded as JSON or previewed by ``outcome``: text within a budget
        "market.jobs.results:rendered",
        # a probe's answer (a few segments of its chain recomputed), checked before the transaction
        # that records the verdict
        "market.dispatch.prober:answer_is_right",
        # an XML-RPC body too large to parse on the reactor (market.rpc.methods' parse_large)
        "market.rpc.codec:parse_call",
    }
)


def split(name: str) -> tuple[str, str]:
    """``("module", "function")`` of ``"module:function"``; ValueError if it is not of that form."""
    module, sep, function = name.partition(":")
    if not sep or not module or not function.isidentifier():
        raise ValueError(f"{name!r} is not of the form module:function")
    return module, function
