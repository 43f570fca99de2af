"""The operators' console in a real browser (Chromium, driven by Playwright): log in with a
token, read an endpoint's failing attempts, rotate its secret, requeue a dead letter that a
real daemon then delivers to a real receiver, and see a bad form's error; axe-core finds no
serious or critical accessibility violation on the pages visited."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from playwright.async_api import expect

from tests.api_support import ApiUnderTest, make_app, make_endpoint
from tests.browser_support import accessibility_violations, screenshot
from tests.integration.conftest import DaemonFactory, Receiver, wait_until


async def _log_in(page: Any, api: ApiUnderTest, token: str) -> None:
    await page.goto(f"{api.base_url}/console")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Overview").wait_for()


async def _dead_letters(api: ApiUnderTest, count: int) -> None:
    async def enough() -> bool:
        return len((await api.get("/api/v1/app/acme/dead-letter")).body["data"]) == count

    await wait_until(enough, 10, f"{count} dead letters")


async def test_an_operator_logs_in_sees_failures_rotates_and_requeues_a_dead_letter(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory, browser: Any
) -> None:
    healthy = {"on": False}
    receiver.on("/down", lambda _h, _n: web.Response(status=200 if healthy["on"] else 503,
                                                      text="upstream <b>down</b>"))  # fmt: skip
    await make_app(api, "acme", "Acme <Corp>")
    down = await make_endpoint(
        api, "acme", receiver.url("/down"), uid="down", description="orders", retryScheduleMs=[]
    )
    async with run_daemon(breaker={"enabled": False}, health={"enabled": False}):
        sent = await api.post(
            "/api/v1/app/acme/msg",
            {"eventType": "order.created", "payload": {"note": "<img src=x onerror=alert(1)>"}},
        )
        await _dead_letters(api, 1)

        page = await browser.new_page()
        await _log_in(page, api, api.admin)
        cookies = await browser.cookies()
        assert [(c["name"], c["secure"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("webhookd_console", True, True, "Strict")
        ]
        assert api.admin not in str(cookies) and api.admin not in await page.content()
        await page.get_by_test_id("dead24h").get_by_text("1").wait_for()
        assert await accessibility_violations(page) == []
        await screenshot(page, "console-overview")

        await page.goto(f"{api.base_url}/console#/apps/acme/endpoints/{down['id']}")
        await page.get_by_label("Failed attempts only").check()
        failed = page.get_by_test_id("attempt").filter(has_text="503")
        await failed.first.wait_for()
        assert await failed.count() == 1
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "console-endpoint")
        await failed.first.get_by_text("Response").click()
        await failed.first.get_by_text("upstream <b>down</b>").wait_for()  # shown as text
        assert await accessibility_violations(page) == []

        # The secret is hidden until revealed; a rotation shows the new one once.
        assert await page.get_by_test_id("secret").count() == 0
        await page.get_by_role("button", name="Rotate secret").click()
        new_secret = await page.get_by_test_id("new-secret").text_content()
        assert new_secret == (await api.get("/api/v1/app/acme/endpoint/down/secret")).body["key"]

        # A bad URL is refused by the API, and the form says why.
        await page.get_by_label("URL", exact=True).fill("ftp://nowhere")
        await page.get_by_role("button", name="Save").click()
        alert = page.get_by_role("alert").filter(has_text="url")
        await alert.wait_for()

        await page.goto(f"{api.base_url}/console#/apps/acme/messages/{sent.body['id']}")
        payload = await page.get_by_test_id("payload").text_content()
        assert payload is not None and "<img src=x onerror=alert(1)>" in payload
        assert await page.locator("main img").count() == 0  # text, never markup
        await screenshot(page, "console-message")

        healthy["on"] = True
        await page.goto(f"{api.base_url}/console#/apps/acme/dead-letters")
        row = page.get_by_test_id("dead-letter")
        await row.first.wait_for()
        assert await accessibility_violations(page) == []
        await screenshot(page, "console-dead-letters")
        await row.first.get_by_role("button", name="Requeue").click()
        await page.get_by_role("alertdialog").get_by_role("button", name="Confirm").click()
        await page.get_by_text("Requeued 1.").wait_for()
        await receiver.wait_hits(2, "/down")
        await _dead_letters(api, 0)


async def test_a_requeue_of_a_selection_or_a_window_says_how_many_before_it_acts(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory, browser: Any
) -> None:
    healthy = {"on": False}
    receiver.on("/w", lambda _h, _n: web.Response(status=200 if healthy["on"] else 500))
    await make_app(api, "acme")
    await make_endpoint(api, "acme", receiver.url("/w"), retryScheduleMs=[])
    async with run_daemon(breaker={"enabled": False}, health={"enabled": False}):
        for n in range(3):
            await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"n": n}})
        await _dead_letters(api, 3)
        page = await browser.new_page()
        await _log_in(page, api, api.admin)
        await page.goto(f"{api.base_url}/console#/apps/acme/dead-letters")
        await page.get_by_test_id("dead-letter").first.wait_for()
        healthy["on"] = True
        await page.get_by_role("checkbox").first.check()
        await page.get_by_role("button", name="Requeue selected").click()
        dialog = page.get_by_role("alertdialog")
        await dialog.get_by_text("Requeue 1 selected dead letter?").wait_for()
        await dialog.get_by_role("button", name="Confirm").click()
        await page.get_by_text("Requeued 1.").wait_for()
        await receiver.wait_hits(4, "/w")

        await page.get_by_label("Failed since").fill("2000-01-01T00:00")
        await page.get_by_role("button", name="Requeue the window").click()
        await dialog.get_by_text("Requeue 2 dead letters failed in this window?").wait_for()
        await dialog.get_by_role("button", name="Cancel").click()
        assert await dialog.count() == 0
        await page.get_by_role("button", name="Requeue the window").click()
        await dialog.get_by_role("button", name="Confirm").click()
        await page.get_by_text("Requeued 2.").wait_for()
        await receiver.wait_hits(6, "/w")


async def test_a_read_token_sees_the_console_but_no_write_action(
    api: ApiUnderTest, browser: Any
) -> None:
    await make_app(api, "acme")
    ep = await make_endpoint(api, "acme", "https://example.com/hook")
    page = await browser.new_page()
    await _log_in(page, api, await api.token("read"))
    await page.goto(f"{api.base_url}/console#/apps/acme/endpoints/{ep['id']}")
    await page.get_by_text("This token may only read.").wait_for()
    assert await page.get_by_role("button", name="Rotate secret").count() == 0


async def test_a_wrong_token_is_refused_at_the_login_form(api: ApiUnderTest, browser: Any) -> None:
    page = await browser.new_page()
    await page.goto(f"{api.base_url}/console")
    await page.get_by_label("API token").fill("whk_0000000000000000_" + "x" * 43)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("alert").filter(has_text="invalid").wait_for()
    assert await accessibility_violations(page) == []
    await screenshot(page, "console-login")


async def test_the_application_list_is_searched_as_the_operator_types(
    api: ApiUnderTest, browser: Any
) -> None:
    for uid, name in (("shop", "Corner <Shop>"), ("bank", "Bank"), ("bakery", "Bakery")):
        await make_app(api, uid, name)
    page = await browser.new_page()
    await _log_in(page, api, api.admin)
    await page.get_by_role("link", name="Applications").click()
    await page.get_by_test_id("app").nth(2).wait_for()
    await page.get_by_label("Search applications").fill("<sh")
    await page.get_by_test_id("app").filter(has_text="Corner <Shop>").wait_for()
    await expect(page.get_by_test_id("app")).to_have_count(1)
    await page.get_by_role("link", name="Corner <Shop>").press("Enter")  # by keyboard
    await page.get_by_role("heading", name="Application Corner <Shop>").wait_for()
    assert await accessibility_violations(page) == []


async def test_endpoint_actions_change_the_endpoint_as_the_api_then_shows_it(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory, browser: Any
) -> None:
    await make_app(api, "acme")
    ep = await make_endpoint(api, "acme", receiver.url("/hook"), uid="hook")
    path = "/api/v1/app/acme/endpoint/hook"
    async with run_daemon():
        page = await browser.new_page()
        await _log_in(page, api, api.admin)
        # Each page puts focus on its content, whose first Tab stop is its first control; the
        # skip link, once focused, shows and moves focus to the content, staying on the page.
        await expect(page.locator("#main")).to_be_focused()
        await page.get_by_test_id("dps").wait_for()
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Last hour")).to_be_focused()
        skip = page.get_by_role("link", name="Skip to content")
        await skip.focus()
        assert (await skip.bounding_box() or {"x": -1})["x"] >= 0  # on screen when focused
        await page.keyboard.press("Enter")
        await expect(page.locator("#main")).to_be_focused()
        await page.get_by_role("heading", name="Overview").wait_for()
        await page.goto(f"{api.base_url}/console#/apps/acme/endpoints/{ep['id']}")

        await page.get_by_label("Reason").fill("maintenance <window>")
        await page.get_by_role("button", name="Disable").click()
        state = page.get_by_test_id("endpoint-state")
        await state.get_by_text("no — maintenance <window>").wait_for()
        assert (await api.get(path)).body["disabledReason"] == "maintenance <window>"
        await page.get_by_role("button", name="Enable").click()
        await state.get_by_text("yes", exact=True).wait_for()
        await page.get_by_role("button", name="Pause", exact=True).click()
        await state.get_by_text("until ").wait_for()
        assert (await api.get(path + "/state")).body["paused"] is True
        await page.get_by_role("button", name="Resume").click()
        await page.get_by_text("Resumed.").wait_for()
        assert (await api.get(path + "/state")).body["paused"] is False

        await page.get_by_label("Event types (comma-separated; empty: every type)").fill(
            "order.created, order.paid"
        )
        await page.get_by_label("Rate limit (messages per second; empty: none)").fill("7")
        await page.get_by_label("Burst (empty: default)").fill("3")
        await page.get_by_label('Add or change headers (one "Name: value" a line)').fill(
            "X-Tenant: acme\nX-Api-Key: k-123"
        )
        await page.get_by_role("button", name="Save").click()
        await page.get_by_text("Saved.").wait_for()
        saved = (await api.get(path)).body
        assert (saved["eventTypes"], saved["throttleRate"], saved["burst"]) == (
            ["order.created", "order.paid"], 7, 3
        )  # fmt: skip
        await page.get_by_role("button", name="Show headers").click()
        await page.get_by_text("sensitive: never shown").wait_for()
        assert await page.get_by_text("k-123").count() == 0

        await page.get_by_label("Event type", exact=True).fill("order.paid")
        await page.get_by_role("button", name="Send test event").click()
        await page.get_by_text("Test event sent:").wait_for()
        await receiver.wait_hits(1, "/hook")
        assert receiver.at("/hook")[0].headers["X-Tenant"] == "acme"

        # The message log, filtered by endpoint and status; the message's page resends it.
        async def recorded() -> bool:
            log = f"/api/v1/app/acme/msg?status=0&endpoint_id={ep['id']}"
            return bool((await api.get(log)).body["data"])

        await wait_until(recorded, 10, "the test event's success recorded")
        await (
            page.get_by_role("navigation", name="Application")
            .get_by_role("link", name="Messages")
            .click()
        )
        await page.get_by_label("Endpoint", exact=True).select_option(ep["id"])
        await page.get_by_label("Status", exact=True).select_option("0")
        await page.get_by_role("button", name="Filter").click()
        sent = page.get_by_test_id("message").filter(has_text="Succeeded")
        await sent.wait_for()
        await sent.get_by_role("link").click()
        await page.get_by_role("button", name=f"Resend to {ep['id']}").click()
        await page.get_by_text("Resent to 1 endpoint.").wait_for()
        await receiver.wait_hits(2, "/hook")
        assert await accessibility_violations(page) == []


async def test_the_overview_refreshes_by_itself(api: ApiUnderTest, browser: Any) -> None:
    await make_app(api, "acme")
    await make_endpoint(api, "acme", "https://example.com/hook")
    page = await browser.new_page()
    await _log_in(page, api, api.admin)
    scheduled = page.get_by_test_id("scheduled")
    await expect(scheduled).to_contain_text("0")
    later = {"eventType": "e", "payload": {}, "deliverAt": "2999-01-01T00:00:00Z"}
    assert (await api.post("/api/v1/app/acme/msg", later)).status == 202
    await expect(scheduled).to_contain_text("1", timeout=12_000)  # the 5 s poll, no reload
