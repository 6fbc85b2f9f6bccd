"""Real-world-style job modules (written for this repo) and the harness that runs them.

Each module declares ``CASES = [(entry, args), ...]``; the native answers are computed at
test time.  ``PENDING`` names the cases the runtime cannot run yet (each with why): skipped with
that reason, and checked to name real cases; a case leaves it when the runtime covers it.
"""

# "module:entry" or "module:entry#index" (index of the case among that module's CASES)
PENDING: set = set()  # empty: regex_tools:parse_log (a re.Match in a local) freezes since issue 18
PENDING_REASON = "known gap of the runtime (issue 18): see tests/corpus/__init__.py"
