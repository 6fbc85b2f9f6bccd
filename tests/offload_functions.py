"""Functions the offload tests run in helper processes (registered by the tests' pools only)."""

from __future__ import annotations

import time


def echo(*args):
    return args


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


def allocate(mib: int) -> int:
    block = bytearray(mib * 1024 * 1024)
    return len(block)


def refuse(message: str):
    from market.core.errors import JobRefused

    raise JobRefused(message)


def crash(_: object = None):
    import os

    os._exit(3)


def bug(_: object = None):
    return 1 / 0


def pid() -> int:
    import os

    return os.getpid()


def limits() -> dict:
    import os
    import resource

    return {
        "as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "nice": os.nice(0),
        "modules": sorted(__import__("sys").modules),
    }


def chatter() -> str:
    print("this goes to the log, not into the answers")
    return "answered"


def warn() -> str:
    import warnings

    warnings.warn("a warning a stranger's module could cause thousands of", SyntaxWarning, stacklevel=1)
    return "warned"
