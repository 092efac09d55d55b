"""Hypothesis settings for the fuzz suite: bounded for `make check`, deeper on request.

    SCHEDTOP_FUZZ=deep pytest tests/fuzz       # 20x the examples, no deadline

The CI profile keeps the whole of tests/fuzz under 60 s on a loaded 2-core machine: a few
dozen to a few hundred examples per surface, a deadline far above a normal example's cost
(so load does not flake it) that still catches a parser gone quadratic. Every example ends in
either a value within its documented bounds or the surface's own error with one line."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile("schedtop-ci", max_examples=50, deadline=timedelta(seconds=2),
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture],
                          print_blob=True)
settings.register_profile("schedtop-deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                   HealthCheck.function_scoped_fixture])
PROFILE = settings.get_profile("schedtop-deep" if os.environ.get("SCHEDTOP_FUZZ") == "deep" else "schedtop-ci")


def fuzz(examples: int | None = None) -> settings:
    """The profile's settings, with `examples` (scaled by the profile) for this surface."""
    n = PROFILE.max_examples if examples is None else examples * PROFILE.max_examples // 100
    return settings(PROFILE, max_examples=max(1, n))


def one_line(msg: str, *needles: str) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    assert len(msg) < 400, msg  # a bad value is cut, not echoed whole
    for n in needles:
        assert n in msg, (n, msg)
