"""The scaling benchmark's own logic (benchmarks/scaling.py): its workloads, the end of a measurement, the
log lines it reads. The benchmark itself (Kafka, worker processes, minutes) is not run here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from healing_guard.schemas.test_batch import decode_tests, partition_of
from tests.support.paths import ROOT


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "benchmarks" / "scaling.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


scaling = _load()


class TestMonorepo:
    def test_ids_are_unique_and_shaped(self) -> None:
        ids = scaling.monorepo_ids(4100)
        assert len(set(ids)) == 4100
        assert ids[0] == "svc0/tests/test_mod0.py::TestC0::test_0"
        assert ids[20] == "svc0/tests/test_mod0.py::TestC1::test_0"
        assert ids[100] == "svc0/tests/test_mod1.py::TestC0::test_0"
        assert ids[2000] == "svc1/tests/test_mod0.py::TestC0::test_0"

    def test_reports_are_seeded_and_mostly_green(self) -> None:
        ids = scaling.monorepo_ids(2000)
        a = scaling.reports(ids, 3, seed=5)
        b = scaling.reports(ids, 3, seed=5)
        assert [[r.outcome for r in run] for run in a] == [[r.outcome for r in run] for run in b]
        assert [len(run) for run in a] == [2000, 2000, 2000]
        outcomes = [r.outcome for run in a for r in run]
        failed = outcomes.count("failed")
        assert 0 < failed < 0.02 * len(outcomes)  # only flaky tests fail, 30 % of the time
        assert outcomes.count("skipped") == 3 * 20
        assert {r.job_id for r in a[0]} == {"90000"} and {r.job_id for r in a[2]} == {"90002"}
        assert all(r.failed_in_run == sum(x.outcome == "failed" for x in run) for run in a for r in run)


class TestResultsLoad:
    def test_every_batch_on_the_partition_its_tests_hash_to(self) -> None:
        load = scaling.results_load(1000, 2, seed=1)
        assert load.kind == "test_results" and load.counter == "tests" and load.total == 2000
        seen = 0
        for topic, partition, key, value in load.messages:
            assert topic == "ci.tests"
            decoded = decode_tests(value, key)
            assert decoded.batch and not decoded.errors
            assert {partition_of(r.test_id.encode(), scaling.PARTITIONS) for r in decoded.results} == {partition}
            seen += len(decoded.results)
        assert seen == load.total

    def test_warmup_covers_every_partition_under_other_ids(self) -> None:
        load = scaling.results_load(200, 1, seed=1)
        assert load.warmup_total == 100 * scaling.PARTITIONS
        assert {p for _t, p, _k, _v in load.warmup} == set(range(scaling.PARTITIONS))
        warm = {r.test_id for _t, _p, k, v in load.warmup for r in decode_tests(v, k).results}
        assert len(warm) == load.warmup_total
        assert not warm & set(scaling.monorepo_ids(200))


class TestLogWarmup:
    def test_jobs_on_every_partition_under_their_own_owner(self) -> None:
        jobs = scaling.warmup_jobs(seed=3, chunk_lines=500, per_partition=2)
        parts = [partition_of(j.key.encode(), scaling.PARTITIONS) for j in jobs]
        assert sorted(parts) == sorted(list(range(scaling.PARTITIONS)) * 2)
        for j in jobs:
            assert j.key.split("/")[1] == "warmup" and j.tests == []
            assert {c.job_key for c in j.chunks} <= {j.key} and j.completed.job_key == j.key
            assert orjson.loads(j.chunks[0].to_json())["owner"] == "warmup"


class TestEnd:
    def test_bracket_of_the_worker_that_finished_last(self) -> None:
        history = [[(10.0, 5), (11.0, 9), (12.0, 9)],  # finished in (10, 11]
                   [(10.2, 1), (11.2, 4), (12.2, 8), (13.2, 8)]]  # finished in (11.2, 12.2]
        assert scaling.end_bracket(history, start=9.0) == (11.2, 12.2)

    def test_bracket_starts_at_the_start_when_the_first_write_is_final(self) -> None:
        assert scaling.end_bracket([[(10.5, 7)], []], start=9.0) == (9.0, 10.5)

    def test_no_writes(self) -> None:
        with pytest.raises(ValueError):
            scaling.end_bracket([[], []], start=1.0)

    def test_refined_by_the_last_record_up_to_the_bracket_end(self) -> None:
        times = [10.0, 11.3, 11.9, 12.4]
        assert scaling.refine_end(times, 11.2, 12.2) == 11.9
        assert scaling.refine_end(times, 11.2, 12.36) == 12.4  # a record stamped just after the status write
        assert scaling.refine_end([10.0, 13.0], 11.2, 12.2) is None
        # the last step wrote its records, then awaited its sends while the status file was written once more
        assert scaling.refine_end([10.0, 11.05], 11.2, 12.2) == 11.05


class TestWorkerLog:
    def test_resumed_only_after_the_last_sync(self, tmp_path: Path) -> None:
        log = tmp_path / "worker.log"
        w = scaling.Worker(proc=None, log=log, status=tmp_path / "status.json")
        assert not w.resumed() and w.syncs() == 0
        sync = "[INFO] Successfully synced group g-1 with generation {} \n"
        seek = "[INFO] [^---Recovery]: Seek stream partitions to committed offsets. \n"
        log.write_text(sync.format(1) + seek)
        assert w.resumed() and w.syncs() == 1
        log.write_text(sync.format(1) + seek + sync.format(2))
        assert not w.resumed() and w.syncs() == 2
        log.write_text(sync.format(1) + seek + sync.format(2) + "[ERROR] boom\nTraceback\n" + seek)
        assert w.resumed()
        assert w.first_error().startswith("[ERROR] boom")


class TestSummary:
    def test_medians_and_speedup_over_the_first_count(self) -> None:
        results = {"log_lines": {1: [{"rate": 100.0}, {"rate": 120.0}, {"rate": 110.0}], 2: [{"rate": 165.0}]},
                   "test_results": {1: [{"rate": 10.0}], 2: [{"rate": 5.0}]}}
        rates, speedup = scaling.summarize(results)
        assert rates == {"log_lines": {"1": 110.0, "2": 165.0}, "test_results": {"1": 10.0, "2": 5.0}}
        assert speedup == {"log_lines": {"1": 1.0, "2": 1.5}, "test_results": {"1": 1.0, "2": 0.5}}


def test_options_are_checked() -> None:
    for argv in (["--workers", "0,2"], ["--workers", "1,5"], ["--workers", "a"], ["--runs", "0"]):
        with pytest.raises(SystemExit):
            scaling.main(argv)


def test_cpu_of_other_processes() -> None:
    assert scaling.others_cpu((10.0, 1.0, 4.0), (16.0, 1.5, 9.0)) == {"other_cpu_seconds": 1.0,
                                                                     "steal_seconds": 0.5}
    assert scaling.others_cpu(None, (1.0, 0.0, 0.0))["other_cpu_seconds"] is None
    now = scaling.cpu_seconds([scaling.os.getpid()])
    if now is not None:  # Linux
        assert now[0] > 0 and now[2] > 0
