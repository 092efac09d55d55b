"""The user's config: XDG TOML ($XDG_CONFIG_HOME/schedtop/config.toml, or --config).

    delay = 0.5            # refresh interval, seconds (-d wins)
    theme = "nord"         # any Textual theme name
    [keymap]               # binding id = "key[,key...]"  (ids are listed on the ? screen)
    "schedtop.pause" = "p"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from schedtop.tomlfile import read_text_file, toml_loads

# The refresh interval, for -d and the config alike (-d 0.00001 spun at 30 % CPU; -d inf
# never refreshed). 0.1 s is htop's and top's shortest.
MIN_DELAY, MAX_DELAY = 0.1, 3600.0
DELAY_RANGE = "0.1..3600"
MAX_CONFIG_BYTES = 256 * 1024


def _value(v: object, n: int = 30) -> str:
    r = repr(v) if not isinstance(v, (list, dict)) else ("[...]" if isinstance(v, list) else "{...}")
    return r if len(r) <= n else r[: n - 3] + "..."


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None = None
    delay: float | None = None
    theme: str | None = None
    keymap: Mapping[str, str] = field(default_factory=dict)


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "schedtop" / "config.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config; a missing default file means defaults, a missing --config file is an error."""
    explicit = path is not None
    p = Path(path) if explicit else default_path()
    if not explicit and not p.exists():
        return Config()
    if explicit and not os.path.lexists(p):
        raise ConfigError(f"config file not found: {p}")
    data = toml_loads(read_text_file(p, MAX_CONFIG_BYTES, ConfigError), str(p), ConfigError, "bad TOML")
    return parse_config(data, p)


def parse_config(data: Mapping[str, object], p: Path | None = None) -> Config:
    where = str(p) if p else "config"
    unknown = set(data) - {"delay", "theme", "keymap"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting {_value(sorted(unknown)[0])} (known: delay, theme, [keymap])")
    delay = data.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float))
                              or not MIN_DELAY <= delay <= MAX_DELAY):  # nan and inf fail this too
        raise ConfigError(f"{where}: delay must be seconds in {DELAY_RANGE}, got {_value(delay)}")
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        raise ConfigError(f"{where}: theme must be a string, got {_value(theme)}")
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        raise ConfigError(f"{where}: [keymap] must be a table of binding id = \"key\"")
    for k, v in keymap.items():
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{where}: keymap {_value(k)} must be a key string like \"p\" or \"ctrl+p\"")
    return Config(p, float(delay) if delay is not None else None, theme, dict(keymap))


def check_keymap(config: Config, known_ids: Iterable[str]) -> None:
    known = set(known_ids)
    for k in config.keymap:
        if k not in known:
            raise ConfigError(f"{config.path or 'config'}: [keymap] has unknown binding id {_value(k)} "
                              f"(the ? screen lists the ids)")
