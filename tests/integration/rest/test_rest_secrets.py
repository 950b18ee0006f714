"""Secrets never leave the guard through the REST API over a real chDB warehouse (the pure surfaces:
tests/unit/crosscutting/test_secrets.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from healing_guard.engine.core import Engine
from healing_guard.patterns.tokenize import REDACTED
from healing_guard.remediate import Ledger
from tests.support.secrets_corpus import failing_lines, leaks, log_lines
from tests.unit.crosscutting.test_secrets import NOW, _decide_job, engine  # noqa: F401  (engine: the fixture)


def test_rest_analysis_over_a_real_warehouse_has_no_secret(ch_client: Any, migrated: str, tmp_path: Path,
                                                           engine: Engine) -> None:  # noqa: F811  (the fixture)
    from schemathesis.python.asgi import get_client

    from healing_guard.rest import ApiKeys, create_app
    from healing_guard.warehouse.read import WarehouseReader
    from healing_guard.warehouse.writer import FactWriter

    _, ready = _decide_job(engine, log_lines() + failing_lines(), job_id="31")
    _, decision = engine.decide(ready, Ledger(), NOW)
    FactWriter(ch_client, migrated).write(decision.facts)
    keys = ApiKeys(tmp_path / "keys.json")
    _, key = keys.create(["*"])
    app: Any = create_app(lambda: WarehouseReader(ch_client, migrated), keys=keys)
    with get_client(app) as c:
        auth = {"Authorization": f"Bearer {key}"}
        r = c.get("/api/v1/repos/acme/web/failures/31/analysis", headers=auth)
        assert r.status_code == 200, r.text
        body = r.text
        assert json.loads(body)["evidence"] and REDACTED in body and not leaks(body)
        for path in ("/api/v1/repos/acme/web/healing/status", "/api/v1/repos/acme/web/roi"):
            r = c.get(path, headers=auth)
            assert r.status_code == 200 and not leaks(r.text)
