"""The job's own ``random``: one generator per job, whose state is frozen with the job.

``import random`` in a job binds an instance of :class:`JobRandom` instead of the module (the
compiler rewrites the import). Its functions are the bound methods of one ``random.Random``,
made once, so a job may keep them (``pick = random.choice``) and refs.py freezes them by name
(``random:choice``). The runner seeds the generator from the job id before the module's top level
first runs, and freezes and restores its state (``getstate()``: plain tuples) with the job's.
"""

from __future__ import annotations

import types

from .validator import ALLOWED_NAMES

__all__ = ["JobRandom"]


class JobRandom(types.ModuleType):
    """A module-like object whose functions draw from the job's own generator."""

    def __init__(self, seed: int) -> None:
        import random  # only for jobs that use it: importing it costs a slice ~2 ms

        super().__init__("random")
        generator = random.Random(seed)
        self._tk_generator = generator
        for name in sorted(ALLOWED_NAMES["random"]):
            if hasattr(generator, name):  # randbytes: 3.9+
                setattr(self, name, getattr(generator, name))

    def freeze(self) -> object:
        """The generator's state, as plain data."""
        return self._tk_generator.getstate()

    def thaw(self, state: object) -> None:
        """Restore a state made by :meth:`freeze` (ValueError or TypeError when it is not one)."""
        if type(state) is not tuple:
            raise TypeError("not a generator state")
        self._tk_generator.setstate(state)
