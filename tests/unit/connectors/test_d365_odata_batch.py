"""The $batch codec on its own: the request body is OData 4.0 multipart (one changeset of
application/http parts with Content-IDs, CRLF line ends, deterministic boundaries); answers are read
whether the changeset's responses are wrapped in a changeset or the failed changeset is answered by
one bare application/http part (both are OData 4.0 answers)."""
from __future__ import annotations

import pytest

from erp_bridge.connectors.dynamics365.errors import message_of
from erp_bridge.connectors.dynamics365.odata_batch import Part, changeset, parse

PARTS = [Part("POST", "https://fo/data/InventoryMovementJournalHeaders", {"Description": "k"}, "1"),
         Part("POST", "$1/InventoryMovementJournalLine", {"InventoryQuantity": -2}, "2")]


def test_request_body_is_one_changeset_with_content_ids_and_crlf():
    batch = changeset(PARTS, seed="k")
    assert batch.content_type.startswith("multipart/mixed; boundary=batch_")
    assert batch.body.count("\r\n") == batch.body.count("\n")  # every line ends in CRLF
    assert batch.body.count("Content-ID: ") == 2 and "POST $1/InventoryMovementJournalLine HTTP/1.1" in batch.body
    assert batch.body.rstrip().endswith("--")
    assert changeset(PARTS, seed="k") == batch and changeset(PARTS, seed="other").body != batch.body


def wrapped(status_lines: list[tuple[str, str, str]]) -> str:
    parts = []
    for content_id, status, body in status_lines:
        parts += ["--cs", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                  f"Content-ID: {content_id}", "", status, "Content-Type: application/json", "", body]
    return "\r\n".join(["--b", "Content-Type: multipart/mixed; boundary=cs", "", *parts, "--cs--", "--b--", ""])


def test_a_wrapped_changeset_answer_gives_one_response_per_request():
    text = wrapped([("1", "HTTP/1.1 201 Created", '{"JournalNumber": "IMV-1"}'),
                    ("2", "HTTP/1.1 201 Created", '{"LineNumber": 1}')])
    found = parse("multipart/mixed; boundary=b", text)
    assert [(r.status, r.content_id, r.json()) for r in found] == [
        (201, "1", {"JournalNumber": "IMV-1"}), (201, "2", {"LineNumber": 1})]


def test_a_failed_changeset_answered_by_one_bare_part_is_read():
    error = ('{"error": {"code": "", "message": "An error has occurred.", '
             '"innererror": {"message": "Item X does not exist."}}}')
    text = "\r\n".join(["--b", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "",
                        "HTTP/1.1 400 Bad Request", "Content-Type: application/json", "", error, "--b--", ""])
    [response] = parse("multipart/mixed; boundary=b", text)
    assert response.status == 400 and message_of(response.text) == "D365 error: Item X does not exist."


def test_an_answer_that_is_not_multipart_is_refused():
    with pytest.raises(ValueError, match="not a multipart"):
        parse("application/json", '{"value": []}')
    with pytest.raises(ValueError, match="not an HTTP response"):
        parse("multipart/mixed; boundary=b", wrapped([("1", "garbage", "{}")]))


@pytest.mark.parametrize("body, expected", [
    ('{"error": {"code": "E1", "message": "outer"}}', "D365 error: E1: outer"),
    ('{"title": "One or more validation errors occurred.", "errors": {"id": ["required"]}}',
     "D365 error: One or more validation errors occurred. (id: required)"),
    ('{"message": "slow down"}', "D365 error: slow down"),
    ("<html>gateway</html>", None)], ids=["odata", "problem-details", "message", "not-json"])
def test_error_bodies_read_as_the_most_specific_message(body, expected):
    assert message_of(body) == expected
