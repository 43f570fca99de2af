"""The message log in a real browser: the console filters by status and event type together,
across every application or within one, pages Newer and Older; the portal's log, with the
same filters, shows its own application's messages and never another's. Delivery states are
set with an UPDATE, as the daemon's outcome writes leave them (docs/api.md has the rule)."""

from __future__ import annotations

from typing import Any

import asyncpg
from playwright.async_api import expect

from tests.api_support import ApiUnderTest, make_app, make_endpoint
from tests.browser_support import accessibility_violations, screenshot


async def _message(
    api: ApiUnderTest, db: asyncpg.Connection, app: str, msg_id: str, event_type: str, state: str
) -> None:
    """A message of `app` whose one delivery is in `state`."""
    reply = await api.post(
        f"/api/v1/app/{app}/msg", {"eventType": event_type, "payload": {}, "eventId": msg_id}
    )
    assert reply.status == 202, reply.body
    await db.execute(
        "UPDATE webhookd.deliveries d SET status = $2 FROM webhookd.outbox o"
        " WHERE o.id = d.message_id AND o.msg_id = $1",
        msg_id, state,
    )  # fmt: skip


async def _two_apps(api: ApiUnderTest, db: asyncpg.Connection) -> None:
    for app in ("acme", "globex"):
        await make_app(api, app, app.title())
        await make_endpoint(api, app, f"https://{app}.example.com/hook")
    await _message(api, db, "acme", "acme-paid-failed", "order.paid", "failed")
    await _message(api, db, "acme", "acme-paid-ok", "order.paid", "delivered")
    await _message(api, db, "acme", "acme-created-failed", "order.created", "failed")
    await _message(api, db, "globex", "globex-paid-failed", "order.paid", "failed")
    await _message(api, db, "globex", "globex-paid-waiting", "order.paid", "pending")


async def _shown(page: Any) -> list[str]:
    rows = page.get_by_test_id("message")
    return [text.strip() for text in await rows.get_by_role("link").all_inner_texts()]


async def test_the_console_filters_every_application_s_log_by_status_and_event_type(
    api: ApiUnderTest, db: asyncpg.Connection, browser: Any
) -> None:
    await _two_apps(api, db)
    page = await browser.new_page()
    await page.goto(f"{api.base_url}/console")
    await page.get_by_label("API token").fill(api.admin)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Messages").click()
    await page.get_by_role("heading", name="Messages", exact=True).wait_for()
    rows = page.get_by_test_id("message")
    await expect(rows).to_have_count(5)  # both applications'
    chooser = page.get_by_role("combobox", name="Application")
    assert await chooser.input_value() == ""  # All applications

    await page.get_by_label("Status", exact=True).select_option(label="Failed")
    await page.get_by_label("Event types").fill("order.paid")
    await page.get_by_label("Event types").press("Enter")  # the form submits by keyboard
    await expect(rows).to_have_count(2)
    assert await _shown(page) == ["globex-paid-failed", "acme-paid-failed"]
    await expect(rows.filter(has_text="Failed")).to_have_count(2)
    assert await accessibility_violations(page) == []
    await screenshot(page, "console-messages")

    # One application: the same filters, its messages only.
    await chooser.select_option(label="Acme (acme)")
    await expect(rows).to_have_count(1)
    assert await _shown(page) == ["acme-paid-failed"]
    await page.get_by_label("Status", exact=True).select_option(label="Any")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    assert await _shown(page) == ["acme-paid-ok", "acme-paid-failed"]
    await expect(rows.filter(has_text="Succeeded")).to_have_count(1)
    await rows.get_by_role("link", name="acme-paid-ok").click()
    await page.get_by_role("heading", name="Message acme-paid-ok").wait_for()


async def test_the_console_log_pages_newer_and_older_with_a_filter(
    api: ApiUnderTest, db: asyncpg.Connection, browser: Any
) -> None:
    await make_app(api, "acme", "Acme")
    await make_endpoint(api, "acme", "https://acme.example.com/hook")
    await db.execute(
        "INSERT INTO webhookd.outbox (tenant_id, msg_id, event_type, payload, created_at)"
        " SELECT 'acme', 'bulk-' || lpad(g::text, 2, '0'), 'bulk', '{}',"
        "        now() - (60 - g) * interval '1 second'"
        " FROM generate_series(1, 55) g"
    )
    await db.execute(
        "UPDATE webhookd.deliveries SET status = 'delivered'"
        " WHERE message_id IN (SELECT id FROM webhookd.outbox WHERE msg_id <> 'bulk-03')"
    )
    page = await browser.new_page()
    await page.goto(f"{api.base_url}/console")
    await page.get_by_label("API token").fill(api.admin)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    await page.goto(f"{api.base_url}/console#/apps/acme/messages")
    await page.get_by_label("Status", exact=True).select_option(label="Succeeded")
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_test_id("message")
    newer = page.get_by_role("button", name="Newer")
    older = page.get_by_role("button", name="Older")
    await expect(rows.first).to_contain_text("bulk-55")
    await expect(rows).to_have_count(50)
    await expect(newer).to_be_disabled()
    await older.click()
    await expect(rows.first).to_contain_text("bulk-05")
    shown = await _shown(page)
    assert shown == ["bulk-05", "bulk-04", "bulk-02", "bulk-01"]  # bulk-03 is pending
    await expect(older).to_be_disabled()
    await newer.click()
    await expect(rows).to_have_count(50)
    await expect(rows.first).to_contain_text("bulk-55")
    await expect(newer).to_be_disabled()
    await expect(older).to_be_enabled()


async def test_the_portal_s_filtered_log_shows_its_application_only(
    api: ApiUnderTest, db: asyncpg.Connection, browser: Any
) -> None:
    await _two_apps(api, db)
    acme = (await api.get("/api/v1/app/acme")).body
    access = await api.post("/api/v1/auth/app-portal-access/acme", {"readOnly": True})
    page = await browser.new_page()
    await page.goto(access.body["url"])
    await page.get_by_role("heading", name="Acme", level=1).wait_for()
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Messages").click()
    rows = page.get_by_test_id("message")
    await expect(rows).to_have_count(3)
    # the portal's application is fixed: no choice of it
    assert await page.get_by_role("combobox", name="Application").count() == 0
    endpoints = await page.get_by_label("Endpoint", exact=True).locator("option").all_inner_texts()
    assert [e for e in endpoints if "example.com" in e] == ["https://acme.example.com/hook"]

    await page.get_by_label("Status", exact=True).select_option(label="Failed")
    await page.get_by_label("Event types").fill("order.paid")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    assert await _shown(page) == ["acme-paid-failed"]
    await page.get_by_label("Status", exact=True).select_option(label="Pending")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("No message matches.").wait_for()  # globex's pending one is not
    assert await page.get_by_text("globex").count() == 0
    assert await accessibility_violations(page) == []
    assert acme["id"] in access.body["url"]
