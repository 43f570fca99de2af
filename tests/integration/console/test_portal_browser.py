"""The tenant portal in a real browser: opened from a one-time link (the svix SDK's
app_portal_access), inside an iframe of another origin, it shows one application only; the
other application's pages are not reachable, a used link is refused, and a bad endpoint is
refused with the reason."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from svix.api import AppPortalAccessIn, SvixAsync, SvixOptions

from daemon.api import tokens
from tests.api_support import ApiUnderTest, make_app, make_endpoint, running_api
from tests.browser_support import accessibility_violations, screenshot


async def _embedding_site(portal_url: str) -> tuple[web.AppRunner, str]:
    """A page of another origin (the tenant's product) that frames the portal."""

    async def page(_request: web.Request) -> web.Response:
        html = (
            '<!doctype html><html lang="en"><head><title>Product</title></head><body>'
            f'<iframe src="{portal_url}" title="Webhooks" width="1000" height="700"></iframe>'
            "</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/"


async def _portal_link(api: ApiUnderTest, app: str) -> str:
    svix = SvixAsync(api.admin, SvixOptions(server_url=api.base_url))
    try:
        access = await svix.authentication.app_portal_access(app, AppPortalAccessIn(expiry=600))
    finally:
        await svix._httpx_client.aclose()
    assert access.token in access.url
    return access.url


async def test_the_portal_in_an_iframe_shows_one_application_and_nothing_of_another(
    db_dsn: str, browser: Any
) -> None:
    # Any loopback port may frame the portal here: the embedding page is another origin.
    console = {
        "frame_ancestors": "'self' http://127.0.0.1:*",
        "portal_name": "Acme Hooks",
        "portal_primary_color": "#0f5132",
    }
    async with running_api(db_dsn, console=console) as api:
        await make_app(api, "acme", "Acme Inc.")
        other = await make_app(api, "globex")
        mine = await make_endpoint(api, "acme", "https://acme.example.com/hook")
        theirs = await make_endpoint(api, "globex", "https://globex.example.com/secret-hook")
        url = await _portal_link(api, "acme")
        runner, site = await _embedding_site(url)
        try:
            page = await browser.new_page()
            await page.goto(site)
            portal = page.frame_locator("iframe")
            await portal.get_by_role("heading", name="Acme Inc.", level=1).wait_for()
            await portal.get_by_text("https://acme.example.com/hook").wait_for()
            assert await portal.get_by_text("Acme Hooks").count() == 1
            assert await portal.get_by_text("globex.example.com").count() == 0
        finally:
            await runner.cleanup()

        # The link was used up by the iframe: opened again, it is refused.
        page = await browser.new_page()
        await page.goto(url)
        await page.get_by_role(
            "heading", name="This portal link has expired or was already used"
        ).wait_for()

        page = await browser.new_page()
        await page.goto(await _portal_link(api, "acme"))
        await page.get_by_text("https://acme.example.com/hook").wait_for()
        assert "key=" not in page.url  # the one-time token left the address bar
        header = await page.evaluate(
            "getComputedStyle(document.querySelector('header')).backgroundColor"
        )
        assert header == "rgb(15, 81, 50)"  # the brand colour
        assert await accessibility_violations(page) == []
        await screenshot(page, "portal-endpoints")

        # Another application's endpoint, by its id, through the portal's own route.
        await page.evaluate(f"location.hash = '#/endpoints/{theirs['id']}'")
        await page.get_by_role("alert").filter(has_text="not found").wait_for()
        assert await page.get_by_text("secret-hook").count() == 0
        await page.evaluate(f"location.hash = '#/apps/{other['id']}'")
        await page.get_by_role("heading", name="Not found").wait_for()

        # A bad endpoint is refused with the reason; a good one is added.
        await page.evaluate("location.hash = '#/'")
        await page.get_by_label("URL", exact=True).fill("not a url")
        await page.get_by_role("button", name="Add endpoint").click()
        await page.get_by_role("alert").filter(has_text="url").wait_for()
        await page.get_by_label("URL", exact=True).fill("https://acme.example.com/second")
        await page.get_by_role("button", name="Add endpoint").click()
        await page.get_by_role("link", name="https://acme.example.com/second").wait_for()
        listed = await api.get("/api/v1/app/acme/endpoint")
        assert {e["url"] for e in listed.body["data"]} == {
            mine["url"],
            "https://acme.example.com/second",
        }

        # Its own endpoint: rotate the secret, then delete it (after a confirmation).
        await page.get_by_role("link", name="https://acme.example.com/second").click()
        await page.get_by_role("button", name="Rotate secret").click()
        await page.get_by_test_id("new-secret").wait_for()
        await page.get_by_role("button", name="Delete endpoint").click()
        await page.get_by_role("alertdialog").get_by_role("button", name="Confirm").click()
        await page.get_by_role("heading", name="Acme Inc.", level=1).wait_for()
        listed = await api.get("/api/v1/app/acme/endpoint")
        assert [e["url"] for e in listed.body["data"]] == [mine["url"]]


async def test_a_portal_whose_session_ends_says_so(api: ApiUnderTest, browser: Any) -> None:
    await make_app(api, "acme", "Acme Inc.")
    page = await browser.new_page()
    sessions: list[str] = []

    async def remember(response: Any) -> None:
        if response.url.endswith("/portal-session") and response.ok:
            sessions.append((await response.json())["token"])

    page.on("response", remember)
    await page.goto(await _portal_link(api, "acme"))
    await page.get_by_role("heading", name="Acme Inc.", level=1).wait_for()
    ident = tokens.token_id(sessions[0])
    assert ident is not None
    await tokens.revoke_token(api.store, ident)  # as its expiry would
    # The next call (this navigation, or the page's own refresh if it comes first) is a 401.
    await page.evaluate("location.hash = '#/messages'")
    await page.get_by_role("heading", name="Your portal session has ended").wait_for()
    assert await page.get_by_role("navigation", name="Main").get_by_role("link").count() == 0
