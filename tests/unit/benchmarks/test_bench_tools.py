"""The benchmark scripts' own logic: percentiles, the results table, JSON pick-up, job splitting.

The benchmarks themselves (Kafka, chDB, minutes of work) are not run here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import pytest
from tests.support.paths import ROOT

BENCH = ROOT / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


latency = _load("latency")
run_all = _load("run_all")


class TestPercentile:
    def test_matches_linear_interpolation(self) -> None:
        xs = [15.0, 20.0, 35.0, 40.0, 50.0]
        assert latency.percentile(xs, 0) == 15.0
        assert latency.percentile(xs, 100) == 50.0
        assert latency.percentile(xs, 50) == 35.0
        assert latency.percentile(xs, 40) == pytest.approx(29.0)  # numpy.percentile(xs, 40)
        assert latency.percentile(xs, 99) == pytest.approx(49.6)

    def test_order_of_input_does_not_matter(self) -> None:
        assert latency.percentile([3, 1, 2], 50) == 2

    def test_one_value_and_none(self) -> None:
        assert latency.percentile([7.0], 99) == 7.0
        assert latency.percentile([], 50) != latency.percentile([], 50)  # NaN

    def test_rejects_out_of_range(self) -> None:
        with pytest.raises(ValueError):
            latency.percentile([1.0], 101)

    def test_p99_of_many_is_near_the_top(self) -> None:
        xs = list(range(1, 1001))  # 1..1000
        assert latency.percentile(xs, 99) == pytest.approx(990.01)

    def test_summarize_in_milliseconds(self) -> None:
        s = latency.summarize([0.010, 0.020, 0.030])
        assert s["count"] == 3
        assert s["p50_ms"] == pytest.approx(20.0)
        assert s["max_ms"] == pytest.approx(30.0)


def test_split_jobs_takes_whole_jobs_until_each_size() -> None:
    class C:
        def __init__(self, n: int) -> None:
            self.lines = ["x"] * n

    class J:
        def __init__(self, *sizes: int) -> None:
            self.chunks = [C(n) for n in sizes]

    jobs = [J(5), J(5), J(10), J(1), J(3), J(7)]
    groups = latency.split_jobs(jobs, [8, 10, 100])
    assert [len(g) for g in groups] == [2, 1, 3]
    assert groups[0] == jobs[:2] and groups[1] == jobs[2:3] and groups[2] == jobs[3:]


class TestResultsTable:
    def test_markdown_table_escapes_pipes(self) -> None:
        t = run_all.markdown_table(("a", "b"), [("x|y", "1")])
        assert t.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]

    def test_rows_for_every_benchmark_and_failures(self) -> None:
        results = {
            "matcher": {"ok": True, "result": {"lines": 1_000_000, "ours_lines_per_s": 1_400_000.0,
                                                "re_loop_lines_per_s": 5_000.0, "drain3_lines_per_s": 56_000.0}},
            "pipeline": {"ok": True, "result": {"ours_lines_per_s": 250_000.0, "baseline_lines_per_s": 10_000.0,
                                                 "runs": 3}},
            "latency": {"ok": True, "result": {
                "runs": 3, "goal_p99_ms": 200.0, "goal_met": True,
                "baseline": {"achieved_lines_per_s": 10_000.0, "p50_ms": 20.0, "p99_ms": 90.0, "max_ms": 100.0,
                             "commands_per_run": [20, 20, 20]},
                "load": {"achieved_lines_per_s": 150_000.0, "p50_ms": 40.0, "p99_ms": 150.0, "max_ms": 180.0,
                         "commands_per_run": [900, 900, 900]}}},
            "ingest": {"ok": False, "error": "exit 1"},
            "mttg": {"ok": True, "result": {"mttg_reduction_vs_none": 0.55, "wasted_minutes_ratio_vs_retry_all": 0.11,
                                            "hidden_regressions": 0}},
            "accuracy": {"ok": True, "skipped": "../shared/datasets/ci-logs-dev not found"},
            "tests_batch": {"ok": True, "result": {
                "ours_results_per_s": 17_500.0, "baseline_results_per_s": 1_590.0, "tests": 100_000, "reports": 3,
                "messages": 72, "runs": 3, "goal_results_per_s": 50_000, "goal_met": False,
                "rss_mb_per_100k_tests": 172.0, "rss_later_reports_mb": 12.0, "in_process_results_per_s": 36_000.0,
                "predictions": {"rows": 396_800, "log_loss_change": 0.0004, "batches": {"log_loss": 0.0399},
                                "one_at_a_time": {"log_loss": 0.03988}}}},
            "scaling": {"ok": True, "result": {
                "cores": 2, "partitions": 4, "runs": 2, "log_lines": {"1": 184_456.0, "2": 282_462.0, "4": 237_565.0},
                "test_results": {"1": 20_248.0, "2": 33_345.0, "4": 26_313.0},
                "speedup": {"log_lines": {"1": 1.0, "2": 1.53, "4": 1.29},
                            "test_results": {"1": 1.0, "2": 1.65, "4": 1.3}}}},
            "custom": {"ok": True, "result": {"x": 1}},  # no row builder: still listed
        }
        table = run_all.results_table(results)
        lines = table.splitlines()
        assert lines[0].startswith("| benchmark | measure |")
        assert any("1,400,000" in ln and "280×" in ln and "NOT met" in ln for ln in lines)  # 2M goal not met
        assert any(ln.startswith("| pipeline") and "**250,000**" in ln and "25×" in ln and "NOT met" in ln
                   for ln in lines)
        assert any(ln.startswith("| latency") and "**150.0**" in ln and "| p99 < 200 ms" in ln and ": met" in ln
                   for ln in lines)
        assert any(ln.startswith("| ingest | failed | exit 1") for ln in lines)
        assert any(ln.startswith("| mttg") and "**55.0%**" in ln and "NOT met" in ln for ln in lines)
        assert any(ln.startswith("| mttg") and "hidden" in ln and "**0**" in ln and "0: met" in ln for ln in lines)
        assert any(ln.startswith("| accuracy | skipped | ../shared/datasets/ci-logs-dev not found") for ln in lines)
        assert any(ln.startswith("| custom | see bench.json") for ln in lines)
        assert any(ln.startswith("| tests_batch") and "**17,500**" in ln and "11×" in ln and "NOT met" in ln
                   for ln in lines)
        assert any(ln.startswith("| tests_batch") and "+0.04%" in ln for ln in lines)
        assert any(ln.startswith("| tests_batch") and "**" not in ln and "36,000" in ln and "2.1×" in ln
                   for ln in lines)
        assert any(ln.startswith("| scaling") and "test results/s" in ln and "20,248 / 33,345 / 26,313" in ln
                   and "1.65×" in ln for ln in lines)

    def test_a_malformed_result_does_not_break_the_table(self) -> None:
        table = run_all.results_table({"pipeline": {"ok": True, "result": {"unexpected": 1}}})
        assert "unexpected result" in table

    def test_ratio_and_fmt(self) -> None:
        assert run_all.ratio(300.0, 10.0) == "30×"
        assert run_all.ratio(15.0, 10.0) == "1.5×"
        assert run_all.ratio(1.0, 0.0) == "—"
        assert run_all.fmt(None) == "—"
        assert run_all.fmt(float("nan")) == "—"
        assert run_all.fmt(1234567.891, 1) == "1,234,567.9"


def test_last_json_takes_the_last_object_line() -> None:
    out = "progress\n{\"a\": 1}\nmore text\n" + json.dumps({"b": 2}) + "\n\n"
    assert run_all.last_json(out) == {"b": 2}
    assert run_all.last_json("no json here\n{broken\n") is None
    assert run_all.last_json("\x1b[0m{\"c\": 3}") is None  # only whole lines count


def test_machine_is_described() -> None:
    m = run_all.machine()
    assert m["cpus"] and m["python"]
    text = run_all.describe_machine(m)
    assert "Python" in text and "GiB RAM" in text


def test_every_benchmark_has_a_row_builder_and_unique_name() -> None:
    names = [b.name for b in run_all.BENCHMARKS]
    assert len(names) == len(set(names))
    assert all(n in run_all.ROWS for n in names)


def test_the_load_sends_each_jobs_test_results_as_batches_in_its_place() -> None:
    import orjson

    from healing_guard.schemas.test_batch import decode_tests, partition_of

    load = _load("load")
    msgs = load.demo_messages()[:400]
    out = load.one_pass(msgs, 3, shift=10.0, partitions=4)
    singles = [d for t, d in msgs if t == "ci.tests"]
    batches = [m for m in out if m[0] == "ci.tests"]
    assert singles and len(batches) < len(singles)
    results = [r for _t, k, v, _p, _n in batches for r in decode_tests(v, k).results]
    assert sorted(r.test_id for r in results) == sorted(d["test_id"] for d in singles)  # nothing lost
    assert all(r.job_id.endswith("-p3") for r in results)
    for _t, k, v, p, n in batches:
        assert n == len(orjson.loads(v)["results"]) and all(partition_of(r.test_id.encode(), 4) == p
                                                              for r in decode_tests(v, k).results)
    assert sum(m[4] for m in out) == len(msgs)  # paced as the demo's records
    others = [(t, orjson.loads(v)["job_id"]) for t, _k, v, _p, _n in out if t != "ci.tests"]
    assert others == [(t, d["job_id"] + "-p3") for t, d in msgs if t != "ci.tests"]  # order kept


def test_the_agents_work_alone_learns_every_result_of_the_reports() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tests_batch

    reports = tests_batch.monorepo(600, 2, 3)
    out = tests_batch.in_process(tests_batch.batch_messages(reports), 600)
    assert out["results"] == 1200 and out["tests"] == 600
    assert out["results_per_s"] > 0 and out["first_report_per_s"] > 0 and out["later_reports_per_s"] > 0


def test_the_load_counts_cpu_of_a_process_and_of_its_main_thread() -> None:
    import math
    import os
    import threading

    load = _load("load")
    pid = os.getpid()
    before_all, before_main = load.cpu_seconds(pid), load.cpu_seconds(pid, pid)
    spent = threading.Event()

    def spin() -> None:  # CPU on another thread: counted for the process, not for its main thread
        t0 = load.cpu_seconds(pid) - load.cpu_seconds(pid, pid)
        while load.cpu_seconds(pid) - load.cpu_seconds(pid, pid) - t0 < 0.3:
            sum(range(20_000))
        spent.set()

    th = threading.Thread(target=spin)
    th.start()
    th.join()
    assert spent.is_set()
    grew_all = load.cpu_seconds(pid) - before_all
    grew_main = load.cpu_seconds(pid, pid) - before_main
    assert grew_all >= 0.3 and grew_all - grew_main >= 0.3
    assert math.isnan(load.cpu_seconds(None)) and math.isnan(load.cpu_seconds(2**22 + 12345))
    parts = load._cpu(pid, None)
    assert len(parts) == len(load.CPU_PARTS) + 1 and math.isnan(parts[-1])


def test_the_batch_benchmark_reports_each_parts_median_cores() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tests_batch

    runs = [{"cores": {"worker": 0.9, "broker": 0.5}}, {"cores": {"worker": 1.0, "broker": 0.2}},
            {"cores": {"worker": 0.7, "broker": 0.4}}, {"error": "no cores in a failed run"}]
    assert tests_batch.median_cores(runs) == {"worker": 0.9, "broker": 0.4}
    assert tests_batch.median_cores([]) == {}
