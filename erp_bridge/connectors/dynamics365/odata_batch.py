"""OData v4 ``$batch`` with one changeset (OData 4.0 part 1, 11.7; ../shared/specs/dynamics365/odata.md
"Run multiple requests in a single transaction"): written here, parsed with the standard library's
MIME parser.

A changeset is atomic: either every request in it is applied or none is, and the service then answers
the whole changeset with ONE error response. A later request can address an entity an earlier one
created through its ``Content-ID`` (``$1/InventoryMovementJournalLine``), which is how journal lines
join a header whose number F&O assigns. The outer answer is ``200`` even when the changeset failed:
only the inner responses say what happened.
"""
from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...mapping.wire import to_json

CRLF = "\r\n"
JSON = "application/json; odata.metadata=minimal"


@dataclass(frozen=True)
class Part:
    """One request of a changeset; ``url`` is absolute or ``$<content id>/<navigation>``."""

    method: str
    url: str
    body: Any
    content_id: str


@dataclass(frozen=True)
class InnerResponse:
    status: int
    headers: Mapping[str, str]
    text: str
    content_id: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.text) if self.text else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Batch:
    content_type: str
    body: str
    parts: Sequence[Part] = field(default=())


def boundary(kind: str, seed: str) -> str:
    """Deterministic per document (previews and golden files stay stable), unique across documents."""
    return f"{kind}_{hashlib.sha256(seed.encode()).hexdigest()[:32]}"


def changeset(parts: Sequence[Part], seed: str, headers: Mapping[str, str] | None = None) -> Batch:
    """A ``$batch`` body holding ``parts`` as one changeset (one transaction)."""
    outer, inner = boundary("batch", seed), boundary("changeset", seed)
    lines = [f"--{outer}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
    for part in parts:
        lines += [f"--{inner}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                  f"Content-ID: {part.content_id}", "", *_request_lines(part, headers or {})]
    lines += [f"--{inner}--", f"--{outer}--", ""]
    return Batch(f"multipart/mixed; boundary={outer}", CRLF.join(lines), tuple(parts))


def _request_lines(part: Part, headers: Mapping[str, str]) -> list[str]:
    lines = [f"{part.method} {part.url} HTTP/1.1", f"Content-Type: {JSON}", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return [*lines, "", to_json(part.body)]


def parse(content_type: str, body: str | bytes) -> list[InnerResponse]:
    """Every inner response of a ``$batch`` answer, in order, changesets flattened."""
    raw = body.encode() if isinstance(body, str) else body
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    if not message.is_multipart():
        raise ValueError(f"not a multipart $batch body (Content-Type {content_type})")
    found = []
    for part in message.walk():
        if part.get_content_type() == "application/http":
            found.append(_inner(_bytes(part.get_payload(decode=True)), part.get("Content-ID")))
    return found


def _inner(payload: bytes, content_id: str | None) -> InnerResponse:
    """``HTTP/1.1 201 Created``, headers, blank line, body."""
    head, _, rest = payload.partition(b"\n")
    first = head.decode("latin-1").split()
    if len(first) < 2 or not first[0].startswith("HTTP/") or not first[1].isdigit():
        raise ValueError(f"not an HTTP response in the $batch answer: {head[:80]!r}")
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest)
    text = _bytes(parsed.get_payload(decode=True)).decode("utf-8", "replace").strip()
    return InnerResponse(int(first[1]), dict(parsed.items()), text, content_id)


def _bytes(payload: object) -> bytes:
    """A leaf part's decoded payload (None for an empty one)."""
    return payload if isinstance(payload, bytes) else b""
