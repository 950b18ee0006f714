"""JUnit XML reports to :class:`~healing_guard.schemas.TestResult` records (topic ``ci.tests``).

Pure parsing: no Kafka, no network. Reads the JUnit XML written by pytest (``--junitxml``), Maven
Surefire (``TEST-*.xml``, ``<testsuite>`` root), Gradle (``<testsuite>`` root) and jest-junit
(``<testsuites>`` root), including nested ``<testsuites>``/``<testsuite>`` elements.

Safety: the XML is parsed with :mod:`defusedxml`, so entity declarations (billion laughs, external
entities) are refused, and it is streamed with ``iterparse``: every ``<testcase>`` is dropped from the
tree once read, so a very large report costs memory for one test case, not for the file.
Every problem (unreadable file, malformed XML, refused entity, not a JUnit report) is a
:class:`JUnitError` naming the file (and the line, when the parser gives one).

Outcome of a ``<testcase>``: ``failed`` if it has a ``<failure>`` child, else ``error`` if it has an
``<error>`` child, else ``skipped`` if it has a ``<skipped>`` child, else ``passed``. (pytest writes a
failing test whose teardown also errors with both children: it counts as failed.) Surefire's
``<flakyFailure>``/``<flakyError>`` (failed, then passed on a rerun) and ``<rerunFailure>`` are ignored:
the final outcome decides.

Test ids (deterministic, see :func:`test_id`):

* **pytest**: the node id, rebuilt from ``classname`` + ``name``. pytest writes the node id
  ``tests/test_x.py::TestClass::test_y[p]`` as ``classname="tests.test_x.TestClass"``,
  ``name="test_y[p]"``. The trailing ``classname`` segments that start with an upper-case letter are
  classes (pytest collects classes named ``Test*``); the segments before them are the module path,
  joined with ``/`` and given ``.py``: ``tests/test_x.py::TestClass::test_y[p]``. When the test case
  has a ``file`` attribute ending in ``.py`` (``junit_family=xunit1``), that path is used for the module
  instead. A collection error (``classname=""``, ``name="tests.test_x"``) is the module itself:
  ``tests/test_x.py``. The dotted form is lossy (a directory with a ``.`` in its name, a module whose
  name starts with an upper-case letter), so :mod:`healing_guard.pytest_plugin` runs its node ids
  through the same rule (:func:`pytest_id_from_nodeid`) and both sources give the same key.
* **java** (Surefire, Gradle, and any other tool): ``classname#name`` with one trailing ``()`` removed
  from the name, so Gradle's JUnit 5 ``bar()`` and Surefire's ``bar`` are both ``com.acme.FooTest#bar``.
  Parameters are kept as written (``bar(int)[1]``). No ``classname``: the name alone.
* **jest** (jest-junit): ``name`` as written when ``classname`` is empty, equal to ``name`` or a
  prefix of it (jest-junit's default templates write ``"{classname} {title}"`` in both attributes);
  otherwise ``classname + " › " + name`` (jest's own separator).

The flavour is detected per test case unless given (``flavor=``): pytest when the enclosing suite is
named ``pytest`` (pytest's default ``junit_suite_name``), the test case has a ``.py`` ``file``
attribute, or the ``classname`` has a Python test-module segment (``test_*``, ``*_test``,
``tests``/``test`` followed by one); jest when the report root is named like ``jest tests``
(jest-junit's default ``suiteName``) or the ``classname`` has a space; java otherwise.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from ..schemas import SchemaError, TestResult

Flavor = Literal["auto", "pytest", "java", "jest"]
Source = bytes | str | os.PathLike[str] | IO[bytes]

MAX_MESSAGE = 4000

__all__ = ["JUnitError", "parse_junit", "pytest_id_from_nodeid", "test_id", "MAX_MESSAGE"]


class JUnitError(ValueError):
    """A JUnit report that cannot be used; the message names the file (and line) and the reason."""

    def __init__(self, file: str, reason: str, line: int | None = None) -> None:
        self.file, self.reason, self.line = file, reason, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")


# --- test ids ------------------------------------------------------------------------------------

_PY_MODULE_SEG = re.compile(r"^(test_\w*|\w+_test|conftest)$")


def _pytest_id(classname: str, name: str, file: str | None = None) -> str:
    segs = [s for s in classname.split(".") if s] if classname else []
    if not segs:
        # a collection error: pytest writes the dotted module path as the name
        if file and file.endswith(".py"):
            return file.replace(os.sep, "/")
        base, br, params = name.partition("[")
        return base.replace(".", "/") + ".py" + (("::" + br + params) if br else "")
    i = len(segs)
    while i > 1 and segs[i - 1][:1].isupper():
        i -= 1
    module, classes = segs[:i], segs[i:]
    path = file.replace(os.sep, "/") if file and file.endswith(".py") else "/".join(module) + ".py"
    return "::".join([path, *classes, name])


def _java_id(classname: str, name: str) -> str:
    if name.endswith("()"):
        name = name[:-2]
    return f"{classname}#{name}" if classname else name


def _jest_id(classname: str, name: str) -> str:
    if not classname or classname == name or name.startswith(classname + " ") or not name:
        return name or classname
    return f"{classname} › {name}"


def _looks_pytest(classname: str) -> bool:
    return any(_PY_MODULE_SEG.match(s) for s in classname.split("."))


def test_id(classname: str, name: str, *, flavor: Flavor = "auto", file: str | None = None,
            suite: str | None = None, root: str | None = None) -> str:
    """The deterministic test id of one ``<testcase>`` (rules in the module docstring)."""
    classname, name = (classname or "").strip(), (name or "").strip()
    if flavor == "auto":
        if suite == "pytest" or (file or "").endswith(".py") or _looks_pytest(classname):
            flavor = "pytest"
        elif "jest" in (root or "").lower() or " " in classname:
            flavor = "jest"
        else:
            flavor = "java"
    if flavor == "pytest":
        return _pytest_id(classname, name, file)
    if flavor == "jest":
        return _jest_id(classname, name)
    return _java_id(classname, name)


test_id.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def pytest_id_from_nodeid(nodeid: str) -> str:
    """The id the JUnit parser gives the test pytest writes for ``nodeid`` (same rule both ways).

    Mirrors pytest's ``mangle_test_address`` (node id -> ``classname``/``name``) and then applies
    the pytest rule above, so a node id and its JUnit record always share one Kafka key. Node ids
    of non-Python files (doctests in ``.txt``, plugin items) are kept as they are.
    """
    path, br, params = nodeid.partition("[")
    names = path.split("::")
    if not names[0].endswith(".py"):
        return nodeid
    names[0] = names[0][:-3].replace("/", ".")
    names[-1] += br + params
    return _pytest_id(".".join(names[:-1]), names[-1])


# --- parsing -------------------------------------------------------------------------------------


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _float(v: str | None) -> float | None:
    if v is None or not v.strip():
        return None
    try:
        f = float(v.strip().replace(",", ""))  # Surefire may write "1,234.5" in some locales
    except ValueError:
        return None
    return f if math.isfinite(f) and f >= 0 else None  # "inf"/"1e999" would not survive JSON


def _timestamp(v: str | None) -> float | None:
    """A suite's ISO 8601 ``timestamp``; a naive time (Surefire, Gradle) is read as UTC."""
    if not v:
        return None
    try:
        dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except OverflowError:  # year 1 or 9999 pushed out of range by its UTC offset
        return None


def _message(el: Element) -> str | None:
    msg = el.get("message")
    if not (msg and msg.strip()):
        text = el.text or ""
        msg = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    msg = msg.strip()
    return msg[:MAX_MESSAGE] if msg else None


def _outcome(case: Element) -> tuple[str, str | None]:
    kids: dict[str, Element] = {}
    for child in case:
        kids.setdefault(_local(child.tag), child)
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        if tag in kids:
            return outcome, _message(kids[tag])
    if "skipped" in kids:
        return "skipped", None
    return "passed", None


def _open(source: Source) -> tuple[IO[bytes], str, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "<bytes>", False
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            return open(name, "rb"), name, True
        except OSError as exc:
            raise JUnitError(name, f"cannot read: {exc.strerror or exc}") from None
    if hasattr(source, "read"):
        return source, str(getattr(source, "name", "<stream>")), False
    raise TypeError(f"expected bytes, a path or a binary file, got {type(source).__name__}")


_Case = tuple[str, str, str | None, float | None, float | None]


def _iter_cases(fh: IO[bytes], name: str, flavor: Flavor) -> Iterator[_Case]:
    """Yield ``(test_id, outcome, message, duration_s, suite_ts)`` per ``<testcase>``, streaming."""
    stack: list[Element] = []
    suites: list[tuple[str | None, float | None]] = []  # (name, timestamp) of the open <testsuite>s
    root_name: str | None = None
    # forbid_dtd: no JUnit writer emits a DOCTYPE; refusing it outright also rules out external DTDs
    # and parameter entities, not only the entity declarations defusedxml refuses by default
    for event, el in DET.iterparse(fh, events=("start", "end"), forbid_dtd=True):
        tag = _local(el.tag)
        if event == "start":
            if not stack:
                if tag not in ("testsuites", "testsuite"):
                    raise JUnitError(name, f"not a JUnit report: the root element is <{tag}>, "
                                           "expected <testsuites> or <testsuite>")
                root_name = el.get("name")
            if tag == "testsuite":
                ts = _timestamp(el.get("timestamp"))
                if ts is None and suites:
                    ts = suites[-1][1]
                suites.append((el.get("name"), ts))
            stack.append(el)
            continue
        stack.pop()
        if tag == "testsuite":
            suites.pop()
        elif tag == "testcase" and stack and _local(stack[-1].tag) in ("testsuite", "testsuites"):
            suite_name, suite_ts = suites[-1] if suites else (None, None)
            tid = test_id(el.get("classname", ""), el.get("name", ""), flavor=flavor, file=el.get("file"),
                          suite=suite_name, root=root_name)
            outcome, message = _outcome(el)
            yield tid, outcome, message, _float(el.get("time")), suite_ts
        if tag == "testcase" and stack:
            # streaming: forget the test case once read (memory stays flat on huge reports)
            el.clear()
            stack[-1].remove(el)


def parse_junit(source: Source, *, provider: str, owner: str, repo: str, job_id: str, attempt: int = 1,
                ts: float | None = None, flavor: Flavor = "auto",
                changed_files: list[str] | None = None, head_sha: str | None = None) -> list[TestResult]:
    """Parse one JUnit XML report into test results.

    ``source``: the XML bytes, a path (``str`` or :class:`os.PathLike`) or a binary file object.
    ``ts``: when the tests finished; ``None`` uses each suite's ``timestamp`` attribute when it has one.
    ``failed_in_run`` of every record is the number of failed + error tests in this report.
    Raises :class:`JUnitError` (naming the file) for anything that is not a safe, well-formed report,
    and :class:`ValueError` when the job fields are not valid.
    """
    try:
        TestResult(provider=provider, owner=owner, repo=repo, job_id=job_id,  # type: ignore[arg-type]
                   test_id="-", outcome="passed", attempt=attempt).validate()
    except SchemaError as exc:
        raise ValueError(f"invalid job fields: {exc}") from None
    if attempt < 1:
        raise ValueError("attempt must be >= 1")
    fh, name, close = _open(source)
    results: list[TestResult] = []
    try:
        for tid, outcome, message, duration, suite_ts in _iter_cases(fh, name, flavor):
            if not tid:
                raise JUnitError(name, "a <testcase> has neither classname nor name")
            results.append(TestResult(
                provider=provider, owner=owner, repo=repo, job_id=job_id,  # type: ignore[arg-type]
                test_id=tid, outcome=outcome, attempt=attempt,  # type: ignore[arg-type]
                duration_s=duration, ts=ts if ts is not None else suite_ts,
                message=message, changed_files=list(changed_files or []), head_sha=head_sha or None))
    except JUnitError:
        raise
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise JUnitError(name, f"malformed XML: {exc}", line) from None
    except DefusedXmlException as exc:
        raise JUnitError(name, f"refused unsafe XML ({type(exc).__name__}: DTDs, entity declarations, "
                               f"external entities and XML bombs are not allowed): {exc}") from None
    except (LookupError, UnicodeError) as exc:  # <?xml encoding="..."?> Python has no codec for / bytes it cannot decode
        raise JUnitError(name, f"unsupported or wrong XML encoding: {exc}") from None
    except OSError as exc:
        raise JUnitError(name, f"cannot read: {exc}") from None
    finally:
        if close:
            fh.close()
    return one_run(results)


def one_run(results: list[TestResult]) -> list[TestResult]:
    """``results`` of one job attempt (one report, or all of a job's reports) with ``failed_in_run`` set to
    how many of them failed or errored: many failures at once point at the environment, not a test."""
    failed = sum(1 for r in results if r.outcome in ("failed", "error"))
    for r in results:
        r.failed_in_run = failed
    return results
