"""The shipped policies by name, and loading a user's own from a file.

``load_policy("deadline")`` gives a shipped one; ``load_policy("my.py")``
imports the file and takes its ``POLICY`` (a Policy subclass or instance) or
else its class named ``Policy``. Errors come back as one-line PolicyError.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from schedtop.scx.policy import DEFAULT_SLICE_NS, Policy, PolicyError

SHIPPED = ("deadline", "fifo", "interactive")
DEFAULT = "deadline"


def _shipped_class(name: str) -> type[Policy]:
    module = importlib.import_module(f"schedtop.scx.policies.{name}")
    return module.POLICY


def load_policy(spec: str, slice_ns: int = DEFAULT_SLICE_NS, nr_cpus: int = 1) -> Policy:
    """A ready policy from a shipped name or a path to a .py file."""
    if spec in SHIPPED:
        return _shipped_class(spec)(slice_ns=slice_ns, nr_cpus=nr_cpus)
    path = Path(spec)
    if path.suffix != ".py":
        raise PolicyError(f"unknown policy {spec!r}: use one of {', '.join(SHIPPED)} or a FILE.py")
    if not path.is_file():
        raise PolicyError(f"policy file not found: {spec}")
    name = f"schedtop_user_policy_{abs(hash(str(path.resolve())))}"
    try:
        mod_spec = importlib.util.spec_from_file_location(name, path)
        assert mod_spec and mod_spec.loader
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # a user's file can raise anything at import
        raise PolicyError(f"{path}: {type(exc).__name__}: {exc}") from None
    obj = getattr(module, "POLICY", None) or getattr(module, "Policy", None)
    try:
        if isinstance(obj, type) and issubclass(obj, Policy) and obj is not Policy:
            policy = obj(slice_ns=slice_ns, nr_cpus=nr_cpus)
        elif isinstance(obj, Policy):
            policy = obj
            policy.set_slice(slice_ns)
            policy.nr_cpus = nr_cpus
        else:
            raise PolicyError(f"{path}: defines no POLICY or Policy subclass of schedtop.scx.policy.Policy")
    except PolicyError:
        raise
    except Exception as exc:
        raise PolicyError(f"{path}: creating the policy raised {type(exc).__name__}: {exc}") from None
    if not getattr(policy, "name", None) or policy.name == "base":
        policy.name = path.stem
    return policy


def next_shipped(name: str) -> str:
    """The shipped policy after ``name`` (the TUI's cycle key)."""
    try:
        return SHIPPED[(SHIPPED.index(name) + 1) % len(SHIPPED)]
    except ValueError:
        return DEFAULT
