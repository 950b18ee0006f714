"""``guard bench matcher``: corpus building, block cutting, the CLI's JSON contract, and ours == re loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healing_guard.bench.cli import SUMMARY_KEYS, bench_app
from healing_guard.bench.matcher import (
    DATASET_ENV,
    BenchError,
    build_corpus,
    compare_hits,
    cut_blocks,
    head,
    import_drain3,
    resolve_dataset,
)

TS = "2024-01-02T03:04:05.1234567Z "

LOGS = {
    "github_pytest.log": [
        f"{TS}##[group]Run pytest -q",
        f"{TS}\x1b[36;1mpytest -q --maxfail=5\x1b[0m",
        f"{TS}============================= test session starts ==============================",
        f"{TS}collected 13 items",
        f"{TS}tests/x.py ..........F..                                                 [100%]",
        f"{TS}FAILED tests/x.py::test_y - AssertionError: assert 1 == 2",
        f"{TS}\x1b[31m========================= 1 failed, 12 passed in 3.21s =========================\x1b[0m",
        f"{TS}##[error]Process completed with exit code 1.",
    ],
    "github_npm.log": [
        f"{TS}\x1b[32mRun npm ci\x1b[0m",
        f"{TS}npm WARN deprecated inflight@1.0.6: This module is not supported",
        f"{TS}npm ERR! code ECONNRESET",
        f"{TS}npm ERR! errno ECONNRESET",
        f"{TS}npm ERR! network request to https://registry.npmjs.org/left-pad failed, reason: socket hang up",
        f"{TS}##[error]Process completed with exit code 1.",
    ],
    "docker_disk.log": [
        "#12 [build 4/7] RUN pip install -r requirements.txt",
        "#12 12.3 Collecting numpy==1.26.4",
        "#12 ERROR: failed to copy files: write /var/lib/docker/tmp/layer.tar: no space left on device",
        "\x1b[1;31mOSError: [Errno 28] No space left on device: '/tmp/pip-unpack-x1y2'\x1b[0m",
    ],
    # no final newline: the corpus adds it
    "jenkins_maven.log": [
        "[Pipeline] sh",
        "+ mvn -B verify",
        "[INFO] Scanning for projects...",
        "[INFO] --- maven-compiler-plugin:3.11.0:compile (default-compile) @ app ---",
        "[ERROR] COMPILATION ERROR : ",
        "[ERROR] /home/jenkins/work/app/src/main/java/com/acme/App.java:[12,8] cannot find symbol",
        "[ERROR]   symbol:   class Foo",
        "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.11.0:compile "
        "(default-compile) on project app: Compilation failure",
        "[ERROR] Tests run: 3, Failures: 1, Errors: 0, Skipped: 0, Time elapsed: 0.42 s <<< FAILURE!",
        "[ERROR] There are test failures.",
        "[INFO] BUILD FAILURE",
    ],
}


def _base_lines() -> int:
    return sum(len(v) for v in LOGS.values())


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "logs").mkdir(parents=True)
    rows = ["file,category,source"]
    for name, lines in LOGS.items():
        text = "\n".join(lines) + ("" if name == "jenkins_maven.log" else "\n")
        (root / "logs" / name).write_bytes(text.encode("utf-8"))
        rows.append(f"{name},unknown,test")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_corpus_repeats_files_to_at_least_the_requested_lines(dataset: Path) -> None:
    c = build_corpus(dataset, 1000)
    assert c.lines >= 1000
    assert c.base_lines == _base_lines()  # the file without a final newline got one
    assert c.files == len(LOGS)
    assert c.data.count(b"\n") == c.lines and c.data.endswith(b"\n")
    assert c.lines == c.base_lines * c.repeats and (c.repeats - 1) * c.base_lines < 1000
    assert b"[INFO] BUILD FAILURE\n#12 [build" in c.data  # files in name order, repeated


def test_corpus_falls_back_to_sample_logs() -> None:
    c = build_corpus(None, 500, sample_jobs=5)
    assert c.from_samples and c.lines >= 500 and "healing_guard.samples" in c.source


def test_resolve_dataset(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASET_ENV, raising=False)
    assert resolve_dataset(dataset) == dataset
    assert resolve_dataset(None, cwd=tmp_path / "nowhere") is None
    monkeypatch.setenv(DATASET_ENV, str(dataset))
    assert resolve_dataset(None, cwd=tmp_path / "nowhere") == dataset
    with pytest.raises(BenchError, match="not a directory"):
        resolve_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match=r"no logs/\*\.log"):
        resolve_dataset(tmp_path / "empty")


def test_blocks_cut_at_line_boundaries_and_keep_line_numbers() -> None:
    data = b"".join(b"line %d\n" % i for i in range(1000))
    blocks = cut_blocks(data, 100)
    assert all(len(b) <= 100 for _, b in blocks)
    assert b"\n".join(b for _, b in blocks) + b"\n" == data
    for first, b in blocks:
        assert b.split(b"\n", 1)[0] == b"line %d" % first
    assert cut_blocks(b"a-very-long-line\nb\n", 4) == [(0, b"a-very-long-line"), (1, b"b")]
    assert head(data, 2) == b"line 0\nline 1\n" and head(data, 10**6) == data


def test_compare_hits_reports_differences() -> None:
    a = compare_hits({(0, "p"), (1, "q")}, {(1, "q"), (2, "r")}, ["x", "y", "\x1b[31mz"])
    assert (a["both"], a["only_ours"], a["only_re_loop"], a["differ"]) == (1, 1, 1, 2)
    assert a["examples"] == [
        {"line_index": 0, "pattern": "p", "side": "ours only", "line": "x"},
        {"line_index": 2, "pattern": "r", "side": "re loop only", "line": "z"},
    ]


def test_missing_drain3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "drain3", None)
    with pytest.raises(BenchError, match=r"pip install 'self-healing-pipeline-guard\[bench\]'"):
        import_drain3()


def test_cli_json_contract_and_ours_agrees_with_the_re_loop(dataset: Path) -> None:
    n = 2000
    result = CliRunner().invoke(bench_app, ["matcher", "--dataset", str(dataset), "--lines", str(n), "--runs", "2",
                                            "--baseline-lines", str(10 * n), "--drain3-lines", "500", "--json"])
    assert result.exit_code == 0, result.output
    out = result.stdout.strip().splitlines()
    last = json.loads(out[-1])
    assert tuple(last) == SUMMARY_KEYS
    assert last["lines"] >= n
    assert all(last[k] > 0 for k in SUMMARY_KEYS)
    detail = json.loads(out[-2])
    assert detail["runs"] == 2 and len(detail["ours"]["seconds"]) == 2
    assert detail["ours"]["lines"] == last["lines"]
    assert detail["drain3"]["lines"] == 500
    # the re loop ran on the whole corpus, so the agreement check covers every line
    agreement = detail["agreement"]
    assert agreement["lines"] == last["lines"]
    assert agreement["both"] >= 10 * detail["corpus"]["repeats"]
    assert agreement["differ"] == 0, agreement["examples"]
