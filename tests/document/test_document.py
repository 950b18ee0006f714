"""The product document in the repository is the one its authors keep, and its examples are found."""

from __future__ import annotations

import pytest

from tests.document.examples import DOCUMENT, UPSTREAM, block, blocks


def test_the_repository_carries_the_product_document_as_written() -> None:
    if not UPSTREAM.exists():
        pytest.skip(f"{UPSTREAM} is on the authors' machines only; the copy in docs/ is what CI checks")
    assert DOCUMENT.read_bytes() == UPSTREAM.read_bytes(), "docs/product-document.md differs from the seed"


def test_every_example_of_the_document_is_found() -> None:
    langs = [b.lang for b in blocks()]
    assert langs.count("yaml") == 8 and langs.count("python") == 3 and langs.count("bash") == 3, langs
    assert "ml_model" in block("Strategy Configuration", "yaml").text
    assert block("Cost Control Configuration", "yaml").text.startswith("cost_control:")
    assert "GuardClient" in block("Python SDK", "python").text


def test_every_configuration_block_of_the_document_is_accepted_by_guard_config_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each YAML block that is a config, strategies or pattern file (not a workflow, not the metric list)
    goes through the real `guard config check`, which must accept it and say what it is."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    guard = Path(sys.executable).parent / "guard"
    expected = {"Basic GitHub Action Setup": "config", "Strategy Configuration": "strategies",
                "Cost Control Configuration": "config", "Flaky Test Patterns": "patterns",
                "Infrastructure Patterns": "patterns"}
    seen = {}
    for b in blocks():
        if b.lang != "yaml":
            continue
        try:
            data = yaml.safe_load(b.text)
        except yaml.YAMLError:  # the metric list is names under a heading, not YAML (the next test reads it)
            assert b.heading == "Metrics Exported", str(b)
            continue
        if not isinstance(data, dict) or {"jobs", "include", "metrics"} & set(data):
            continue  # a workflow, the GitLab include (tests/document/test_action.py, test_gitlab.py), metric names
        f = tmp_path / f"block-{b.line}.yml"
        f.write_text(b.text)
        res = subprocess.run([str(guard), "config", "check", "--json", str(f)], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, (str(b), res.stderr[-2000:])
        seen[b.heading] = json.loads(res.stdout)["kind"]
    assert seen == expected


def test_the_documents_metric_names_are_exported() -> None:
    """The "Metrics Exported" names are Prometheus series of the worker (and of `guard api`'s /metrics)."""
    from healing_guard.metrics import WorkerMetrics

    names = [ln.strip() for ln in block("Metrics Exported", "yaml").text.splitlines()
             if ln.strip().startswith("healing_guard_")]
    assert len(names) == 7
    m = WorkerMetrics()
    exported = {metric.name for metric in m.registry.collect()}
    # prometheus_client reports a counter's family without its _total suffix
    for name in names:
        assert name in exported or name.removesuffix("_total") in exported, (name, sorted(exported))
