"""Running a pythia-style task lease: unpack the bundle, run it in the sandbox, watch for cancel."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, task

from market.jobs import taskbundle
from market.sandbox.limits import Caps
from market.worker.slices import SliceReport

POLL_SECONDS = 0.5  # how often a running task asks whether its owner cancelled it (abort within 2 s)


@defer.inlineCallbacks
def run_task_lease(reactor, rpc, lease, user: str | None, caps: Caps | None = None):
    """-> SliceReport with status 'finished' and the task's output as the result.

    ``caps`` are the worker's own limits: the task's are lowered to them (the outcome's message
    says which), and a task filesystem larger than ``caps.disk_mb`` is refused unpacked."""
    from market.sandbox.staging import default_staging
    from market.sandbox.task import run_task

    try:
        spec, fmt, archive, input_data = taskbundle.unpack(lease["state"])
    except taskbundle.BundleError as e:
        return SliceReport("finished", result=b"", error=str(e), message="error")
    workdir = tempfile.mkdtemp(prefix="bundle-", dir=default_staging().ensure_dir("bundles"))
    path = os.path.join(workdir, "taskfs" + taskbundle.FORMATS[fmt])
    with open(path, "wb") as f:
        f.write(archive)
    os.chmod(workdir, 0o755)
    running = run_task(reactor, spec, path, input_data or None, user=user, caps=caps)
    cancelled = []

    def check_alive():
        d = rpc.call("alive", lease["stateid"])

        def seen(alive):
            if not alive and not running.called:
                cancelled.append(True)
                running.cancel()

        return d.addCallbacks(seen, lambda f: None)

    watcher = task.LoopingCall(check_alive)
    watcher.clock = reactor
    watcher.start(POLL_SECONDS, now=False)
    try:
        outcome = yield running
    finally:
        if watcher.running:
            watcher.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    status = "abort" if cancelled else outcome.status
    output = outcome.output.encode("utf-8", "surrogateescape") if isinstance(outcome.output, str) else outcome.output
    # a success's message is empty, unless it names the limits this worker lowered: the owner sees it
    return SliceReport("finished", result=output, error=outcome.message or None, message=status)
