"""guard forward: a log cut into ordered chunks without losing a byte of text."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healing_guard.cli import app
from healing_guard.platforms.forward import log_chunks


def _lines(blocks: list[bytes], **kw: int) -> list[str]:
    chunks = list(log_chunks(blocks, provider="github", owner="o", repo="r", job_id="1", **kw))
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.eof for c in chunks] == [False] * (len(chunks) - 1) + [True]
    n = 1
    for c in chunks:
        assert c.first_line == n
        n += len(c.lines)
    return [line for c in chunks for line in c.lines]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab é\n", max_size=40), max_size=30), st.integers(1, 5))
def test_chunks_keep_every_line_in_order(pieces: list[str], per_chunk: int) -> None:
    text = "".join(pieces)
    data = text.encode()
    blocks = [data[i:i + 7] for i in range(0, len(data), 7)]
    want = text.split("\n")
    if want and want[-1] == "":
        want = want[:-1]
    assert _lines(blocks, chunk_lines_max=per_chunk) == want


def test_a_giant_line_is_cut_not_dropped_and_chunks_stay_small() -> None:
    blocks = [b"start\n", b"x" * 5000, b"y" * 5000, b"\nend\n"]
    chunks = list(log_chunks(blocks, provider="github", owner="o", repo="r", job_id="1", chunk_bytes=2048))
    assert all(sum(len(s) for s in c.lines) <= 2048 for c in chunks)
    assert "".join(line for c in chunks for line in c.lines).count("x") == 5000
    assert chunks[-1].lines[-1] == "end"


def test_empty_log_is_one_empty_eof_chunk() -> None:
    chunks = list(log_chunks([], provider="github", owner="o", repo="r", job_id="1"))
    assert len(chunks) == 1 and chunks[0].eof and chunks[0].lines == []


def test_cli_dry_run_with_completion() -> None:
    r = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "grp/sub/proj", "--job-id", "5",
                                 "--conclusion", "failure", "--exit-code", "137", "--dry-run"],
                           input="Killed\nERROR: Job failed: exit code 137\n")
    assert r.exit_code == 0, r.stderr
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [x["topic"] for x in rows] == ["ci.logs", "ci.jobs"]
    assert rows[0]["record"]["owner"] == "grp/sub" and rows[0]["record"]["eof"] is True
    assert rows[1]["record"]["log_chunks"] == 1 and rows[1]["record"]["exit_code"] == 137
    bad = CliRunner().invoke(app, ["forward", "--provider", "gitlab", "--repo", "x/y", "--job-id", "5",
                                   "--conclusion", "broken", "--dry-run"], input="")
    assert bad.exit_code == 2 and "--conclusion" in bad.stderr


def test_follow_ships_what_the_job_writes_while_it_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    log = tmp_path / "job.log"
    log.write_bytes(b"line 1\n")

    def job() -> None:
        for i in range(2, 6):
            time.sleep(0.15)
            with log.open("ab") as fp:
                fp.write(f"line {i}".encode() + (b"\n" if i < 5 else b""))  # the last line has no newline yet

    writer = threading.Thread(target=job)
    writer.start()
    res = CliRunner().invoke(app, ["forward", str(log), "--provider", "github", "--repo", "o/r", "--job-id", "1",
                                   "--follow", "--idle-timeout", "0.5", "--dry-run"])
    writer.join()
    assert res.exit_code == 0, res.output
    recs = [orjson.loads(x)["record"] for x in res.stdout.splitlines()]
    # it waited for the writer (every line it wrote, the last one unterminated, was shipped), then ended
    # the stream after the quiet period
    assert [line for r in recs for line in r["lines"]] == [f"line {i}" for i in range(1, 6)]
    assert recs[-1]["eof"] is True and not any(r["eof"] for r in recs[:-1])


def test_without_follow_a_growing_file_is_read_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "job.log"
    log.write_bytes(b"a\nb\n")
    res = CliRunner().invoke(app, ["forward", str(log), "--provider", "github", "--repo", "o/r", "--job-id", "1",
                                   "--dry-run"])
    assert res.exit_code == 0 and [orjson.loads(x)["record"]["lines"] for x in res.stdout.splitlines()] == [["a", "b"]]
