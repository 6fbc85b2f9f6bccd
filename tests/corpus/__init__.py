"""Real-world-style job modules (written for this repo) and the harness that runs them.

Each module declares ``CASES = [(entry, args), ...]``; the native answers are computed at
test time.  ``PENDING`` names the cases that the runtime gets wrong today and that issue 18's
parts R1 (iterators frozen by position) and R2 (validator coverage) fix: they stay as the
regression tests for that work, skipped until it lands.  Remove the gate at merge.
"""

# "module:entry" or "module:entry#index" (index of the case among that module's CASES)
PENDING = {
    # R1: enumerate()/zip() over a list the body mutates are materialised at a freeze (wrong answer)
    "bead_sort:bead_sort",
    "bead_sort:prefix_sums_in_place",
    # R2: accepted, then fails at freeze time (a re.Match local; a module dict of operator functions)
    "regex_tools:parse_log",
    "rpn:rpn",
    # R1: tests/test_tasklet_programs.py's generator of loops whose body mutates what
    # enumerate()/zip()/dict.items() iterate (a wrong answer after a thaw)
    "programs:mutation_under_enumerate_zip_items",
}
PENDING_REASON = "pending: runtime issue 18 part R1/R2"
