"""The least-privilege GRANTs (`sql/roles.sql`) with the application's and daemon's role names."""

from __future__ import annotations

from importlib import resources

from daemon.errors import ConfigError

DEFAULT_APP_ROLE = "webhookd_app"
DEFAULT_DAEMON_ROLE = "webhookd_daemon"


def quote_ident(name: str) -> str:
    """A role name as a quoted SQL identifier (as psql's :"var" does)."""
    return '"' + name.replace('"', '""') + '"'


def roles_sql(app_role: str = DEFAULT_APP_ROLE, daemon_role: str = DEFAULT_DAEMON_ROLE) -> str:
    """roles.sql with the psql variables :"app_role" and :"daemon_role" filled in."""
    for option, name in (("--app-role", app_role), ("--daemon-role", daemon_role)):
        if not name or "\0" in name or len(name.encode()) > 63:
            raise ConfigError(option, "must be a role name of 1 to 63 bytes")
    text = resources.files("daemon.sql").joinpath("roles.sql").read_text("utf-8")
    return text.replace(':"app_role"', quote_ident(app_role)).replace(
        ':"daemon_role"', quote_ident(daemon_role)
    )
