"""Property-based run of the served OpenAPI document against the ASGI app (schemathesis).

Every operation is called with generated data (valid and invalid) and a valid, all-repositories key;
schemathesis' default checks then hold: no 5xx, every status and content type is documented, every
body conforms to its documented schema, invalid data is refused, auth is not ignored. The fake reader
has a diagnosis for every job id, so heal requests reach the sink rather than stopping at 404.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from healing_guard.rest import ApiKeys, create_app

from .test_rest_api import FakeReader, ListSink

_DIR = tempfile.TemporaryDirectory(prefix="guard-openapi-")
KEYS = ApiKeys(Path(_DIR.name) / "api-keys.json")
_, KEY = KEYS.create(["*"])
READER = FakeReader(any_job=True)
SINK = ListSink()
APP = create_app(lambda: READER, keys=KEYS, actions=SINK)

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"})


def test_the_run_reached_the_sink_and_the_reader() -> None:
    """Guards against a vacuous run (e.g. every request refused before the routes): a case of the read
    and the heal operation, made from the document as the generated ones are, reaches the reader and the
    sink. (Self-contained: under `pytest -n 2` the generated cases may run in another process.)"""
    base = "/api/v1/repos/{owner}/{repo}"
    params = {"owner": "acme", "repo": "web", "job_id": "1"}
    for path, method in ((base + "/healing/status", "GET"), (base + "/failures/{job_id}/heal", "POST")):
        op = schema[path][method]
        case = op.Case(path_parameters={k: v for k, v in params.items() if "{" + k + "}" in path},
                       **({"body": {"strategy": "auto"}} if method == "POST" else {}))
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"})
    assert READER.calls, "no request reached the warehouse reader"
    assert SINK.sent, "no heal request reached the command sink"
