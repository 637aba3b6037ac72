"""The workspace's own test set-up (not shipped): fixtures, thread limits, Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["lanewise.core.testing.plugin"]

# Two cores on CI: one thread per numeric library keeps parallel servers from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
