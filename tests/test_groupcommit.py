"""market.dispatch.groupcommit: requests that arrive while a batch commits form the next batch; each
caller gets its own answer or refusal; a failed batch is retried item by item."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from market.core.errors import NotFound
from market.dispatch.groupcommit import GroupCommit


class Store:
    """A fake ``run_batch``: records batches; the test decides when each one commits."""

    def __init__(self):
        self.batches = []
        self.pending = []

    def run(self, items):
        self.batches.append(list(items))
        d = Deferred()
        self.pending.append(d)
        return d

    def commit(self, results=None):
        items, d = self.batches[len(self.batches) - len(self.pending)], self.pending.pop(0)
        d.callback([f"ok {i}" for i in items] if results is None else results)


def answers(deferreds):
    out = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_a_lone_request_is_committed_at_once():
    store = Store()
    got = answers([GroupCommit(store.run).submit("a")])
    assert store.batches == [["a"]]
    store.commit()
    assert got == ["ok a"]


def test_requests_arriving_during_a_commit_form_the_next_batch():
    store = Store()
    gc = GroupCommit(store.run)
    got = answers([gc.submit(x) for x in "abcd"])
    assert store.batches == [["a"]]
    store.commit()
    assert store.batches == [["a"], ["b", "c", "d"]]
    store.commit()
    assert got == ["ok a", "ok b", "ok c", "ok d"]
    assert (gc.batches, gc.items, gc.mean_batch) == (2, 4, 2.0)


def test_a_batch_is_capped_by_items_and_by_bytes_but_always_takes_one():
    store = Store()
    gc = GroupCommit(store.run, max_items=2, max_bytes=10, size=len)
    for x in ["first", "b", "c", "d", "a-very-long-item", "e"]:
        gc.submit(x)
    for _ in range(5):
        store.commit()
    assert store.batches == [["first"], ["b", "c"], ["d"], ["a-very-long-item"], ["e"]]


def test_an_item_refused_by_the_store_fails_only_its_caller():
    store = Store()
    gc = GroupCommit(store.run)
    gc.submit("first")
    got = answers([gc.submit("x"), gc.submit("y")])
    store.commit()
    store.commit(["ok x", NotFound("no checked-out state y")])
    assert got[0] == "ok x"
    assert got[1].check(NotFound) and "no checked-out state y" in str(got[1].value)


def test_a_failed_batch_is_retried_item_by_item_so_only_the_culprit_fails():
    tried = []

    def run(items):
        tried.append(list(items))
        if "bad" in items:
            return fail(RuntimeError("packet too large"))
        return succeed([f"ok {i}" for i in items])

    store = Store()
    gc = GroupCommit(lambda items: store.run(items) if items == ["first"] else run(items))
    gc.submit("first")  # keeps the committer busy so the next three form one batch
    got = answers([gc.submit(x) for x in ["a", "bad", "c"]])
    store.commit()
    assert tried == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert got[0] == "ok a" and got[2] == "ok c"
    assert got[1].check(RuntimeError)


def test_a_wrong_number_of_results_fails_every_caller_instead_of_leaving_one_waiting():
    store = Store()
    gc = GroupCommit(store.run)
    gc.submit("first")
    got = answers([gc.submit("x"), gc.submit("y")])
    store.commit()
    store.commit(["only one"])
    assert len(got) == 2 and all(g.check(RuntimeError) for g in got)


def test_idle_fires_once_every_queued_request_is_answered():
    store = Store()
    gc = GroupCommit(store.run)
    assert answers([gc.idle()]) == [None]
    gc.submit("a")
    gc.submit("b")
    done = answers([gc.idle()])
    store.commit()
    assert done == []
    store.commit()
    assert done == [None]
