"""TUI tests: pin the time zone (the header shows local time) before any app renders."""

from __future__ import annotations

import os
import time

os.environ["TZ"] = "UTC"
time.tzset()
