"""Endpoints in bulk (`endpoint import`): all or nothing, a batch of rows per statement.

Each endpoint is checked as `endpoint add` checks it (`validate_spec`), given an id and a secret
when it has none, and stored with its secret and header values sealed by the same `SecretBox`.
Everything is written in one transaction, one `INSERT ... SELECT FROM unnest(...)` per batch
rather than a round trip per endpoint (the row trigger of migrations/0002 still gives each its
`endpoint_state` row). An endpoint that cannot be created (a bad value, an id used twice in the
input or taken already) is named by its line, and nothing is written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

import orjson

from daemon.endpoints import EndpointSpec, stored_columns, validate_spec
from daemon.errors import ConfigError, WebhookdError
from daemon.models import SignatureSpec
from daemon.secretbox import PLAINTEXT, SecretBox
from daemon.signing import generate_secret_for

if TYPE_CHECKING:
    from daemon.store import Store, Tx

T = TypeVar("T")
BATCH = 1000  # endpoints per INSERT: large enough that round trips do not count

# validate_spec names the options of `endpoint add`; an import names the fields of its lines,
# as `endpoint show --json` prints them.
_FIELD_OF_OPTION = {
    "--tenant": "tenant",
    "--event-type": "event_types",
    "--header": "headers",
    "--max-in-flight": "max_in_flight",
    "--retry-schedule": "retry_schedule",
}


class BadLine(WebhookdError):
    """A line of the input that does not make an endpoint: its number, the field and why
    (never the value of a secret or a header)."""

    exit_code = 2

    def __init__(self, line: int, field: str | None, why: str) -> None:
        super().__init__(f"line {line}: {field}: {why}" if field else f"line {line}: {why}")
        self.line = line
        self.field = field
        self.why = why


_OPTION = re.compile(r"--[a-z][a-z-]*")


def field_of(option: str) -> str:
    """The field an option of `endpoint add` is written as in an import line."""
    return _FIELD_OF_OPTION.get(option, option.removeprefix("--").replace("-", "_"))


def _in_fields(why: str) -> str:
    """A reason that names options of `endpoint add` (`needs --rate`), naming fields instead."""
    return _OPTION.sub(lambda m: field_of(m[0]), why)


@dataclass(frozen=True)
class Imported:
    """An endpoint created, with its secret in clear (shown once, as `endpoint add` does)."""

    line: int
    id: str
    url: str
    signature: SignatureSpec
    secret: str


async def import_endpoints(
    store: Store,
    specs: Iterable[tuple[int, EndpointSpec]],
    *,
    allow_http: bool,
    box: SecretBox = PLAINTEXT,
    batch_size: int = BATCH,
) -> list[Imported]:
    """Create every endpoint of `specs` ((line number, spec) pairs, read lazily) or none:
    raises `BadLine` for the first that cannot be created, and the transaction is rolled back."""
    seen: dict[str, int] = {}
    created: list[Imported] = []
    async with store.transaction() as tx:
        prepared = (_prepared(line, spec, allow_http, seen) for line, spec in specs)
        for batch in _batched(prepared, batch_size):
            await _insert(tx, batch, box)
            created.extend(imported for imported, _ in batch)
    return created


def _batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """itertools.batched (Python 3.12)."""
    it = iter(items)
    while batch := tuple(islice(it, size)):
        yield batch


def _prepared(
    line: int, spec: EndpointSpec, allow_http: bool, seen: dict[str, int]
) -> tuple[Imported, EndpointSpec]:
    try:
        validate_spec(spec, allow_http=allow_http)
    except ConfigError as exc:
        raise BadLine(line, field_of(exc.key), _in_fields(exc.why)) from None
    endpoint_id = spec.id if spec.id is not None else "ep_" + uuid.uuid4().hex
    first = seen.setdefault(endpoint_id, line)
    if first != line:
        raise BadLine(line, "id", f"{endpoint_id} is also the id on line {first}")
    secret = spec.secret if spec.secret is not None else generate_secret_for(spec.signature)
    return Imported(line, endpoint_id, spec.url, spec.signature, secret), spec


async def _insert(tx: Tx, batch: tuple[tuple[Imported, EndpointSpec], ...], box: SecretBox) -> None:
    columns = [stored_columns(spec, imported.secret, box) for imported, spec in batch]
    arrays = {name: [c[name] for c in columns] for name in columns[0]}
    inserted = await tx.fetch(
        "endpoints_import",
        ids=[imported.id for imported, _ in batch],
        tenant_ids=arrays["tenant_id"],
        urls=arrays["url"],
        descriptions=arrays["description"],
        # unnest() cannot take arrays of arrays: these two go as JSON
        event_types=[orjson.dumps(types).decode() for types in arrays["event_types"]],
        secrets=arrays["secret"],
        signature_schemes=arrays["signature_scheme"],
        signature_headers=arrays["signature_header"],
        signature_prefixes=arrays["signature_prefix"],
        headers=arrays["headers"],
        rates_per_s=arrays["rate_per_s"],
        bursts=arrays["burst"],
        max_in_flights=arrays["max_in_flight"],
        timeouts_ms=arrays["timeout_ms"],
        retry_schedules_ms=[
            None if ms is None else orjson.dumps(ms).decode() for ms in arrays["retry_schedule_ms"]
        ],
        payload_formats=arrays["payload_format"],
        payload_templates=arrays["payload_template"],
        payload_titles=arrays["payload_title"],
        proxies=arrays["proxy"],
    )
    if len(inserted) < len(batch):
        taken = _not_inserted(batch, {r["id"] for r in inserted})
        first = next(taken)
        raise BadLine(first.line, "id", f"{first.id} is taken by an existing (or deleted) endpoint")


def _not_inserted(
    batch: tuple[tuple[Imported, EndpointSpec], ...], inserted: set[str]
) -> Iterator[Imported]:
    return (imported for imported, _ in batch if imported.id not in inserted)
