"""
Table-driven tests: a case is (docstring, settings, rows), a row is (input, expected);
each case becomes one test method, so a failure names the case and the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def add_table_tests(
    test_class: type, cases: Mapping[str, tuple], start: Callable[[Any], Any], run_row: Callable[[Any, tuple], Any]
) -> None:
    """
    Give C{test_class} a C{test_<name>} per case: C{start(settings)} makes the subject,
    then each row's input goes through C{run_row(subject, input)}, whose result must
    equal the row's expected value (None: not checked, a set-up row).
    """
    for name, (doc, settings, rows) in cases.items():
        setattr(test_class, f"test_{name}", _table_test(doc, settings, rows, start, run_row))


def _table_test(doc, settings, rows, start, run_row):
    def test(self):
        subject = start(settings)
        for number, (row, expected) in enumerate(rows):
            found = run_row(subject, row)
            if expected is not None:
                self.assertEqual(found, expected, f"row {number}: {row}")

    test.__doc__ = doc
    return test
