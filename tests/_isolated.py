"""Run a snippet in a child process under a memory cap, for cases whose regression would be an allocation
large enough to get pytest itself killed (the kernel's OOM killer) or crash the interpreter."""

import subprocess
import sys
import textwrap

_CAP = r"""
import resource
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))  # a regression is a MemoryError here, not an OOM kill
"""


def run_isolated(code: str, memory_gib: float = 6.0, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose address space is capped at ``memory_gib``; return the process."""
    cap = int(memory_gib * 2**30)
    return subprocess.run([sys.executable, "-c", _CAP.format(cap=cap) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)
