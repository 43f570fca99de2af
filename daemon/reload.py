"""Configuration reload (SIGHUP): what a running daemon takes from a new file, what needs a restart.

Pure: `plan(running, loaded)` returns the configuration to run with and the keys that changed.
Limits, concurrency, retries, timeouts, the breaker, health, retention and logging apply at once;
the database, the metrics listener, the instance id, LISTEN and the HTTP client's settings (the
destination guard, the proxy) are fixed when the daemon starts, so a change to them keeps the
running value until a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from daemon.config import Config, config_as_dict

RESTART_SECTIONS = ("database", "metrics")
# Restart-only keys of the other sections: TOML key -> dataclass field.
RESTART_KEYS = {
    "outbox.instance_id": "instance_id",
    "outbox.listen": "listen",
    "delivery.user_agent": "user_agent",
    "delivery.max_response_body": "max_response_body_bytes",
    "delivery.stored_response_body": "stored_response_body_bytes",
    "delivery.allow_insecure_http": "allow_insecure_http",
    "delivery.allow_private_networks": "allow_private_networks",
    "delivery.proxy": "proxy",
    "delivery.no_proxy": "no_proxy",
}


class LiveConfig:
    """The configuration a running daemon uses now: the one way a reload reaches its parts.
    Parts read it by calling it (each read sees the latest reload); a part that must act on a
    change (recompute its limits, look again at once) registers with `on_change`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._listeners: list[Callable[[Config, Config], None]] = []

    def __call__(self) -> Config:
        return self._config

    def on_change(self, listener: Callable[[Config, Config], None]) -> None:
        """Call `listener(old, new)` after each `set`, in the order registered."""
        self._listeners.append(listener)

    def set(self, config: Config) -> None:
        old, self._config = self._config, config
        for listener in self._listeners:
            listener(old, config)


@dataclass(frozen=True)
class ReloadPlan:
    config: Config  # the loaded one, with the restart-only settings kept as they run
    applied: list[str]  # keys that changed and take effect now
    needs_restart: list[str]  # keys that changed but keep their running value


def changed_keys(old: Config, new: Config) -> list[str]:
    """`section.key` of every setting that differs (TOML names)."""
    before, after = config_as_dict(old), config_as_dict(new)
    keys = {
        f"{section}.{key}"
        for section, values in after.items()
        for key, value in values.items()
        if before.get(section, {}).get(key) != value
    }
    if old.database.url != new.database.url:  # shown redacted: a new password looks the same
        keys.add("database.url")
    if old.delivery.proxy != new.delivery.proxy:  # the same
        keys.add("delivery.proxy")
    return sorted(keys)


def needs_restart(key: str) -> bool:
    return key.partition(".")[0] in RESTART_SECTIONS or key in RESTART_KEYS


def plan(old: Config, new: Config) -> ReloadPlan:
    keys = changed_keys(old, new)
    restart = [k for k in keys if needs_restart(k)]
    config = replace(
        new,
        database=old.database,
        metrics=old.metrics,
        outbox=replace(new.outbox, **_fields(old.outbox, "outbox")),
        delivery=replace(new.delivery, **_fields(old.delivery, "delivery")),
    )
    return ReloadPlan(config, [k for k in keys if k not in restart], restart)


def _fields(section: object, name: str) -> dict[str, Any]:
    prefix = name + "."
    return {
        field: getattr(section, field)
        for key, field in RESTART_KEYS.items()
        if key.startswith(prefix)
    }
