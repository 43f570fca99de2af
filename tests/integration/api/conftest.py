"""Fixtures of the API tests (tests/api_support.py)."""

from __future__ import annotations

from tests.api_support import api, db

__all__ = ["api", "db"]
