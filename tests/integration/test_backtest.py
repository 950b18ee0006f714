"""`guard backtest` as a user runs it: a recording (file, or the guard's topics on real Kafka) replayed
through the real pipeline, the executor in dry run, the ROI of what the guard would have done.

Each backtest runs a Faust worker and a chDB directory, so it runs as a child process.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from healing_guard.backtest import sample_recording, write_recording
from healing_guard.schemas.records import CATEGORIES
from healing_guard.samples import generate

from .helpers import produce

pytestmark = pytest.mark.integration
pytest.importorskip("chdb", reason="chDB is the [embedded] extra")

JOBS, SEED = 40, 3


def guard(*args: str, cwd: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "guard"
    res = subprocess.run([str(exe), "backtest", *args, "--json"], cwd=cwd, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    lines = res.stdout.decode().splitlines()
    assert len(lines) == 1, lines  # --json: stdout is the one JSON object, nothing else
    return orjson.loads(lines[0])


def expected() -> tuple[int, int, dict[str, str]]:
    sample = generate(JOBS, SEED)
    completed = [j for j in sample if j.completed.conclusion in ("success", "failure", "timed_out")]
    failed = {j.completed.job_key: j.expected_category for j in sample
              if j.completed.conclusion in ("failure", "timed_out")}
    return len(completed), len(failed), failed


def check(out: dict[str, Any]) -> None:
    jobs, failed, labels = expected()
    assert out["failed_jobs"] == failed and out["diagnosed"] == failed and out["undecided"] == []
    assert set(out["by_category"]) <= set(CATEGORIES)
    assert sum(sum(a.values()) for a in out["by_category"].values()) == failed
    # every command went through the executor in dry run: it says what it would call, and called nothing
    assert out["dry_run"] and all(e["status"] in ("dry_run", "skipped") for e in out["dry_run"])
    assert all(e["would"] for e in out["dry_run"])
    assert any(e["status"] == "dry_run" and e["would"].startswith("would") for e in out["dry_run"])
    roi = out["roi"]
    assert roi["jobs"] == jobs and roi["failed_jobs"] == failed
    assert roi["auto_commands"] == out["automatic"] - sum(
        n for a, n in out["by_action"].items() if a in ("quarantine_test", "release_test"))
    assert roi["days"] is None and roi["failures_by_category"] and roi["ci_cost_usd"] > 0


def test_backtest_of_a_recording_with_bad_lines(tmp_path: Path) -> None:
    rec = tmp_path / "history.jsonl"
    n = write_recording(sample_recording(JOBS, SEED).messages, rec)
    with rec.open("ab") as fp:
        fp.write(b"{not json\n")
        fp.write(orjson.dumps({"topic": "ci.jobs", "record": {"provider": "travis", "owner": "o", "repo": "r",
                                                               "job_id": "1", "job_name": "j", "status": "completed"}})
                 + b"\n")
        fp.write(b'{"topic": "ci.nope", "record": {}}\n')
    out = guard(str(rec), cwd=tmp_path)
    check(out)
    assert out["events"] == n
    rejected = out["rejected"]
    assert len(rejected) == 3
    assert rejected[0].startswith(f"{rec}:{n + 1}: not JSON")
    assert rejected[1].startswith(f"{rec}:{n + 2}: record.provider")
    assert rejected[2].startswith(f"{rec}:{n + 3}: topic")


async def test_backtest_reads_the_guards_topics_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"bt{uuid.uuid4().hex[:6]}."
    from healing_guard.settings import load_settings
    from healing_guard.streams.topics import ensure_topics

    await ensure_topics(load_settings(None, env={}, broker_url=f"kafka://{kafka_bootstrap}", topic_prefix=prefix))
    msgs = sample_recording(JOBS, SEED).messages
    await produce(kafka_bootstrap, prefix, [(t, k, v) for t, k, v in msgs])
    out = guard("--from-broker", f"kafka://{kafka_bootstrap}", "--topic-prefix", prefix, cwd=tmp_path)
    check(out)
    assert out["events"] == len(msgs) and out["rejected"] == []
