"""Console sessions' CSRF tokens (derived from the session id; the sessions themselves are in
PostgreSQL, tests/integration/api/test_api_console.py) and the [console] settings' checks: a
brand colour, a logo URL and frame-ancestors sources are taken only in forms that cannot break
out of the page's CSS or Content-Security-Policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.console.sessions import Session, csrf_for, id_hash


def test_a_session_s_csrf_token_is_derived_from_its_id_and_checked_exactly() -> None:
    one, other = "a" * 43, "b" * 43
    assert csrf_for(one) == csrf_for(one) != csrf_for(other)
    assert len(csrf_for(one)) == 43 and one not in csrf_for(one)
    session = Session(one, "key_0", datetime.now(UTC))
    assert session.csrf_ok(csrf_for(one))
    assert not session.csrf_ok(csrf_for(other)) and not session.csrf_ok("")
    assert not session.csrf_ok(csrf_for(one)[:-1] + "x")
    assert id_hash(one) != id_hash(other) and len(id_hash(one)) == 32


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
