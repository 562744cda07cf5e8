"""SuiteTalk SOAP through zeep: the WSDL (loaded once, cached on disk), envelopes, replies, faults.

zeep builds every envelope from the WSDL and reads every answer, so element names, namespaces,
``xsi:type`` and ordering are the vendor's own. zeep does not send anything: the envelope goes
out through the runtime's Sender (timeouts, 429/5xx + Retry-After, redaction), like any request.
NetSuite answers a fault with HTTP 500 and a ``detail`` element naming it; ``fault_error`` turns
it into what the caller must do (Oracle "SOAP Fault Status Codes"; "Errors Related to
Concurrency Violations").
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zeep
from lxml import etree
from zeep.cache import SqliteCache
from zeep.exceptions import Error as ZeepError
from zeep.loader import parse_xml
from zeep.transports import Transport

from ...errors import BridgeError, ConfigError, RejectedError, RetryableError
from ..runtime.classify import Redactor

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: the record types a mapping may name live in these WSDL namespaces (local part before _2023_2...)
RECORD_NAMESPACES = ("inventory", "sales", "purchases", "customers", "general")
#: faults and status codes that mean "the account's concurrency pool is full": retry with backoff
CONCURRENCY = {"exceededConcurrentRequestLimitFault", "exceededRequestLimitFault", "exceededUsageLimitFault",
               "WS_CONCUR_SESSION_DISALLWD", "WS_REQUEST_BLOCKED", "SSS_REQUEST_LIMIT_EXCEEDED",
               "CONCURRENCY_LIMIT_EXCEEDED"}
CREDENTIALS = {"invalidCredentialsFault", "invalidAccountFault", "invalidSessionFault"}
#: what zeep builds and parses: records, replies (zeep ships no type information)
Zeep = Any
_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str], zeep.Client] = {}


def load_client(location: str, cache_dir: Path | None, timeout_s: float) -> zeep.Client:
    """The zeep client for a WSDL URL or file. A URL's documents are cached on disk (the WSDL
    and its ~50 XSDs), so a restart does not fetch them again; one client per process."""
    key = (location, str(cache_dir))
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = _load(location, cache_dir, timeout_s)
        return _CLIENTS[key]


def _load(location: str, cache_dir: Path | None, timeout_s: float) -> zeep.Client:
    cache = None
    if cache_dir is not None and "://" in location:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache = SqliteCache(path=str(cache_dir / "netsuite-wsdl.sqlite3"), timeout=None)
    try:
        transport = Transport(cache=cache, timeout=timeout_s)
        return zeep.Client(location, transport=transport, settings=zeep.Settings(strict=False, xml_huge_tree=True))
    except (OSError, ZeepError, etree.XMLSyntaxError, ValueError) as exc:
        raise ConfigError(f"cannot load the NetSuite WSDL from {location} ({type(exc).__name__}): check "
                          "connection.wsdl (a URL of the account's domain, or a file path)") from None


def default_wsdl(base_url: str) -> str:
    """``https://<acct>.suitetalk.api.netsuite.com/services/NetSuitePort_2023_2`` ->
    ``https://<acct>.suitetalk.api.netsuite.com/wsdl/v2023_2_0/netsuite.wsdl``."""
    parts = urlsplit(base_url)
    version = parts.path.rstrip("/").rsplit("NetSuitePort_", 1)[-1]
    return f"{parts.scheme}://{parts.netloc}/wsdl/v{version}_0/netsuite.wsdl"


@dataclass(frozen=True)
class Envelope:
    operation: str
    content: bytes


class Codec:
    """Envelopes in, parsed replies out, for one WSDL."""

    def __init__(self, client: zeep.Client):
        self.client = client
        self.service = client.bind("NetSuiteService", "NetSuitePort")
        self._binding = self.service._binding
        self._types: dict[str, Zeep] = {}

    def record(self, type_name: str, body: dict, external_id: str) -> Zeep:
        """A ``platformCore:Record`` of ``type_name`` (e.g. InventoryAdjustment) from a body the
        mapping built in SOAP field names; unknown fields are a MappingError-worthy TypeError."""
        return self.record_type(type_name)(**{**body, "externalId": external_id})

    def record_type(self, type_name: str) -> Zeep:
        if type_name not in self._types:
            self._types[type_name] = self._find_type(type_name)
        return self._types[type_name]

    def _find_type(self, type_name: str) -> Zeep:
        namespaces = [ns for ns in self.client.wsdl.types.namespaces if ns
                      if any(ns.startswith(f"urn:{area}_") for area in RECORD_NAMESPACES)]
        for namespace in namespaces:
            try:
                return self.client.get_type(f"{{{namespace}}}{type_name}")
            except (ZeepError, LookupError):
                continue
        raise ConfigError(f"NetSuite has no record type {type_name} in its transaction namespaces "
                          f"(the SOAP request path names the record type, e.g. /InventoryAdjustment)")

    def get_type(self, local: str, area: str) -> Zeep:
        namespace = next(ns for ns in self.client.wsdl.types.namespaces if ns and ns.startswith(f"urn:{area}_"))
        return self.client.get_type(f"{{{namespace}}}{local}")

    def envelope(self, operation: str, headers: dict, **body: Zeep) -> Envelope:
        message = self.client.create_message(self.service, operation, _soapheaders=headers, **body)
        return Envelope(operation, etree.tostring(message, xml_declaration=True, encoding="utf-8"))

    def reply(self, operation: str, status: int, content: bytes, redact: Redactor, what: str) -> Zeep:
        """The operation's result; a SOAP fault or an unreadable answer raises its BridgeError."""
        unreadable = RetryableError(f"{what}: HTTP {status}, not a SOAP answer: "
                                    f"{redact.excerpt(content.decode('utf-8', 'replace'))}")
        try:
            # bytes, as zeep itself passes them: lxml reads the declared encoding (annotated str)
            doc = parse_xml(content, self.client.transport, settings=self.client.settings)  # type: ignore[arg-type]
        except (etree.XMLSyntaxError, ZeepError, ValueError):
            raise unreadable from None
        fault = doc.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
        if fault is not None:
            raise fault_error(fault, redact, what)
        if status != 200 or doc.tag != f"{{{SOAP_ENV}}}Envelope":
            raise unreadable
        try:
            return self._binding.get(operation).process_reply(doc)
        except (ZeepError, ValueError, TypeError, AttributeError):
            raise unreadable from None


def fault_error(fault: etree._Element, redact: Redactor, what: str) -> BridgeError:
    detail = fault.find("detail")
    named = detail[0] if detail is not None and len(detail) else None
    name = etree.QName(named).localname if named is not None else ""
    code = _child_text(named, "code") if named is not None else ""
    message = _child_text(named, "message") if named is not None else ""
    text = redact.excerpt(f"{name or 'fault'} {code}: {message or _child_text(fault, 'faultstring')}".strip())
    return classify_fault(name, code, f"{what}: {text}")


def classify_fault(name: str, code: str, reason: str) -> BridgeError:
    if name in CONCURRENCY or code in CONCURRENCY:
        return RetryableError(f"{reason} (the account's concurrency limit is shared by SOAP, REST and "
                              "RESTlets: lower limits.concurrency if this persists)")
    if name in CREDENTIALS:
        return ConfigError(f"{reason}: check the account id, consumer key/secret and token id/secret, and that "
                           "the token's role has the Web Services permission (Setup > Users/Roles > View Login "
                           "Audit Trail shows why a login failed)")
    if name == "insufficientPermissionFault":
        return ConfigError(f"{reason}: give the token's role the permission named above")
    if name == "invalidVersionFault":
        return ConfigError(f"{reason}: the endpoint does not serve this WSDL version; match connection.base_url "
                           "and connection.wsdl")
    if name == "unexpectedErrorFault" or not name:
        return RetryableError(reason)
    return RejectedError(reason)


def _child_text(element: etree._Element, local: str) -> str:
    for child in element.iter():
        if isinstance(child.tag, str) and etree.QName(child).localname == local:
            return (child.text or "").strip()
    return ""
