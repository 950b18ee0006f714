"""Fuzzing every parser of untrusted input: thousands of inputs each, zero crashes, every rejection explained.

Each ``@given`` test feeds one parser structure-aware inputs (real valid payloads with fields dropped,
retyped, made huge, filled with odd Unicode or nested junk) and raw bytes. The property is always the
same: the parser returns a valid result, or raises its documented error type whose message names the
field / key / line / file at fault. Any other exception is a crash and fails the test.

Counts per parser are collected while the tests run; ``pytest -s tests/unit/crosscutting/test_fuzz.py`` prints them
(``parser: N inputs, 0 crashes, K rejections (all explained)``) from the last test of this module.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healing_guard.backtest import parse_line, read_files
from healing_guard.patterns.library import PatternError, load_library, parse_library
from healing_guard.patterns.matcher import Matcher
from healing_guard.patterns.tokenize import clean, redact, template, tokenize
from healing_guard.engine.core import DeadLetter, Engine, dead_letter, schema_dead_letter
from healing_guard.platforms.forward import log_chunks
from healing_guard.platforms.junit import JUnitError, parse_junit
from healing_guard.platforms.webhooks import SignatureError, WebhookError, parse, verify
from healing_guard.rest.keys import ApiKeys, KeyFileError
from healing_guard.samples import generate, messages
from healing_guard.schemas import TOPIC_RECORDS, JobEvent, LogChunk, SchemaError
from healing_guard.settings import ConfigError, Settings, _line_index, load_settings
from healing_guard.strategies_config import parse_strategies
from healing_guard.engine.window import JobWindow
from tests.support.paths import FIXTURES

FIX = FIXTURES


def dumps(obj: Any) -> bytes:
    """JSON of a generated input (keys of any type written as strings)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

#: per parser: inputs fed, rejections (documented error with the place at fault), crashes
STATS: dict[str, Counter[str]] = defaultdict(Counter)
#: per parser, a few rejection reasons (for the report)
REASONS: dict[str, Counter[str]] = defaultdict(Counter)

#: `make test` runs a quarter of the examples (GUARD_FUZZ_SCALE=0.25: new random inputs every run, in a
#: quarter of the time); the counts in the README are at the full scale (this module run on its own)
SCALE = float(os.environ.get("GUARD_FUZZ_SCALE", "1"))
FAST = settings(max_examples=max(50, round(2000 * SCALE)), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(25, round(1000 * SCALE)), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def attempt(name: str, fn: Callable[[], Any], allowed: tuple[type[BaseException], ...],
            explained: Callable[[Any], str | None]) -> Any:
    """Run one parser call: a result, or an allowed error that ``explained`` finds a place in."""
    STATS[name]["inputs"] += 1
    try:
        return fn()
    except allowed as exc:
        STATS[name]["rejections"] += 1
        where = explained(exc)
        assert where, f"{name}: a rejection that does not say where: {exc!r}"
        REASONS[name][where] += 1
        return exc
    except BaseException:
        STATS[name]["crashes"] += 1
        raise


# --- strategies ----------------------------------------------------------------------------------

ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from([
    "", " ", "\x00", "a\x00b", "/", "a/b", "\u202e", "\ufeff", "\U0001f4a9", "ﬀ", "İ", "\r\n", "\x1b[31m",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-02-30T00:00:00Z", "1e999", "-0", "NaN",
])
JSON_LEAF = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
             | st.floats(allow_nan=False, allow_infinity=False) | ODD_TEXT)
JSON_VALUE = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(ODD_TEXT, c, max_size=4),
                          max_leaves=12)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, bases: list[dict[str, Any]]) -> Any:
    """A valid payload with 0-4 mutations: a key dropped, a value replaced by junk, a huge string,
    odd Unicode, a nested structure, a wrong container."""
    d = copy.deepcopy(draw(st.sampled_from(bases)))
    paths = _paths(d)
    for _ in range(draw(st.integers(0, 4))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = d
        try:
            for p in path[:-1]:
                parent = parent[p]
            last = path[-1]
            op = draw(st.sampled_from(["drop", "junk", "huge", "odd", "nest", "num", "bool", "null"]))
            if op == "drop":
                if isinstance(parent, dict):
                    parent.pop(last, None)
                else:
                    del parent[last]
            elif op == "junk":
                parent[last] = draw(JSON_VALUE)
            elif op == "huge":
                parent[last] = draw(st.sampled_from(["x", "é", "\x00", "/"])) * draw(st.integers(1000, 300_000))
            elif op == "odd":
                parent[last] = draw(ODD_TEXT)
            elif op == "nest":
                parent[last] = [[[{"a": [parent[last]]}]]]
            elif op == "num":
                parent[last] = draw(st.integers(-(1 << 63), (1 << 64) - 1) | st.floats(allow_nan=False,
                                                                                       allow_infinity=False))
            elif op == "bool":
                parent[last] = draw(st.booleans())
            else:
                parent[last] = None
        except (KeyError, IndexError, TypeError):
            continue
    if draw(st.integers(0, 9)) == 0:  # a wrong top-level container now and then
        return draw(st.sampled_from([[d], "x", 1, None]))
    return d


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """Bytes of a valid document, cut and with bytes flipped or inserted (invalid UTF-8, NUL, quotes)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            b[i] = draw(st.integers(0, 255))
        elif op == 1:
            b[i:i] = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b'"', b"\\", b"{", b"]", b"\xed\xa0\x80",
                                           b"<", b"&", b"]]>", b"&lt", b"\n", b"*", b"!!", b"{{", b"&a"]))
        elif op == 2:
            del b[i:i + draw(st.integers(1, 20))]
        else:
            b = b[:i]
    return bytes(b)


# --- valid seed payloads ---------------------------------------------------------------------------

SAMPLES = list(messages(generate(4, 7)))
RECORD_SEEDS: dict[str, list[dict[str, Any]]] = defaultdict(list)
for _topic, _key, _value in SAMPLES:
    if len(RECORD_SEEDS[_topic]) < 8:
        RECORD_SEEDS[_topic].append(orjson.loads(_value))
_JOB = {"provider": "github", "owner": "acme", "repo": "api", "job_id": "7"}
RECORD_SEEDS["guard.findings"].append({**_JOB, "finding_id": "f", "attempt": 1, "category": "network",
                                       "evidence": [{"line": 3, "text": "x", "pattern": "p"}],
                                       "failed_tests": [{"test_id": "t", "p_fail": 0.1, "p_retry_pass": 0.9,
                                                         "runs": 3}]})
RECORD_SEEDS["guard.actions"].append({**_JOB, "command_id": "c", "attempt": 1, "action": "retry_job", "reason": "r",
                                      "category": "network", "confidence": 0.9, "parameters": {"a": [1, {"b": 2}]},
                                      "budget": {"day": "2024-01-01", "spent_usd": 1, "daily_budget_usd": 2,
                                                 "repo_spent_usd": 0, "repo_budget_usd": 1, "job_retries": 0,
                                                 "max_retries_per_job": 2}})
RECORD_SEEDS["guard.outcomes"].append({"command_id": "c", "job_key": "github/acme/api/7", "action": "retry_job",
                                       "status": "failed", "http_status": 403, "category": "network"})
RECORD_SEEDS["guard.deadletter"].append({"source_topic": "ci.logs", "reason": "r", "original_b64": "",
                                         "original_size": 0, "field_name": "seq"})
RECORD_SEEDS["ci.logs"].append({**_JOB, "seq": 0, "lines": ["\x00", "\ufffd\ufffd", "ERROR: x" * 50,
                                                           "##[error]Process completed with exit code 1."],
                                "eof": True})
ALL_RECORD_SEEDS = [(t, d) for t, ds in RECORD_SEEDS.items() for d in ds]
assert set(RECORD_SEEDS) == set(TOPIC_RECORDS), sorted(RECORD_SEEDS)


def schema_where(exc: SchemaError) -> str | None:
    if exc.field:
        return f"field {exc.field.split('[')[0].split('.')[0]}"
    # whole-message refusals name the message itself
    for what in ("message is", "not valid JSON", "expected an object"):
        if exc.reason.startswith(what):
            return f"message: {what}"
    return None


# --- 1. topic records ------------------------------------------------------------------------------

@FAST
@given(st.data())
def test_fuzz_topic_records(data: st.DataObject) -> None:
    topic = data.draw(st.sampled_from(sorted(TOPIC_RECORDS)))
    cls = TOPIC_RECORDS[topic]
    kind = data.draw(st.integers(0, 9))
    if kind < 6:
        raw = dumps(data.draw(mutated(RECORD_SEEDS[topic])))
    elif kind < 8:
        raw = data.draw(corrupted(orjson.dumps(data.draw(st.sampled_from(RECORD_SEEDS[topic])))))
    else:
        raw = data.draw(st.binary(max_size=200))
    rec = attempt("topic records (7 topics)", lambda: cls.from_json(raw), (SchemaError,), schema_where)
    if not isinstance(rec, SchemaError):  # what decodes re-encodes and decodes to the same record
        assert cls.from_json(rec.to_json()) == rec


# --- 2. the worker's pure ingest step for ci.logs (decode, then the job window) ----------------------

ENGINE = Engine(Settings())
MAX_CHUNK = Settings().max_chunk_bytes


def ingest_log(raw: bytes, key: bytes) -> DeadLetter | list[Any]:
    """What the ingest agent does with a ci.logs message, without Kafka: a dead letter or the outputs,
    and a window that can be stored in its table again."""
    try:
        rec = LogChunk.from_json(raw, max_bytes=MAX_CHUNK)
    except SchemaError as exc:
        return schema_dead_letter("ci.logs", raw, exc, key=key)
    if rec.job_key.encode() != key:
        return dead_letter("ci.logs", raw, "key is not the job key", field_name="key", key=key)
    w, outputs = ENGINE.chunk(JobWindow(job_key=key.decode("utf-8", "replace")), rec, now=0.0)
    stored = orjson.dumps(w.to_dict())  # the table value
    assert JobWindow.from_dict(orjson.loads(stored)).lines_seen == w.lines_seen
    return outputs


LINES = st.lists(ODD_TEXT | st.sampled_from([
    "Error: connect ETIMEDOUT 10.0.0.1:443", "java.lang.OutOfMemoryError: Java heap space", "Killed",
    "npm ERR! code E404", "##[group]Run pytest", "section_start:1700000000:step_script\r\x1b[0K",
    "FAILED tests/test_x.py::test_y - AssertionError", "\x1b[31merror\x1b[0m: could not compile", "\x00" * 100,
]) | st.binary(max_size=60).map(lambda b: b.decode("utf-8", "replace")), max_size=30)


@FAST
@given(st.data())
def test_fuzz_ingest_log_chunks(data: st.DataObject) -> None:
    kind = data.draw(st.integers(0, 9))
    key = b"github/acme/api/7"
    if kind < 5:
        d = {**_JOB, "seq": data.draw(st.integers(-2, 3)), "lines": data.draw(LINES),
             "first_line": data.draw(st.none() | st.integers(-5, 10**6)), "eof": data.draw(st.booleans())}
        raw = orjson.dumps(d)
    elif kind < 8:
        raw = dumps(data.draw(mutated(RECORD_SEEDS["ci.logs"])))
    else:  # raw bytes: invalid UTF-8, NUL bytes, not JSON at all
        raw = data.draw(st.binary(max_size=300))

    def step() -> Any:
        out = ingest_log(raw, key)
        if isinstance(out, DeadLetter):  # dead-lettered: the reason (and field) travel with the bytes
            raise SchemaError(out.reason, out.field_name)
        return out

    attempt("ingest step (ci.logs -> window)", step, (SchemaError,), schema_where)


# --- 3. webhook payloads and signatures ------------------------------------------------------------

WEBHOOK_SEEDS: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = defaultdict(list)
for _f in sorted((FIX / "webhooks").glob("*.json")):
    _prov = _f.name.split("_")[0]
    _hdr = {"X-GitHub-Event": "workflow_job"} if _prov == "github" and "workflow_job" in _f.name else {}
    WEBHOOK_SEEDS[_prov].append((_hdr, orjson.loads(_f.read_bytes())))


def webhook_where(exc: WebhookError) -> str | None:
    return f"field {exc.field}" if exc.field else None


@FAST
@given(st.data())
def test_fuzz_webhook_payloads(data: st.DataObject) -> None:
    provider = data.draw(st.sampled_from(sorted(WEBHOOK_SEEDS)))
    headers, _ = data.draw(st.sampled_from(WEBHOOK_SEEDS[provider]))
    kind = data.draw(st.integers(0, 9))
    if kind < 7:
        body = dumps(data.draw(mutated([p for _, p in WEBHOOK_SEEDS[provider]])))
    elif kind < 9:
        body = data.draw(corrupted(orjson.dumps(data.draw(st.sampled_from(WEBHOOK_SEEDS[provider]))[1])))
    else:
        body = data.draw(st.binary(max_size=200))
    if data.draw(st.booleans()):
        headers = {**headers, data.draw(st.sampled_from(["X-GitHub-Event", "X-Gitlab-Event",
                                                          "circleci-event-type"])): data.draw(ODD_TEXT)}
    res = attempt("webhook payloads (4 platforms)", lambda: parse(provider, headers, body), (WebhookError,),
                  webhook_where)
    if not isinstance(res, WebhookError):
        assert res.events or res.skipped
        for ev in res.events:  # what the receiver publishes, the ci.jobs decoder reads back unchanged
            assert JobEvent.from_json(ev.to_json()) == ev


HEADER_TEXT = st.text(max_size=80) | st.sampled_from(["sha256=", "v1=,v2=", "sha256=\udcff", "\ud800", "=" * 80])


@FAST
@given(st.sampled_from(["github", "gitlab", "jenkins", "circleci", "GitHub", "bitbucket", ""]),
       st.dictionaries(st.sampled_from(["X-Hub-Signature-256", "X-Gitlab-Token", "circleci-signature",
                                        "X-Guard-Signature-256", "X-Guard-Token", "x-hub-signature-256 "]),
                       HEADER_TEXT, max_size=3),
       st.binary(max_size=100), st.text(max_size=20) | st.just("s\udcffcret"))
def test_fuzz_webhook_signatures(provider: str, headers: dict[str, str], body: bytes, secret: str) -> None:
    def where(exc: Exception) -> str | None:
        if isinstance(exc, WebhookError):
            return webhook_where(exc)
        return f"signature: {str(exc).split(' ')[0]}" if str(exc) else None

    attempt("webhook signature checks", lambda: verify(provider, headers, body, secret),
            (SignatureError, WebhookError), where)


# --- 4. JUnit XML ------------------------------------------------------------------------------------

JUNIT_SEEDS = [p.read_bytes() for p in sorted((FIX / "junit").glob("*.xml"))]
XML_SNIPPETS = [
    b'<testcase classname="a.test_b" name="t" time="inf"/>', b'<testcase name="t"><failure message="&#0;"/></testcase>',
    b'<testcase classname="" name=""/>', b'<testsuite timestamp="0001-01-01T00:00:00+01:00"><testcase name="x"/></testsuite>',
    b'<testsuite timestamp="9999-12-31T23:59:59-05:00"><testcase name="x"/></testsuite>',
    b'<!DOCTYPE testsuite [<!ENTITY a "aaaa">]>', b'<?xml version="1.0" encoding="utf-16"?>',
    b'<?xml version="1.0" encoding="x-unknown"?>', b'<testcase name="\xff\xfe"/>', b"<![CDATA[\x00]]>",
    b'<testcase time="1e999" name="x"/>', b'<testcase time="-1" name="x"><skipped/></testcase>',
]


def junit_where(exc: Exception) -> str | None:
    if isinstance(exc, JUnitError):
        return f"file: {exc.reason.split(':')[0][:50]}" if exc.file and exc.reason else None
    return None


@FAST
@given(st.data())
def test_fuzz_junit_xml(data: st.DataObject) -> None:
    kind = data.draw(st.integers(0, 9))
    seed = data.draw(st.sampled_from(JUNIT_SEEDS))
    if kind < 5:
        xml = data.draw(corrupted(seed))
    elif kind < 8:  # valid structure around odd pieces
        root = data.draw(st.sampled_from([b"testsuites", b"testsuite", b"testcase", b"x"]))
        parts = data.draw(st.lists(st.sampled_from(XML_SNIPPETS), max_size=4))
        xml = b"<" + root + b' name="' + data.draw(st.text(max_size=20)).encode("utf-8", "surrogatepass") + b'">' + \
            b"".join(parts) + b"</" + root + b">"
        if data.draw(st.booleans()):
            xml = data.draw(st.sampled_from(XML_SNIPPETS[5:8])) + xml
    else:
        xml = data.draw(st.binary(max_size=200))
    res = attempt("JUnit XML", lambda: parse_junit(xml, provider="github", owner="acme", repo="api", job_id="7"),
                  (JUnitError,), junit_where)
    if isinstance(res, list):
        for r in res:  # every record is one the ci.tests decoder accepts
            assert type(r).from_json(r.to_json()) == r


# --- 5. pattern library YAML -----------------------------------------------------------------------

PATTERN_YAML = """\
version: 1
patterns:
  - id: acme.timeout
    category: network
    regex: 'connect(?:ion)? timed out after \\d+ ?ms'
    confidence: 0.7
    caseless: true
    indicators: [timeout]
    remediation: retry
    description: flaky network
  - id: acme.oom
    category: oom
    regex: '^Killed$'
"""
YAML_JUNK = [
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "&a [*a]", "*nope", "[[[[[[[[",
    "{? [a] : b}", "'(a+)+$'", "'a{100000}'", "'(\\1)'", "'(?=x)y'", "'a\\x00'", '"a\\0b"', '"\\ud800"', "''", "'*'",
    "'.*'", "'(?:a{1,50}){1,50}'", "1e400", "100000000000000000000000000000000000000000", ".nan", "-.inf", "~",
    "[a, b]", "{a: 1}", "true", "'(?P<x>a)(?P=x)'", "'[z-a]'", "'x' * 3", "|\n    multi", "!!binary aGVsbG8=",
]


def _yaml_mutations(text: str) -> st.SearchStrategy[str]:
    lines = text.splitlines()

    @st.composite
    def strat(draw: st.DrawFn) -> str:
        ls = list(lines)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(ls) - 1))
            op = draw(st.integers(0, 4))
            if op == 0 and ":" in ls[i]:  # replace a value
                k = ls[i].split(":", 1)[0]
                ls[i] = f"{k}: {draw(st.sampled_from(YAML_JUNK) | ODD_TEXT.map(json.dumps))}"
            elif op == 1:
                del ls[i]
            elif op == 2:
                ls.insert(i, ls[i])  # duplicate keys / ids
            elif op == 3:
                ls[i] = ls[i].replace("  ", "\t", 1) if draw(st.booleans()) else " " + ls[i]
            else:
                ls.insert(i, draw(st.text(max_size=30)))
        return "\n".join(ls)

    return strat() | st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace"))


def pattern_where(exc: PatternError) -> str | None:
    return (f"key {exc.key.split('.')[-1]}" if exc.key else f"line: {exc.reason[:20]}") if exc.file else None


@SLOW
@given(_yaml_mutations(PATTERN_YAML))
def test_fuzz_pattern_library_yaml(text: str) -> None:
    res = attempt("pattern library YAML", lambda: parse_library(text, "fuzz.yml"), (PatternError,), pattern_where)
    if isinstance(res, list) and res:
        Matcher(res).match(["connection timed out after 30 ms", "Killed"])  # what loads, compiles together


# --- 6. healing-strategies.yml ---------------------------------------------------------------------

STRATEGIES_YAML = """\
version: 1
ml_model:
  type: flake_filter
  prior_strength: 20
features: [last_failed, fail_rate]
thresholds:
  flaky: 0.6
  min_runs: 5
actions:
  oom_recovery:
    enabled: true
    confidence_threshold: 0.8
    max_retries: 1
    parameters:
      memory_factor: 2
      backoff_seconds: [1, 2, 4]
  skip_and_notify:
    parameters: {channel: '#ci'}
"""


def config_where(exc: ConfigError) -> str | None:
    return f"key {exc.key.split('.')[-1]}" if exc.source and exc.key else None


@SLOW
@given(_yaml_mutations(STRATEGIES_YAML))
def test_fuzz_strategies_yaml(text: str) -> None:
    attempt("healing-strategies.yml", lambda: parse_strategies(text, "fuzz.yml"), (ConfigError,), config_where)


# --- 7. healing-config.yml ---------------------------------------------------------------------------

CONFIG_YAML = """\
broker:
  url: kafka://127.0.0.1:9092
  partitions: 4
pipeline:
  max_chunk_bytes: 4194304
  confidence_threshold: 0.5
  pattern_files: []
  auto_thresholds: {network: 0.8}
cost_tracking:
  daily_budget_usd: 200
  default_runner_size: medium
  price_per_minute_usd: {small: 0.008, medium: 0.016}
api:
  port: 8000
logging:
  level: warning
"""


@SLOW
@given(_yaml_mutations(CONFIG_YAML))
def test_fuzz_settings_yaml(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.getbasetemp() / "healing-config.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    attempt("healing-config.yml", lambda: load_settings(path, env={}), (ConfigError,), config_where)


# --- 8. backtest recordings --------------------------------------------------------------------------

RECORDING_SEEDS = [{"topic": t, "record": orjson.loads(v)} for t, _, v in SAMPLES[:20]]


@FAST
@given(st.data())
def test_fuzz_backtest_recording_lines(data: st.DataObject) -> None:
    kind = data.draw(st.integers(0, 9))
    if kind < 6:
        line = dumps(data.draw(mutated(RECORDING_SEEDS)))
    elif kind < 8:
        line = data.draw(corrupted(orjson.dumps(data.draw(st.sampled_from(RECORDING_SEEDS)))))
    else:
        line = data.draw(st.binary(max_size=200))

    def where(exc: ValueError) -> str | None:
        msg = str(exc)
        return f"line: {msg.split(': ')[1][:25]}" if msg.startswith("rec.jsonl:9: ") else None

    attempt("backtest recording lines", lambda: parse_line(line, "rec.jsonl:9"), (ValueError,), where)


@SLOW
@given(st.lists(st.binary(max_size=80) | st.sampled_from([orjson.dumps(r) for r in RECORDING_SEEDS[:5]]),
                max_size=5), st.booleans(), st.integers(0, 40))
def test_fuzz_backtest_recording_files(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], gz: bool,
                                       cut: int) -> None:
    body = b"\n".join(lines)
    path = tmp_path_factory.getbasetemp() / ("rec.jsonl.gz" if gz else "rec.jsonl")
    raw = gzip.compress(body) if gz else body
    path.write_bytes(raw[: len(raw) - cut] if gz and cut else raw)  # truncated / corrupt gzip too
    STATS["backtest recording files (.jsonl, .gz)"]["inputs"] += 1
    rec = read_files([path])  # never raises: bad lines and unreadable gzip are listed as rejected
    STATS["backtest recording files (.jsonl, .gz)"]["rejections"] += len(rec.rejected)
    assert all(r.startswith(str(path) + ":") for r in rec.rejected)


# --- 9. log tokenizer and matcher on arbitrary text ---------------------------------------------------

RAW_LINE = (st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))
            | st.sampled_from(["\x00" * 50, "\ud800abc", "\x1b]8;;http://x\x07link", "\x9b31m", "a\rb\r",
                               "password=hunter2 token: abc", "2024-01-01T00:00:00Z ##[error] boom"]))


@FAST
@given(RAW_LINE)
def test_fuzz_tokenizer(line: str) -> None:
    def run() -> None:
        for fn in (clean, redact, template, tokenize):
            out = fn(line)
            assert isinstance(out, str)
        assert template(template(line)) == template(line)  # placeholders are stable

    attempt("log tokenizer (clean/redact/template)", run, (), lambda e: None)


@FAST
@given(st.lists(RAW_LINE, max_size=20) | st.binary(max_size=500).map(lambda b: b.split(b"\n")))
def test_fuzz_matcher(lines: Any) -> None:
    def run() -> None:
        if lines and isinstance(lines[0], bytes):
            hits = ENGINE.matcher.scan(b"\n".join(lines))
        else:
            hits = ENGINE.matcher.match(lines)
        assert all(0 <= h.index < max(len(lines), 1) for h in hits)

    attempt("log matcher (Hyperscan)", run, (), lambda e: None)


# --- 10. guard forward: bytes in, chunks out ---------------------------------------------------------

@FAST
@given(st.lists(st.binary(max_size=120) | st.sampled_from([b"\x00" * 64, b"\xff" * 64, b"\xe2\x82", b"\xac\n",
                                                          b"\x1b[31m", b"\r\n"]), max_size=12),
       st.integers(8, 300), st.integers(1, 6))
def test_fuzz_forward_chunking(blocks: list[bytes], chunk_bytes: int, per_chunk: int) -> None:
    def run() -> None:
        chunks = list(log_chunks(blocks, provider="github", owner="o", repo="r", job_id="1",
                                 chunk_lines_max=per_chunk, chunk_bytes=chunk_bytes))
        n = 1
        for c in chunks:
            assert c.first_line == n
            n += len(c.lines)
            assert len(c.lines) <= per_chunk
            # the lines' JSON stays within chunk_bytes (a line is cut, escapes counted), so the guard
            # never dead-letters a forwarder's chunk for its size
            body = sum(len(orjson.dumps(x)) + 1 for x in c.lines)
            assert body <= chunk_bytes or len(c.lines) == 1 and len(c.lines[0]) <= 8
            assert LogChunk.from_json(c.to_json()) == c
        assert chunks[-1].eof

    attempt("guard forward (bytes -> chunks)", run, (), lambda e: None)


# --- 11. REST API keys file --------------------------------------------------------------------------

KEYS_SEED = {"version": 1, "keys": [{"id": "0123456789ab", "hash": "sha256:" + "0" * 64, "scopes": ["acme/*"],
                                     "created": "2024-01-01T00:00:00Z", "revoked": None}]}


@SLOW
@given(st.data())
def test_fuzz_api_keys_file(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    kind = data.draw(st.integers(0, 9))
    if kind < 6:
        raw = dumps(data.draw(mutated([KEYS_SEED])))
    elif kind < 8:
        raw = data.draw(corrupted(orjson.dumps(KEYS_SEED)))
    else:
        raw = data.draw(st.binary(max_size=100) | st.sampled_from([b"[" * 100_000, b'{"keys": [{"id": "\\ud800"}]}']))
    path = tmp_path_factory.getbasetemp() / "api-keys.json"
    path.write_bytes(raw)
    keys = ApiKeys(path)

    def run() -> None:
        keys.list()
        keys.check("hg_0123456789ab_" + "a" * 43, "github", "acme", "api")

    attempt("REST API keys file", run, (KeyFileError,), lambda e: f"file: {str(e).split(': ')[1][:20]}"
            if str(e).startswith(str(path)) else None)


# --- deterministic hostile inputs --------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<testsuite name="x"><testcase name="&lol9;"/></testsuite>
"""


def _junit(xml: bytes | Path) -> list[Any]:
    return parse_junit(xml, provider="github", owner="acme", repo="api", job_id="7")


def test_junit_billion_laughs_is_refused_fast() -> None:
    """Refused at the DOCTYPE, before one entity is declared, let alone expanded (the time it takes:
    benchmarks/goals.py)."""
    with pytest.raises(JUnitError, match=r"refused unsafe XML \(DTDForbidden: .*DTDForbidden\(name='lolz'"):
        _junit(BILLION_LAUGHS)


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE testsuite [<!ENTITY x SYSTEM "file://{secret}">]>',  # external entity
    '<!DOCTYPE testsuite SYSTEM "file://{secret}">',  # external DTD
    '<!DOCTYPE testsuite [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>',  # parameter entity
])
def test_junit_external_entities_do_not_read_local_files(tmp_path: Path, doctype: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-42")
    xml = (doctype.format(secret=secret) + '<testsuite name="x"><testcase name="&x;"/></testsuite>').encode()
    with pytest.raises(JUnitError) as ei:
        _junit(xml)
    assert "refused unsafe XML" in str(ei.value) and "TOPSECRET" not in str(ei.value)
    for fixture in ("bomb.xml", "xxe.xml"):
        with pytest.raises(JUnitError, match="refused unsafe XML"):
            _junit(FIX / "junit" / fixture)


PY_TAGS = ["!!python/object/apply:os.system ['touch {marker}']",
           "!!python/object/new:os.system ['touch {marker}']", "!!python/name:os.system"]


@pytest.mark.parametrize("tag", PY_TAGS)
def test_yaml_python_tags_are_refused_everywhere(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    pat = tmp_path / "patterns.yml"
    pat.write_text(f"patterns:\n  - id: x\n    category: network\n    regex: {value}\n")
    with pytest.raises(PatternError) as pe:
        load_library([pat], include_builtin=False)
    assert str(pat) in str(pe.value) and "patterns[0].regex" in str(pe.value)
    with pytest.raises(ConfigError) as ce:
        parse_strategies(f"actions:\n  oom_recovery:\n    parameters: {value}\n", "strategies.yml")
    assert "strategies.yml" in str(ce.value) and "actions.oom_recovery.parameters" in str(ce.value)
    cfg = tmp_path / "healing-config.yml"
    cfg.write_text(f"api:\n  host: {value}\n")
    with pytest.raises(ConfigError) as se:
        load_settings(cfg, env={})
    assert str(cfg) in str(se.value)
    assert not marker.exists()


@pytest.mark.parametrize("regex, reason", [
    ("(a+)+$", "nested unbounded quantifiers"), ("(x*)*y", "nested unbounded quantifiers"),
    ("(?:\\w+\\s?)+$", "nested unbounded quantifiers"), ("a{100000}", "too large"),
    ("(?:a{1,50}){1,50}", "multiply"), ("(a)\\1", "back-references"), ("(?=a)b", "look-around"),
])
def test_hostile_regexes_are_refused_with_file_and_key(tmp_path: Path, regex: str, reason: str) -> None:
    pat = tmp_path / "hostile.yml"
    pat.write_text(f"patterns:\n  - id: ok\n    category: oom\n    regex: Killed\n"
                   f"  - id: bad\n    category: network\n    regex: '{regex}'\n")
    with pytest.raises(PatternError) as ei:
        load_library([pat], include_builtin=False)
    assert f"{pat}:7: patterns[1].regex:" in str(ei.value) and reason in str(ei.value)


def test_yaml_aliases_cannot_explode_or_recurse(tmp_path: Path) -> None:
    laughs = "".join(f"      {c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    params = "actions:\n  oom_recovery:\n    parameters:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n" + laughs
    with pytest.raises(ConfigError, match="more than 10000 values"):
        parse_strategies(params, "s.yml")
    with pytest.raises(ConfigError, match="recursive|nested deeper"):
        parse_strategies("actions:\n  oom_recovery:\n    parameters:\n      x: &r [*r]\n", "s.yml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_strategies("actions: " + "[" * 5000, "s.yml")
    with pytest.raises(PatternError, match="nested too deeply"):
        parse_library("patterns: " + "[" * 5000, "p.yml")
    cfg = tmp_path / "healing-config.yml"
    bomb = "a: &a {x: 1, y: 1}\n" + "".join(
        f"{c}: &{c} {{{', '.join(f'k{i}: *{p}' for i in range(10))}}}\n" for p, c in zip("abcdefgh", "bcdefghi"))
    cfg.write_text(bomb)
    with pytest.raises(ConfigError, match="expected a mapping|unknown key"):
        load_settings(cfg, env={})  # refused by name
    # and the line index visits each key node once: 9 top-level keys and their 2 + 8 x 10 children,
    # not the 10**8 paths through the aliases
    assert len(_line_index(bomb)) == 9 + 2 + 8 * 10
    cfg.write_text("api: " + "[" * 5000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(cfg, env={})


def test_a_50_mb_line_is_dead_lettered_or_cut_never_a_crash() -> None:
    line = "x" * (50 << 20)
    raw = LogChunk(provider="github", owner="acme", repo="api", job_id="7", seq=0,  # type: ignore[arg-type]
                   lines=[line], eof=True).to_json()
    out = ingest_log(raw, b"github/acme/api/7")
    assert isinstance(out, DeadLetter) and out.original_size == len(raw)
    assert out.reason.startswith(f"message is {len(raw)} bytes, over the limit of {MAX_CHUNK}")
    del raw, out
    # the forwarder cuts the same line (no newline at all) into chunks the guard accepts
    blocks = (b"y" * (1 << 20) for _ in range(50))
    n_chunks = n_lines = 0
    for c in log_chunks(blocks, provider="github", owner="acme", repo="api", job_id="7"):
        raw = c.to_json()
        assert len(raw) <= MAX_CHUNK
        outputs = ingest_log(raw, b"github/acme/api/7")
        assert not isinstance(outputs, DeadLetter)
        n_chunks += 1
        n_lines += len(c.lines)
    assert n_chunks >= 25 and n_lines >= 100
    # the matcher scans a 50 MB line in one linear pass
    hits = ENGINE.matcher.match(["ERROR: " + line + " Killed"])
    assert all(h.index == 0 for h in hits)  # (how long the scan takes: benchmarks/goals.py)


def test_invalid_utf8_and_nul_bytes_through_the_ingest_step() -> None:
    key = b"github/acme/api/7"
    good = LogChunk(provider="github", owner="acme", repo="api", job_id="7", seq=0,  # type: ignore[arg-type]
                    lines=["ok"], eof=True).to_json()
    bad = good.replace(b'"ok"', b'"o\xff\xfek"')
    out = ingest_log(bad, key)
    assert isinstance(out, DeadLetter) and "not valid JSON/UTF-8" in out.reason
    raw_nul = good.replace(b'"ok"', b'"\\u0000Killed\\u0000", "\\u0000"')
    assert not isinstance(ingest_log(raw_nul, key), DeadLetter)
    # a forwarder decodes invalid UTF-8 with replacement characters: accepted as text
    chunks = list(log_chunks([b"\xff\xfe\x00 Killed\n\xc3(\x00\x00\n"], provider="github", owner="acme",
                             repo="api", job_id="7"))
    assert chunks[0].lines == ["\ufffd\ufffd\x00 Killed", "\ufffd(\x00\x00"]
    assert not isinstance(ingest_log(chunks[0].to_json(), key), DeadLetter)
    raw_bad_key = good
    assert isinstance(ingest_log(raw_bad_key, b"\xff"), DeadLetter)


def test_forward_keeps_multibyte_characters_whole_when_it_cuts() -> None:
    text = "é" * 5000  # 2 bytes each: a cut at an odd byte would split one
    chunks = list(log_chunks([text.encode()], provider="github", owner="o", repo="r", job_id="1", chunk_bytes=1001))
    assert "".join(x for c in chunks for x in c.lines) == text


def test_tokenize_is_linear_on_long_hostile_lines() -> None:
    """Lines built to make a regex try every position (word boundaries, separators, trigger words, no
    match in the end) go through redact/template whole, and the secret at their end is still found.
    The quadratic rules took 26 s for one 20 kB line; benchmarks/goals.py times these ten 100 kB
    lines against the goal of 20 s in all (about 2 s), and pytest-timeout stops a regression here."""
    from healing_guard.patterns.tokenize import template, tokenize

    for unit in ("a.", "a-", "a/", "a@", "x:", "login ", "token ", "mysql ", "curl -u ", "ab://"):
        body = unit * (100_000 // len(unit))
        line = body + " token password://x:y@ login -p"
        redacted = tokenize(line)
        assert redacted.endswith(" token password://[REDACTED]@ login -p"), (unit, redacted[-80:])
        assert "x:y@" not in redacted and len(redacted) < len(line) + 10
        assert template(line).endswith(" token <URL> login -p"), unit


# --- the report (last test of the module) ------------------------------------------------------------

def test_zz_fuzz_report() -> None:
    """Print per-parser counts; run with ``-s`` to see them. Also true when run alone (nothing to say)."""
    if not STATS:
        return
    width = max(len(n) for n in STATS)
    print("\n\nfuzzing: inputs per parser")
    for name, c in STATS.items():
        assert c["crashes"] == 0
        print(f"{name:<{width}}: {c['inputs']:>6} inputs, {c['crashes']} crashes, {c['rejections']:>6} rejections "
              "(all explained)")
        top = ", ".join(f"{k} x{v}" for k, v in REASONS[name].most_common(3))
        if top:
            print(f"{'':<{width}}  most common: {top}")
    print(f"total: {sum(c['inputs'] for c in STATS.values())} inputs, 0 crashes")
