"""Console sessions (pure: an injected clock) and the [console] settings' checks: a brand
colour, a logo URL and frame-ancestors sources are taken only in forms that cannot break out
of the page's CSS or Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.console.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_its_ttl_and_holds_the_token_and_a_csrf_token() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=60, clock=clock)
    ident, session = sessions.create("whk_token")
    other, _ = sessions.create("whk_token")
    assert ident != other and len(ident) >= 43 and session.token == "whk_token"
    assert session.csrf_ok(session.csrf) and not session.csrf_ok(session.csrf[:-1] + "x")
    assert not session.csrf_ok("")
    clock.now += 59
    assert sessions.get(ident) == session
    clock.now += 1
    assert sessions.get(ident) is None
    assert sessions.get("") is None and sessions.get("unknown") is None


def test_a_logout_ends_only_its_own_session() -> None:
    sessions = Sessions(ttl_s=60, clock=Clock())
    mine, _ = sessions.create("a")
    theirs, _ = sessions.create("b")
    sessions.end(mine)
    sessions.end(mine)  # twice: nothing more happens
    assert sessions.get(mine) is None and sessions.get(theirs) is not None


def _console(tmp_path: Path, body: str) -> object:
    path = tmp_path / "webhookd.toml"
    path.write_text(f"[console]\n{body}\n", encoding="utf-8")
    return load_config(path, {"HOME": str(tmp_path)}).console


def test_brand_and_framing_settings_are_read(tmp_path: Path) -> None:
    console = _console(
        tmp_path,
        'portal_name = "Acme Hooks"\nportal_logo_url = "https://cdn.acme.example/logo.svg"\n'
        'portal_primary_color = "#0A3D62"\n'
        "frame_ancestors = \"'self' https://app.acme.example http://127.0.0.1:*\"\n"
        'portal_link_ttl = "15m"\npublic_url = "https://hooks.acme.example/"',
    )
    assert console == type(console)(  # type: ignore[operator]
        portal_name="Acme Hooks",
        portal_logo_url="https://cdn.acme.example/logo.svg",
        portal_primary_color="#0a3d62",
        frame_ancestors="'self' https://app.acme.example http://127.0.0.1:*",
        portal_link_ttl_s=900.0,
        public_url="https://hooks.acme.example",
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('portal_primary_color = "red; background: url(x)"', "portal_primary_color"),
        ('portal_logo_url = "javascript:alert(1)"', "portal_logo_url"),
        ('portal_logo_url = "https://x.example/a\\" onerror=\\"x"', "portal_logo_url"),
        ("frame_ancestors = \"'self'; script-src *\"", "frame_ancestors"),
        ('frame_ancestors = "https://a.example, https://b.example"', "frame_ancestors"),
        ('frame_ancestors = ""', "frame_ancestors"),
        ('portal_name = ""', "portal_name"),
        ('public_url = "ftp://x"', "public_url"),
        ('portal_link_ttl = "10s"', "portal_link_ttl"),
    ],
)
def test_settings_that_could_break_out_of_css_or_csp_are_refused(
    tmp_path: Path, line: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _console(tmp_path, line)
    assert key in str(caught.value)
