"""webhookd: deliver rows of a PostgreSQL outbox as signed webhooks."""

__version__ = "0.1.0"
