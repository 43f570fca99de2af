"""Fixtures of the console's and portal's tests: the API (tests/api_support.py) and the
session's browser (tests/browser_support.py)."""

from __future__ import annotations

from tests.api_support import api, db
from tests.browser_support import browser, chromium_endpoint

__all__ = ["api", "browser", "chromium_endpoint", "db"]
