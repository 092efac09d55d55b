"""schedtop: watch the Linux CPU scheduler live, steer it, and schedule with a Python policy."""

__version__ = "0.1.0"
