"""The official svix SDK, unchanged, pointed at webhookd with SvixOptions(server_url=...): what
issue #13 says code written against Svix must be able to do. Deliveries are made by a real
daemon and verified by the receiver with the SDK's own Webhook(secret).verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from svix.api import (
    ApplicationIn,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointListOptions,
    EndpointPatch,
    EndpointSecretRotateIn,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
    MessageCreateOptions,
    MessageGetOptions,
    MessageIn,
    MessageListOptions,
    RecoverIn,
    SvixAsync,
    SvixOptions,
)
from svix.exceptions import HttpError, HTTPValidationError
from svix.webhooks import Webhook

from tests.api_support import ApiUnderTest
from tests.integration.conftest import DaemonFactory, Receiver, wait_until

SECRET = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest_asyncio.fixture
async def svix(api: ApiUnderTest) -> AsyncIterator[SvixAsync]:
    client = SvixAsync(api.admin, SvixOptions(server_url=api.base_url))
    yield client
    await client._httpx_client.aclose()


def verifying(secrets: dict[str, str], verified: list[Any]) -> Any:
    """A receiver responder that checks each request's signature with the SDK."""

    def respond(hit: Any, _n: int) -> web.Response:
        secret = secrets[hit.path]
        try:
            Webhook(secret).verify(hit.body, hit.headers)
        except Exception:
            return web.Response(status=401)
        verified.append(orjson.loads(hit.body))
        return web.Response(text="ok")

    return respond


async def test_svix_sdk_manages_endpoints_sends_and_reads_attempts(
    svix: SvixAsync, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    app = await svix.application.create(ApplicationIn(name="Acme", uid="acme"))
    assert app.uid == "acme" and app.id.startswith("app_")
    assert (await svix.application.get("acme")).id == app.id

    endpoint = await svix.endpoint.create(
        app.id,
        EndpointIn(
            url=receiver.url("/hooks"),
            event_types=["invoice.paid", "invoice.voided"],
            throttle_rate=50,
            headers={"X-Tenant": "acme"},
            secret=SECRET,
            description="billing",
            uid="billing",
        ),
    )
    assert endpoint.event_types == ["invoice.paid", "invoice.voided"]
    assert endpoint.throttle_rate == 50 and endpoint.disabled is False
    assert (await svix.endpoint.get(app.id, "billing")).id == endpoint.id
    listed = await svix.endpoint.list(app.id)
    assert [e.id for e in listed.data] == [endpoint.id] and listed.done
    patched = await svix.endpoint.patch(
        app.id, endpoint.id, EndpointPatch(event_types=["invoice.paid"], description="paid only")
    )
    assert patched.event_types == ["invoice.paid"] and patched.description == "paid only"
    headers = await svix.endpoint.get_headers(app.id, endpoint.id)
    assert headers.headers == {"X-Tenant": "acme"} and headers.sensitive == []
    await svix.endpoint.set_headers(app.id, endpoint.id, EndpointHeadersIn(headers={"X-A": "1"}))
    await svix.endpoint.patch_headers(
        app.id, endpoint.id, EndpointHeadersPatchIn(headers={"X-B": "2"})
    )
    assert (await svix.endpoint.get_headers(app.id, endpoint.id)).headers == {
        "X-A": "1",
        "X-B": "2",
    }

    assert (await svix.endpoint.get_secret(app.id, endpoint.id)).key == SECRET
    rotated = await svix.endpoint.rotate_secret(app.id, endpoint.id, EndpointSecretRotateIn())
    assert rotated.key != SECRET
    assert (await svix.endpoint.get_secret(app.id, endpoint.id)).key == rotated.key

    verified: list[Any] = []
    receiver.on("/hooks", verifying({"/hooks": rotated.key}, verified))
    async with run_daemon():
        keyed = await svix.message.create(
            app.id,
            MessageIn(event_type="invoice.paid", payload={"invoice": "in_1"}),
            MessageCreateOptions(idempotency_key="invoice-in_1-paid"),
        )
        same = await svix.message.create(
            app.id,
            MessageIn(event_type="invoice.paid", payload={"invoice": "changed"}),
            MessageCreateOptions(idempotency_key="invoice-in_1-paid"),
        )
        unkeyed = await svix.message.create(
            app.id, MessageIn(event_type="invoice.paid", payload={"invoice": "in_2"})
        )
        skipped = await svix.message.create(
            app.id, MessageIn(event_type="invoice.voided", payload={"invoice": "in_3"})
        )
        assert same.id == keyed.id and unkeyed.id != keyed.id
        await receiver.wait_hits(2, "/hooks")

        async def attempted() -> bool:
            page = await svix.message_attempt.list_by_endpoint(app.id, endpoint.id)
            return len(page.data) == 2

        await wait_until(attempted, 10, "two attempts recorded")
        by_endpoint = await svix.message_attempt.list_by_endpoint(
            app.id, endpoint.id, MessageAttemptListByEndpointOptions(limit=10)
        )
        assert {a.msg_id for a in by_endpoint.data} == {keyed.id, unkeyed.id}
        assert all(a.response_status_code == 200 and a.status == 0 for a in by_endpoint.data)
        by_msg = await svix.message_attempt.list_by_msg(
            app.id, keyed.id, MessageAttemptListByMsgOptions(limit=10)
        )
        assert [a.endpoint_id for a in by_msg.data] == [endpoint.id]
        assert (await svix.message_attempt.list_by_msg(app.id, skipped.id)).data == []

        await svix.message_attempt.resend(app.id, keyed.id, endpoint.id)
        await receiver.wait_hits(3, "/hooks")
    assert len(verified) == 3 and {v["invoice"] for v in verified} == {"in_1", "in_2"}
    # the SDK asks for with_content=false unless told otherwise
    assert (await svix.message.get(app.id, keyed.id)).payload == {}
    message = await svix.message.get(app.id, keyed.id, MessageGetOptions(with_content=True))
    assert message.payload == {"invoice": "in_1"} and message.event_type == "invoice.paid"

    await svix.endpoint.delete(app.id, endpoint.id)
    with pytest.raises(HttpError) as gone:
        await svix.endpoint.get(app.id, endpoint.id)
    assert gone.value.status_code == 404 and gone.value.code == "not_found"


async def test_svix_sdk_recovers_failed_messages(
    svix: SvixAsync, receiver: Receiver, run_daemon: DaemonFactory, api: ApiUnderTest
) -> None:
    healthy = {"on": False}
    receiver.on("/r", lambda _h, _n: web.Response(status=200 if healthy["on"] else 500))
    app = await svix.application.create(ApplicationIn(name="Acme"))
    endpoint = await svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/r")))
    await api.call("PATCH", f"/api/v1/app/{app.id}/endpoint/{endpoint.id}", {"retryScheduleMs": []})
    since = datetime.now(UTC) - timedelta(minutes=1)
    async with run_daemon(breaker={"enabled": False}):
        await svix.message.create(app.id, MessageIn(event_type="e", payload={"n": 1}))

        async def failed() -> bool:
            stats = await svix.endpoint.get_stats(app.id, endpoint.id)
            return stats.fail == 1

        await wait_until(failed, 10, "a dead letter")
        healthy["on"] = True
        task = await svix.endpoint.recover(app.id, endpoint.id, RecoverIn(since=since))
        assert task.task == "endpoint.recover"
        await receiver.wait_hits(2, "/r")


async def test_svix_sdk_pages_through_hundreds_of_items(svix: SvixAsync) -> None:
    app = await svix.application.create(ApplicationIn(name="Big", uid="big"))
    gate = asyncio.Semaphore(20)

    async def send(n: int) -> str:
        async with gate:
            made = await svix.message.create(
                app.id, MessageIn(event_type="bulk.item", payload={"n": n})
            )
            return made.id

    async def add(n: int) -> str:
        async with gate:
            made = await svix.endpoint.create(app.id, EndpointIn(url=f"https://example.com/{n}"))
            return made.id

    sent = await asyncio.gather(*(send(n) for n in range(300)))
    endpoints = await asyncio.gather(*(add(n) for n in range(120)))

    seen: list[str] = []
    iterator = None
    while True:
        page = await svix.message.list(app.id, MessageListOptions(limit=70, iterator=iterator))
        seen += [m.id for m in page.data]
        iterator = page.iterator
        if page.done:
            break
    assert len(seen) == 300 and set(seen) == set(sent)

    seen_endpoints: list[str] = []
    iterator = None
    while True:
        listed = await svix.endpoint.list(app.id, EndpointListOptions(limit=50, iterator=iterator))
        seen_endpoints += [e.id for e in listed.data]
        iterator = listed.iterator
        if listed.done:
            break
    assert sorted(seen_endpoints) == sorted(endpoints)


async def test_svix_sdk_raises_its_own_errors_for_refusals(svix: SvixAsync) -> None:
    with pytest.raises(HttpError) as missing:
        await svix.application.get("nope")
    assert (missing.value.status_code, missing.value.code) == (404, "not_found")
    app = await svix.application.create(ApplicationIn(name="Acme"))
    with pytest.raises(HTTPValidationError) as invalid:
        await svix.endpoint.create(app.id, EndpointIn(url="ftp://example.com"))
    assert invalid.value.status_code == 422
    assert invalid.value.detail[0].loc == ["body", "url"]
    with pytest.raises(HttpError) as conflict:
        await svix.application.create(ApplicationIn(name="x", uid="dup"))
        await svix.application.create(ApplicationIn(name="x", uid="dup"))
    assert conflict.value.status_code == 409
    fetched = await svix.application.get_or_create(ApplicationIn(name="x", uid="dup"))
    assert fetched.uid == "dup"
