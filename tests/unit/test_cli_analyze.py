"""``guard analyze``, ``guard unknowns`` and ``guard learn`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from healing_guard.cli import app

NET = ("2024-05-06T07:08:09.1234567Z Run npm ci\n"
       "2024-05-06T07:08:10.1234567Z npm ERR! code ECONNRESET\n"
       "2024-05-06T07:08:10.1234567Z npm ERR! network request to https://registry.npmjs.org/x failed, "
       "reason: read ECONNRESET\n"
       "2024-05-06T07:08:11.1234567Z ##[error]Process completed with exit code 1.\n")
ODD = "step 1\nstep 2\nError: quota of {n} deployments per day exceeded for project {p}\nexit 1\n"


@pytest.fixture()
def logs(tmp_path: Path) -> Path:
    (tmp_path / "net.log").write_text(NET)
    for i, (n, p) in enumerate([(12, 4411), (30, 17), (5, 9)]):
        (tmp_path / f"odd{i}.log").write_text(ODD.format(n=n, p=p))
    (tmp_path / "other.log").write_text("all fine\nsomething strange happened at 0x7ffd1234\n")
    return tmp_path


#: the rules alone: what the unknown-failure tests are about (the text model names some of these logs)
RULES_ONLY = {"GUARD_TEXT_MODEL": "off"}


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args), input=input, env=env)
    return r.exit_code, r.stdout, r.stderr


def test_analyze_json_one_object_per_file(logs: Path) -> None:
    code, out, _ = run("analyze", "--json", str(logs / "net.log"), str(logs / "odd0.log"), env=RULES_ONLY)
    assert code == 0
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert [r["file"] for r in rows] == [str(logs / "net.log"), str(logs / "odd0.log")]
    net = rows[0]
    assert {"file", "category", "confidence", "evidence", "remediation"} <= set(net)
    assert net["category"] == "network" and 0 < net["confidence"] <= 1
    assert net["evidence"] and {"line", "text", "pattern"} == set(net["evidence"][0])
    assert net["evidence"][0]["line"] in (2, 3) and "2024-05-06" not in net["evidence"][0]["text"]
    assert rows[1]["category"] == "unknown" and "signature" in rows[1] and rows[1]["learned"] is False


def test_the_text_model_names_what_no_pattern_does_and_says_so(logs: Path) -> None:
    code, out, _ = run("analyze", "--json", str(logs / "odd0.log"), env={"GUARD_TEXT_MODEL": "packaged"})
    row = orjson.loads(out)
    assert code == 0 and row["learned"] is True and row["category"] != "unknown"
    assert row["evidence"] and not row["automatic"]  # a learned category is never acted on by itself


def test_analyze_reads_stdin(logs: Path) -> None:
    code, out, _ = run("analyze", "--json", input=NET)
    assert code == 0
    assert orjson.loads(out)["file"] == "-" and orjson.loads(out)["category"] == "network"


def test_analyze_missing_file_is_reported_not_fatal(logs: Path) -> None:
    code, out, _ = run("analyze", "--json", str(logs / "nope.log"), str(logs / "net.log"))
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert code == 1 and "error" in rows[0] and rows[1]["category"] == "network"


def test_analyze_human_output(logs: Path) -> None:
    code, out, _ = run("analyze", str(logs / "net.log"))
    assert code == 0 and "network" in out and "remediation" in out


def test_bad_pattern_file_is_refused_with_file_and_line(logs: Path) -> None:
    bad = logs / "mine.yml"
    bad.write_text("patterns:\n  - id: mine.x\n    category: network\n    regex: '(a)\\1'\n")
    code, _, err = run("analyze", "--pattern-file", str(bad), str(logs / "net.log"))
    assert code == 2
    assert f"{bad}:4" in err.replace("\n", "") and "back-references" in err


def test_user_pattern_overrides_and_extends(logs: Path) -> None:
    mine = logs / "mine.yml"
    mine.write_text("patterns:\n  - id: team.quota\n    category: rate_limit\n"
                    "    regex: 'quota of \\d+ deployments per day exceeded'\n    confidence: 0.9\n"
                    "    remediation: Wait for the daily deployment quota to reset.\n")
    code, out, _ = run("analyze", "--json", "--pattern-file", str(mine), str(logs / "odd1.log"))
    row = orjson.loads(out)
    assert code == 0 and row["category"] == "rate_limit"
    assert row["evidence"][0]["pattern"] == "team.quota" and row["remediation"].startswith("Wait")


def test_unknowns_clusters_files(logs: Path) -> None:
    files = sorted(str(p) for p in logs.glob("*.log"))
    code, out, err = run("unknowns", "--json", *files, env=RULES_ONLY)
    assert code == 0
    clusters = [orjson.loads(x) for x in out.splitlines()]
    assert clusters[0]["count"] == 3 and "quota of <NUM> deployments" in clusters[0]["signature"]
    assert len(clusters[0]["examples"]) == 3
    assert "4 of 5 logs are unknown" in err


def test_learn_then_analyze_with_the_model(logs: Path) -> None:
    labels = logs / "labels.csv"
    labels.write_text("file,category\n" + "".join(f"odd{i % 3}.log,rate_limit\n" for i in range(30))
                      + "net.log,network\n")
    model = logs / "model.pkl"
    code, out, _ = run("learn", "--labels", str(labels), "--logs", str(logs), "--model", str(model))
    assert code == 0 and model.exists() and "31 labels" in out
    code, out, _ = run("analyze", "--json", "--model", str(model), str(logs / "odd2.log"))
    assert orjson.loads(out)["category"] == "rate_limit"
    bad = logs / "bad.csv"
    bad.write_text("file,category\nx.log,flaky\n")
    code, _, err = run("learn", "--labels", str(bad), "--logs", str(logs), "--model", str(model))
    assert code == 2 and "bad.csv:2: category" in " ".join(err.split())


def test_human_output_prints_log_text_verbatim(logs: Path) -> None:
    # log text is not Rich markup: brackets must survive (and must not crash the printer)
    (logs / "brackets.log").write_text("[bold]x\n[ERROR] No space left on device [/x]\n")
    code, out, _ = run("analyze", str(logs / "brackets.log"))
    assert code == 0 and "[ERROR] No space left on device [/x]" in out
    (logs / "u.log").write_text("##[end-action id=a;outcome=failure;conclusion=failure]\n")
    code, out, _ = run("unknowns", str(logs / "u.log"), env=RULES_ONLY)
    assert code == 0 and "##[end-action id=a;outcome=failure;conclusion=failure]" in out.replace("\n", "")


def test_learn_teaches_the_text_model_and_the_guard_uses_it(logs: Path) -> None:
    """Confirmed labels update a copy of the packaged text model; pointing GUARD_TEXT_MODEL at it
    changes what the guard names for a failure no pattern explains (and it is still never automatic)."""
    packaged = orjson.loads(run("analyze", "--json", str(logs / "odd1.log"))[1])
    target = "docker_registry" if packaged["category"] != "docker_registry" else "disk_full"
    labels = logs / "labels.csv"
    labels.write_text("file,category\n" + "".join(f"odd{i % 3}.log,{target}\n" for i in range(40)))
    tm = logs / "text-model.json"
    code, out, _ = run("learn", "--labels", str(labels), "--logs", str(logs), "--text-model", str(tm))
    assert code == 0 and tm.exists() and "40 labels -> text model" in " ".join(out.split())
    row = orjson.loads(run("analyze", "--json", str(logs / "odd1.log"), env={"GUARD_TEXT_MODEL": str(tm)})[1])
    assert row["category"] == target and row["learned"] is True and not row["automatic"]
    # learning again continues from the file, not from the packaged model
    before = tm.read_bytes()
    assert run("learn", "--labels", str(labels), "--logs", str(logs), "--text-model", str(tm))[0] == 0
    assert orjson.loads(tm.read_bytes())["info"]["learned_labels"] == 80 and tm.read_bytes() != before


def test_learn_needs_a_model_to_update(logs: Path) -> None:
    labels = logs / "labels.csv"
    labels.write_text("file,category\nnet.log,network\n")
    code, _, err = run("learn", "--labels", str(labels), "--logs", str(logs))
    assert code == 2 and "--text-model" in err
