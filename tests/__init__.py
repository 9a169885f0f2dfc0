"""ocppproxy's trial tests."""

import os

from hypothesis import HealthCheck, settings

# CI runs the same examples every time (and never fails on a slow machine's timing);
# HYPOTHESIS_PROFILE=explore searches new ones, many more.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile(
    "explore", max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
