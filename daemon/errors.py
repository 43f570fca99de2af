"""Exceptions that carry data; the CLI turns them into one line and an exit code."""

from __future__ import annotations


class WebhookdError(Exception):
    """Base of every error webhookd raises on purpose."""

    exit_code = 1


class ConfigError(WebhookdError):
    """A configuration key (or CLI option) has a bad value; names the key."""

    exit_code = 2

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


class DatabaseUnavailable(WebhookdError):
    """PostgreSQL could not be reached or the connection was lost."""


class MigrationsPending(WebhookdError):
    """The schema is older than this build; `webhookd migrate` (or `run --migrate`) fixes it."""

    def __init__(self, pending: list[str]) -> None:
        super().__init__(
            "database schema is not current, pending migrations: "
            + ", ".join(pending)
            + " (run `webhookd migrate` or start with `webhookd run --migrate`)"
        )
        self.pending = pending


class NotFound(WebhookdError):
    """An endpoint or message id that does not exist."""

    exit_code = 3

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} not found: {ident}")
        self.kind = kind
        self.ident = ident


class DestinationRefused(WebhookdError):
    """A destination URL or resolved address that policy forbids."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"destination refused: {why}")
        self.url = url
        self.why = why
