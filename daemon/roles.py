"""The least-privilege GRANTs (`sql/roles.sql`) with the application's, daemon's and API's role
names."""

from __future__ import annotations

from importlib import resources

from daemon.errors import ConfigError

DEFAULT_APP_ROLE = "webhookd_app"
DEFAULT_DAEMON_ROLE = "webhookd_daemon"
DEFAULT_API_ROLE = "webhookd_api"


def quote_ident(name: str) -> str:
    """A role name as a quoted SQL identifier (as psql's :"var" does)."""
    return '"' + name.replace('"', '""') + '"'


def roles_sql(
    app_role: str = DEFAULT_APP_ROLE,
    daemon_role: str = DEFAULT_DAEMON_ROLE,
    api_role: str = DEFAULT_API_ROLE,
) -> str:
    """roles.sql with the psql variables :"app_role", :"daemon_role" and :"api_role" filled in."""
    named = (("--app-role", app_role), ("--daemon-role", daemon_role), ("--api-role", api_role))
    for option, name in named:
        if not name or "\0" in name or len(name.encode()) > 63:
            raise ConfigError(option, "must be a role name of 1 to 63 bytes")
    text = resources.files("daemon.sql").joinpath("roles.sql").read_text("utf-8")
    for variable, name in (("app_role", app_role), ("daemon_role", daemon_role)):
        text = text.replace(f':"{variable}"', quote_ident(name))
    return text.replace(':"api_role"', quote_ident(api_role))
