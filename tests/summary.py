"""
Run the test suite under trial and end with one plain line: ``N passed, M failed``.

Usage (from anywhere): ``python tests/summary.py [trial arguments]``; without arguments
it runs ``trial --reactor=asyncio tests`` from the repository root, then the real-socket
smoke tests (``tests.system.test_smoke``) again on trial's default reactor (epoll on Linux, as
in production), and sums both runs in the one line. Trial's output is passed through
unchanged. Failures, errors and unexpected successes count as failed;
expected failures count as passed; skips are added as ``, K skipped``. The exit status
is trial's, and non-zero as well when trial printed no summary or ran no test.

Trial only collects ``test_*.py`` modules, so this script is not itself a test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUNS = [["--reactor=asyncio", "tests"], ["tests.system.test_smoke"]]
_SUMMARY = re.compile(r"^(PASSED|FAILED)(?: \((.*)\))?\s*$")


def parse_summary(line: str) -> dict[str, int] | None:
    """The counts in trial's last line (``FAILED (failures=1, successes=3)``), or None."""
    found = _SUMMARY.match(line)
    if found is None:
        return None
    counts: dict[str, int] = {}
    for item in (found.group(2) or "").split(","):
        name, _, value = item.strip().partition("=")
        if name and value.isdigit():
            counts[name] = int(value)
    return counts


def summary_line(counts: dict[str, int]) -> tuple[str, int, int]:
    """The ``N passed, M failed[, K skipped]`` line, with the numbers run and failed."""
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    skipped = counts.get("skips", 0)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    return line, passed + failed + skipped, failed


def run_trial(args: list[str]) -> tuple[int, dict[str, int] | None]:
    """Run trial from the repository root, echoing its output; its status and summary counts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    # Trial's output goes through a pipe: without this it would arrive in big chunks.
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "twisted.trial", *args]
    counts = None
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE) as trial:
        try:
            for raw in trial.stdout:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
                parsed = parse_summary(raw.decode("utf-8", "replace"))
                if parsed is not None:
                    counts = parsed
        except KeyboardInterrupt:
            # The same Ctrl-C reached trial, which reports what it ran before stopping.
            pass
        status = trial.wait()
    return status, counts


def main(argv: list[str]) -> int:
    total: dict[str, int] = {}
    final_status = 0
    for args in [argv] if argv else DEFAULT_RUNS:
        status, counts = run_trial(args)
        if counts is None:
            print(f"summary.py: trial {' '.join(args)} printed no PASSED/FAILED summary line", file=sys.stderr)
            counts, status = {}, status or 1
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
        final_status = final_status or status
    status = final_status
    line, ran, failed = summary_line(total)
    if ran == 0:
        print("summary.py: trial ran no test", file=sys.stderr)
    print(line)
    if status == 0 and (failed or ran == 0):
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
