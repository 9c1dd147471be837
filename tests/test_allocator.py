"""The allocator policy (promptseg.allocator): kept freed memory spares a repeated large allocation its page
faults, the promptseg command applies it unless PROMPTSEG_MALLOC=default, and a bad value is refused.
Each case runs in a child process, since the policy lasts for the whole process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from promptseg.allocator import MALLOC_ENV, applies_here

pytestmark = pytest.mark.skipif(not applies_here(), reason="the policy applies to glibc on Linux only")

FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from promptseg.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def faults_of_one_allocation():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MB, above glibc's largest mmap threshold
        del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_one_allocation()
    print(min(faults_of_one_allocation() for _ in range(3)))
    """
)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def test_kept_memory_spares_a_repeated_large_allocation_its_page_faults():
    default = int(_run(["-c", FAULTS, "default"], {}).stdout)
    kept = int(_run(["-c", FAULTS, "keep"], {}).stdout)
    assert default >= (64 << 20) // 4096 // 2, f"glibc's default should fault the fresh pages in, counted {default}"
    assert kept < 100, f"kept memory should be reused without faults, counted {kept}"


@pytest.mark.parametrize("choice, expected", [("", "keeps freed memory"), ("default", "glibc's default policy")])
def test_the_command_keeps_freed_memory_unless_told_not_to(choice, expected):
    done = _run(["-m", "promptseg", "info"], {MALLOC_ENV: choice})
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_a_bad_malloc_choice_is_refused_by_name():
    done = _run(["-m", "promptseg", "info"], {MALLOC_ENV: "huge"})
    assert done.returncode == 2
    assert "PROMPTSEG_MALLOC must be one of keep, default, got 'huge'" in done.stderr
