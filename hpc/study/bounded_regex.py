"""A user's regular expression, matched under a time limit.

Python's ``re`` cannot be interrupted: a pattern with catastrophic backtracking (such as
``(a+)+$`` on a long line of a's) runs for minutes while holding the GIL, so no thread
and no signal handler can stop it. The match runs in a separate Python process instead,
which is killed when the time is up.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Runs in the child: nothing but the standard library, so it starts in tens of ms.
_CHILD = """
import json, re, sys
job = json.load(sys.stdin)
found = [m.group(1) for m in re.finditer(job["pattern"], job["text"])]
json.dump(found[-1] if found else None, sys.stdout)
"""


class RegexTimeout(Exception):
    """The match took longer than its time limit."""


def last_group(pattern: str, text: str, timeout: float) -> str | None:
    """Group 1 of the last match of ``pattern`` in ``text`` (None: no match), computed
    within ``timeout`` seconds or ``RegexTimeout``."""
    job = json.dumps({"pattern": pattern, "text": text})
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD], input=job,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:  # run() kills the child before raising
        raise RegexTimeout(f"matching took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the regular expression's process failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
