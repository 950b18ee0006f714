"""A directive applied to the real tools, on small projects: only the failed tests run, one at a time, with
the longer timeout and the larger memory limit the guard asked for.

Each test writes a directive as the guard's API would serve it, runs ``guard directive apply`` in a shell
as a job's first step does (``eval "$(guard directive apply ...)"``), then the tool's own command line,
and reads what the tests themselves recorded (which ran, in which process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
GUARD = BIN / "guard"


def _directive(tmp: Path, **fields: object) -> Path:
    d = {"command_id": "c-1", "action": "retry_tests_isolated", "provider": "github", "owner": "acme",
         "repo": "web", "job_id": "7", "attempt": 1, **fields}
    path = tmp / "directive.json"
    path.write_text(json.dumps(d))
    return path


def _job(tmp: Path, directive: Path, command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A job's first step (apply the directive), then its test step, in one shell."""
    script = f'set -e\neval "$("{GUARD}" directive apply --file "{directive}" --out-dir "{tmp / ".guard"}" --format shell)"\n{command}\n'
    e = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "PYTEST_"))}
    e.update({"PATH": f"{BIN}{os.pathsep}{e.get('PATH', '')}", "REC": str(tmp / "rec.txt"), **(env or {})})
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)


def _ran(tmp: Path) -> list[str]:
    p = tmp / "rec.txt"
    return p.read_text().split() if p.exists() else []


PYTEST_PROJECT = '''
import os, time, pytest

def _rec(name):
    with open(os.environ["REC"], "a") as f:
        f.write(f"{name}:{os.getpid()}:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")

def test_ok():
    _rec("test_ok")

@pytest.mark.parametrize("n", [1, 2])
def test_flaky(n):
    _rec(f"test_flaky[{n}]")

def test_slow():
    _rec("test_slow")
    time.sleep(1.5)
'''


def test_pytest_runs_only_the_failed_tests_one_at_a_time_with_a_longer_timeout(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "test_mod.py").write_text(PYTEST_PROJECT)
    run = f'"{sys.executable}" -m pytest -q -n 2 --timeout 1 -p no:cacheprovider test_mod.py'
    # without a directive: both workers, every test, and test_slow times out
    before = _job(tmp_path, _directive(tmp_path), run, proj)
    assert before.returncode != 0 and "Timeout" in before.stdout, before.stdout[-2000:]
    workers = {r.split(":")[2] for r in _ran(tmp_path)}
    assert workers == {"gw0", "gw1"}, workers
    (tmp_path / "rec.txt").unlink()
    # the directive: the two failed tests (one as a node id, one in the guard's JUnit form) and test_slow,
    # sequentially, with three times the timeout
    d = _directive(tmp_path, tests=["test_mod.py::test_flaky[2]", "test_mod.py::test_slow", "test_mod.py::test_flaky[1]"],
                   sequential=True, timeout_factor=3)
    after = _job(tmp_path, d, run, proj)
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-2000:]
    ran = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(name for name, _, _ in ran) == ["test_flaky[1]", "test_flaky[2]", "test_slow"]
    assert {w for _, _, w in ran} == {"main"} and len({pid for _, pid, _ in ran}) == 1  # one process, no xdist
    assert "healing-guard directive: only the 3 failed test(s)" in after.stdout
    assert "test timeout 1 s -> 3 s" in after.stdout


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_go_test_runs_only_the_failed_tests_one_package_at_a_time(tmp_path: Path) -> None:
    proj = tmp_path / "gomod"
    proj.mkdir()
    (proj / "go.mod").write_text("module example.com/m\n\ngo 1.20\n")
    (proj / "m_test.go").write_text(
        'package m\nimport ("os";"testing")\n'
        'func rec(n string){f,_:=os.OpenFile(os.Getenv("REC"),os.O_APPEND|os.O_CREATE|os.O_WRONLY,0644);f.WriteString(n+"\\n");f.Close()}\n'
        'func TestA(t *testing.T){rec("TestA")}\nfunc TestB(t *testing.T){rec("TestB")}\nfunc TestC(t *testing.T){rec("TestC")}\n')
    env = {"GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": "-count=1", "GOPATH": str(tmp_path / "gopath")}
    d = _directive(tmp_path, tests=["example.com/m#TestC", "example.com/m#TestA"], sequential=True)
    out = _job(tmp_path, d, 'echo "GOFLAGS=$GOFLAGS"; eval "go test $(guard directive args go --file ../.guard/directive.json) ./..."',
               proj, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(_ran(tmp_path)) == ["TestA", "TestC"]
    assert "GOFLAGS=-count=1 -p=1" in out.stdout  # appended to the job's own GOFLAGS


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs the Rust toolchain")
def test_cargo_test_runs_only_the_failed_tests_on_one_thread(tmp_path: Path) -> None:
    proj = tmp_path / "crate"
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text('[package]\nname = "m"\nversion = "0.1.0"\nedition = "2021"\n')
    (proj / "src" / "lib.rs").write_text(
        "#[cfg(test)]\nmod tests {\n"
        "    fn rec(n: &str) { use std::io::Write; let mut f = std::fs::OpenOptions::new().append(true)"
        ".create(true).open(std::env::var(\"REC\").unwrap()).unwrap();"
        " f.write_all(format!(\"{}\\n\", n).as_bytes()).unwrap(); }\n"  # one write: lines never interleave
        "    fn run(n: &str) { rec(&format!(\"{}+\", n)); std::thread::sleep(std::time::Duration::from_millis(600));"
        " rec(&format!(\"{}-\", n)); }\n"
        "    #[test] fn a() { run(\"a\"); }\n    #[test] fn b() { run(\"b\"); }\n    #[test] fn c() { run(\"c\"); }\n}\n")
    env = {"CARGO_TARGET_DIR": str(tmp_path / "target"), "CARGO_NET_OFFLINE": "true", "RUST_TEST_THREADS": "4"}
    cmd = 'eval "cargo test -q $(guard directive args cargo --file ../.guard/directive.json)"'
    plain = _job(tmp_path, _directive(tmp_path, action="retry"), cmd, proj, env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    ran = _ran(tmp_path)
    assert sorted(ran) == ["a+", "a-", "b+", "b-", "c+", "c-"] and ran[1].endswith("+"), ran  # in parallel
    (tmp_path / "rec.txt").unlink()
    d = _directive(tmp_path, tests=["tests#a", "tests#c"], sequential=True)
    out = _job(tmp_path, d, cmd, proj, env)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = _ran(tmp_path)
    # only a and c, and each ended before the next began (the directive's RUST_TEST_THREADS=1 and
    # --test-threads=1 win over the job's own RUST_TEST_THREADS=4)
    assert ran in (["a+", "a-", "c+", "c-"], ["c+", "c-", "a+", "a-"]), ran


def _heap_before_and_after(tmp_path: Path, probe: str, pattern: str) -> list[int]:
    """The heap limit ``probe`` prints (``pattern`` captures it) after a plain retry's first step, and after
    a ``memory_factor: 2`` directive's."""
    runs = [_job(tmp_path, _directive(tmp_path, action="retry"), probe, tmp_path),
            _job(tmp_path, _directive(tmp_path, action="rerun_more_memory", memory_factor=2), probe, tmp_path)]
    return [int(re.search(pattern, r.stdout).group(1)) for r in runs]  # type: ignore[union-attr]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_node_heap_limit_grows_by_the_memory_factor(tmp_path: Path) -> None:
    heap = _heap_before_and_after(
        tmp_path, 'node -e "console.log(\'HEAP=\' + require(\'v8\').getHeapStatistics().heap_size_limit)"',
        r"HEAP=(\d+)")
    assert heap[1] > 1.5 * heap[0], heap


@pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK")
def test_jvm_heap_limit_grows_by_the_memory_factor(tmp_path: Path) -> None:
    heap = _heap_before_and_after(tmp_path, "java -XX:+PrintFlagsFinal -version 2>/dev/null | grep -E ' MaxHeapSize '",
                                  r"MaxHeapSize\s+=\s+(\d+)")
    assert heap[1] > 1.8 * heap[0], heap


def _java_tests(src: Path) -> None:
    """JUnit 4 tests FooTest.one, FooTest.two and BarTest.x, each recording "name:max heap:pid"."""
    (src / "FooTest.java").write_text(
        "package com.acme;\nimport org.junit.Test;\nimport java.nio.file.*;\npublic class FooTest {\n"
        "  static void rec(String n) throws Exception { Files.writeString(Path.of(System.getenv(\"REC\")), n + \":\" +"
        " Runtime.getRuntime().maxMemory() + \":\" + ProcessHandle.current().pid() + \"\\n\","
        " StandardOpenOption.CREATE, StandardOpenOption.APPEND); }\n"
        "  @Test public void one() throws Exception { rec(\"one\"); }\n"
        "  @Test public void two() throws Exception { rec(\"two\"); }\n}\n")
    (src / "BarTest.java").write_text(
        "package com.acme;\nimport org.junit.Test;\npublic class BarTest {\n"
        "  @Test public void x() throws Exception { FooTest.rec(\"x\"); }\n}\n")


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.acme</groupId><artifactId>p</artifactId><version>1.0</version>
  <properties><maven.compiler.source>17</maven.compiler.source><maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <dependencies><dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13.2</version>
    <scope>test</scope></dependency></dependencies>
  <build><plugins><plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-surefire-plugin</artifactId>
    <version>3.2.5</version></plugin></plugins></build>
</project>
"""


@pytest.mark.skipif(shutil.which("mvn") is None or shutil.which("java") is None, reason="needs Maven and a JDK")
def test_maven_surefire_runs_only_the_failed_test_with_twice_the_heap(tmp_path: Path) -> None:
    proj = tmp_path / "mvn"
    src = proj / "src" / "test" / "java" / "com" / "acme"
    src.mkdir(parents=True)
    (proj / "pom.xml").write_text(POM)
    _java_tests(src)
    cmd = 'eval "mvn -q -B test $(guard directive args maven --file ../.guard/directive.json)"'
    plain = _job(tmp_path, _directive(tmp_path, action="retry"), cmd, proj)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-2000:]
    before = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(n for n, _, _ in before) == ["one", "two", "x"]
    (tmp_path / "rec.txt").unlink()
    d = _directive(tmp_path, action="rerun_more_memory", tests=["com.acme.FooTest#two", "tests/test_a.py::test_b"],
                   memory_factor=2)
    out = _job(tmp_path, d, cmd, proj)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    after = [r.split(":") for r in _ran(tmp_path)]
    assert [n for n, _, _ in after] == ["two"]  # only the failed Java test; the pytest id is not Maven's
    assert int(after[0][1]) > 1.8 * int(before[0][1]), (before, after)  # the test JVM's heap limit


BUILD_GRADLE = """apply plugin: 'java'
repositories { mavenCentral() }
dependencies { testCompile 'junit:junit:4.13.2' }
test { maxParallelForks = 4 }
"""


@pytest.mark.skipif(shutil.which("gradle") is None or shutil.which("java") is None,
                    reason="needs Gradle and a JDK (make test installs Debian's gradle)")
def test_gradle_runs_only_the_failed_tests_in_one_worker_with_twice_the_heap(tmp_path: Path) -> None:
    proj = tmp_path / "gradle"
    src = proj / "src" / "test" / "java" / "com" / "acme"
    src.mkdir(parents=True)
    (proj / "build.gradle").write_text(BUILD_GRADLE)
    (proj / "gradle.properties").write_text("org.gradle.workers.max=4\n")  # the project's own parallelism
    _java_tests(src)
    cmd = 'eval "gradle -q --no-daemon cleanTest test $(guard directive args gradle --file ../.guard/directive.json)"'
    plain = _job(tmp_path, _directive(tmp_path, action="retry"), cmd, proj)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-2000:]
    before = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(n for n, _, _ in before) == ["one", "two", "x"]
    assert len({pid for _, _, pid in before}) == 2  # the two test classes in two test workers
    (tmp_path / "rec.txt").unlink()
    d = _directive(tmp_path, action="rerun_sequential", sequential=True, memory_factor=2,
                   tests=["com.acme.FooTest#two", "com.acme.BarTest#x", "tests/test_a.py::test_b"])
    out = _job(tmp_path, d, cmd, proj)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    after = [r.split(":") for r in _ran(tmp_path)]
    assert sorted(n for n, _, _ in after) == ["two", "x"]  # only the failed Java tests
    assert len({pid for _, _, pid in after}) == 1  # one test worker: one at a time
    assert int(after[0][1]) > 1.8 * int(before[0][1]), (before, after)  # the test JVM's heap limit
