"""What the whole-bridge channel tests share: SAP Business One (its fake) as the system of record,
and a wait for what the bridge's workers do in the background."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SL_USER = ("SBODEMOUS", "manager", "secret")
SAP_SECRETS = {"sap_b1_user": SL_USER[1], "sap_b1_password": SL_USER[2]}


def sap_as_system_of_record(directory: Path, url: str) -> None:
    """mappings/sap_b1.yaml in ``directory``, pointed at the fake, as the system of record."""
    sap = (REPO / "mappings" / "sap_b1.yaml").read_text().replace("role: mirror", "role: system_of_record")
    (directory / "sap_b1.yaml").write_text(re.sub(r"base_url: \S+", f"base_url: {url}", sap))


def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()
