"""The user's config: XDG TOML ($XDG_CONFIG_HOME/schedtop/config.toml, or --config).

    delay = 0.5            # refresh interval, seconds (-d wins)
    theme = "nord"         # any Textual theme name
    [keymap]               # binding id = "key[,key...]"  (ids are listed on the ? screen)
    "schedtop.pause" = "p"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping


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
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file not found: {p}") from None
        return Config()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: bad TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    return parse_config(data, p)


def parse_config(data: Mapping[str, object], p: Path | None = None) -> Config:
    where = str(p) if p else "config"
    unknown = set(data) - {"delay", "theme", "keymap"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r} (known: delay, theme, [keymap])")
    delay = data.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay <= 0):
        raise ConfigError(f"{where}: delay must be a number > 0, got {delay!r}")
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        raise ConfigError(f"{where}: theme must be a string, got {theme!r}")
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        raise ConfigError(f"{where}: [keymap] must be a table of binding id = \"key\"")
    for k, v in keymap.items():
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{where}: keymap {k!r} must be a key string like \"p\" or \"ctrl+p\"")
    return Config(p, float(delay) if delay is not None else None, theme, dict(keymap))


def check_keymap(config: Config, known_ids: Iterable[str]) -> None:
    known = set(known_ids)
    for k in config.keymap:
        if k not in known:
            raise ConfigError(f"{config.path or 'config'}: [keymap] has unknown binding id {k!r} "
                              f"(the ? screen lists the ids)")
