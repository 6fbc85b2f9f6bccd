"""Issue 18: held.py freezes a bound method, an iterator, a re.Match, an exception or a dict view only
when a local variable holds it directly.  Put into a list, dict, tuple, set or object, it made the job
stop at its first freeze ("cannot freeze the job's state"); the validator now refuses that at submission,
with the line and what to keep instead, while the same values held directly still freeze exactly."""

import textwrap

import pytest

from market import tasklet
from tests.jobs.support import frozen, native

STEP = "import re\ndef step(x):\n    return x\ndef find(s):\n    m = re.search('[0-9]+', s)\n    return m\n"

REFUSED = [
    # (body of job(xs), line of the refusal in the body, words)
    ("a, b = [], []\npushes = [a.append, b.append]\nfor i, x in enumerate(xs):\n    pushes[i % 2](step(x))\n"
     "return a, b\n", 2, "a bound method cannot be frozen inside a list"),
    ("its = {'a': iter(xs)}\nout = []\nfor _ in xs:\n    out.append(step(next(its['a'])))\nreturn out\n",
     1, "an iterator cannot be frozen inside a dict"),
    ("errs = []\nfor x in xs:\n    try:\n        raise ValueError(x)\n    except ValueError as e:\n"
     "        errs.append(e)\n    step(x)\nreturn len(errs)\n", 6, "an exception cannot be frozen"),
    ("import re\nms = []\nfor s in ['a1', 'b22']:\n    ms.append(re.search('[0-9]+', s))\n    step(s)\n"
     "return [m.group() for m in ms]\n", 4, "a re.Match cannot be frozen"),
    ("out = []\npair = (out.append, 3)\nfor x in xs:\n    pair[0](step(x))\nreturn out\n", 2, "inside a list, tuple"),
    ("m = None\nkeep = {}\nfor x in xs:\n    it = iter(xs)\n    keep[x] = it\n    step(x)\nreturn len(keep)\n",
     5, "an iterator cannot be frozen inside a container or an object"),
    ("views = [xs.items() for _ in range(2)]\nfor x in xs:\n    step(x)\nreturn len(views)\n", 1, "a dict view"),
    # returned by a job function straight into a container
    ("import re\nms = []\nfor s in ['a1', 'b22']:\n    ms.append(find(s))\n    step(s)\nreturn len(ms)\n",
     4, "a re.Match cannot be frozen inside a container"),
]  # fmt: skip


SQ = """
class Sq:
    def __init__(self, side):
        self.side = side

    @property
    def area(self):
        return self.side * self.side
"""
BODY_LINE0 = 7  # the body's first line is line 8 of the whole source


def whole(body):
    return STEP + "def job(xs):\n" + textwrap.indent(body, "    ")


@pytest.mark.parametrize("body,line,words", REFUSED)
def test_refused_at_submission_with_line_and_what_to_keep(body, line, words):
    src = whole(body)
    with pytest.raises(tasklet.JobRefused) as info:
        tasklet.validate(src, "job")
    assert any(ln == BODY_LINE0 + line and words in why and "instead" in why for ln, why in info.value.problems), (
        info.value.problems
    )


ACCEPTED = [
    # the same values held directly in locals, or only what is needed of them kept in the container
    "out = []\npush = out.append\nfor x in xs:\n    push(step(x))\nreturn out\n",
    "it = iter(xs)\nout = []\nfor _ in xs:\n    out.append(step(next(it)))\nreturn out\n",
    "errs = []\nfor x in xs:\n    try:\n        raise ValueError(x)\n    except ValueError as e:\n"
    "        errs.append(str(e))\n    step(x)\nreturn errs\n",
    "import re\nms = []\nfor s in ['a1', 'b22', 'c']:\n    m = re.search('[0-9]+', s)\n"
    "    ms.append(m.group() if m else None)\n    step(s)\nreturn ms\n",
    # data attributes named like methods are data
    "class Box:\n    pass\nout = []\nfor x in xs:\n    b = Box()\n    b.items = [x]\n    out.append(b.items)\n"
    "    step(x)\nreturn out\n",
    # a @property's value is data
    "class Box:\n    pass\nout = []\nfor x in xs:\n    out.append([Sq(x).area])\n    step(x)\nreturn out\n",
    # a tuple unpacked at once holds nothing
    "a, b = iter(xs), iter(xs)\nout = []\nfor _ in xs:\n    out.append(step(next(a)) + next(b))\nreturn out\n",
]


@pytest.mark.parametrize("body", ACCEPTED)
@pytest.mark.parametrize("budgets", [(1,), (1, 2, 3)])
def test_accepted_neighbours_freeze_exactly(body, budgets):
    src = whole(body)
    if "class Box" in src:  # a class must be at the top level
        src = "class Box:\n    pass\n" + SQ + src.replace("class Box:\n        pass\n    ", "")
    args = [[1, 2, 3, 4]]
    expected = native(src, "job", args)
    got, hops = frozen(src, "job", args, budgets=budgets)
    assert got == expected
    assert hops > 2
