"""A profile's `gamemode = "RULE"`: the rule GameMode's games get; checked at load like every key."""

from __future__ import annotations

import os

import pytest

from schedtop.steer import gamemode
from schedtop.steer.profiles import ProfileError, builtin_path, load, parse

RULES = '''
[[rule]]
name = "games"
exe = "*/steamapps/*"
nice = -5

[[rule]]
name = "builds"
comm = "cc1"
nice = 10
'''


def test_gamemode_names_a_rule():
    prof = parse('name = "p"\ngamemode = "builds"\n' + RULES, "p.toml")
    assert prof.game_rule is not None and prof.game_rule.name == "builds" and prof.game_rule.tuning.nice == 10
    assert any("GameMode games get rule builds" in line for line in prof.describe())
    assert parse('name = "p"\n' + RULES, "p.toml").game_rule is None


@pytest.mark.parametrize("value", ['"nope"', "3", '["games"]'])
def test_gamemode_that_names_no_rule_is_refused_at_its_line(value):
    with pytest.raises(ProfileError) as exc:
        parse(f'name = "p"\n\ngamemode = {value}\n' + RULES, "p.toml")
    assert str(exc.value).startswith("p.toml:3: gamemode must name a rule of this profile")


def test_the_shipped_gaming_profile_gives_games_its_games_rule():
    path = builtin_path("gaming")
    assert path is not None
    prof, rule = gamemode.game_rule(str(path))
    assert prof.name == "gaming" and rule.name == "games"
    assert (rule.tuning.nice, rule.tuning.slice_ns, rule.tuning.group_nice) == (-5, 1_000_000, -5)
    assert load(path).game_rule == rule


@pytest.mark.skipif(os.geteuid() != 0, reason="the sudo case is root's")
def test_session_bus_under_sudo_is_the_invoking_users():
    addr = "unix:path=/run/user/1000/bus"
    assert gamemode.session_bus({"DBUS_SESSION_BUS_ADDRESS": addr, "SUDO_UID": "1000"}) == (addr, 1000)
    assert gamemode.session_bus({"DBUS_SESSION_BUS_ADDRESS": addr}) == (addr, None)
    assert gamemode.session_bus({"DBUS_SESSION_BUS_ADDRESS": addr, "SUDO_UID": "0"}) == (addr, None)
    with pytest.raises(gamemode.GameModeError, match=r"^no session bus: .* /run/user/4242/bus does not exist"):
        gamemode.session_bus({"SUDO_UID": "4242"})
