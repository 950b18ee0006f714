import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from healing_guard.cli import app
from healing_guard.schemas import TOPIC_RECORDS, Command, JobEvent, LogChunk, SchemaError

JOB = {"provider": "github", "owner": "acme", "repo": "web", "job_id": "42", "job_name": "test",
       "status": "completed", "conclusion": "failure", "attempt": 2, "exit_code": 1}


def test_round_trip() -> None:
    ev = JobEvent.from_json(orjson.dumps(JOB))
    assert ev.job_key == "github/acme/web/42" and ev.attempt == 2 and ev.runner_labels == []
    assert JobEvent.from_json(ev.to_json()) == ev


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("job_id"), "job_id"),
        (lambda d: d.update(attempt="2"), "attempt"),
        (lambda d: d.update(attempt=True), "attempt"),
        (lambda d: d.update(provider="bamboo"), "provider"),
        (lambda d: d.update(conclusion=None), "conclusion"),
        (lambda d: d.update(runner_labels="x"), "runner_labels"),
        (lambda d: d.update(repo="a/b"), "repo"),
    ],
)
def test_bad_fields_named(mutate, field) -> None:
    d = dict(JOB)
    mutate(d)
    with pytest.raises(SchemaError) as exc:
        JobEvent.from_json(orjson.dumps(d))
    assert exc.value.field == field


def test_bytes_level_rejections() -> None:
    for raw in (b"{not json", b'{"a": "\xff"}', b"[]", b"null"):
        with pytest.raises(SchemaError):
            LogChunk.from_json(raw)
    big = orjson.dumps({**JOB, "seq": 0, "lines": ["x" * 1000] * 5000})
    with pytest.raises(SchemaError, match="over the limit"):
        LogChunk.from_json(big, max_bytes=1 << 20)


def test_nested_error_path() -> None:
    d = {"provider": "gitlab", "owner": "g", "repo": "r", "job_id": "1", "command_id": "c", "attempt": 1,
         "action": "retry", "reason": "r", "category": "network", "confidence": 0.9,
         "evidence": [{"line": 1, "text": "x", "pattern": "p"}, {"line": "two", "text": "x", "pattern": "p"}]}
    with pytest.raises(SchemaError) as exc:
        Command.from_dict(d)
    assert exc.value.field == "evidence[1].line"


def test_schema_export(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["schemas", "export", str(tmp_path)])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{t}.schema.json" for t in TOPIC_RECORDS)
    schema = json.loads((tmp_path / "ci.jobs.schema.json").read_text())
    assert schema["properties"]["status"]["enum"] == ["queued", "in_progress", "completed"]
    assert {"provider", "owner", "repo", "job_id", "job_name", "status"} <= set(schema["required"])
    assert "attempt" not in schema["required"]
    cmd = json.loads((tmp_path / "guard.actions.schema.json").read_text())
    assert cmd["properties"]["budget"]["anyOf"][0]["type"] == "object"


def test_exported_schema_validates_real_records(tmp_path: Path) -> None:
    import jsonschema

    ev = JobEvent.from_json(orjson.dumps(JOB))
    jsonschema.validate(json.loads(ev.to_json()), JobEvent.json_schema())
    bad = {**json.loads(ev.to_json()), "attempt": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, JobEvent.json_schema())
