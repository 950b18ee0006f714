"""Tokenizer: platform decoration is stripped, secrets never survive, templates group runs."""

from __future__ import annotations

import pytest

from healing_guard.patterns.tokenize import REDACTED, clean, redact, redact_many, template, tokenize


@pytest.mark.parametrize(
    ("raw", "want"),
    [
    ("\x1b[31;1mERROR\x1b[0m: boom", "ERROR: boom"),
    ("\x1b]8;;https://x\x07link\x1b]8;;\x07 text", "link text"),
    ("2024-01-02T03:04:05.1234567Z ##[error]Process completed with exit code 1.", "Process completed with exit code 1."),
    ("2024-01-02T03:04:05.1234567Z ##[group]Run tests", "Run tests"),
    ("2024-01-02T03:04:05Z ##[endgroup]", ""),
    ("2024-01-02T03:04:05.123Z ##[warning]careful", "careful"),
    ("[2024-01-02 03:04:05] [Pipeline] sh", "sh"),
    ("[2024-01-02T03:04:05.123Z] [Pipeline] { (Build)", "{ (Build)"),
    ("12:34:56 compiling", "compiling"),
    ("[12:34:56.789] compiling", "compiling"),
    ("::error file=a.py,line=3::bad thing", "bad thing"),
    ("::group::Install", "Install"),
    ("section_start:1700000000:build_script\r\x1b[0Kbuilding", "building"),
    ("section_end:1700000000:build_script\r\x1b[0K", ""),
    ("section_start:1700000000:step[collapsed=true]\r\x1b[0KStep", "Step"),
    ("[Pipeline] echo", "echo"),
    ("line with carriage return\r", "line with carriage return"),
    ("progress 10%\rprogress 100%", "progress 100%"),
    ("[INFO] BUILD FAILURE", "[INFO] BUILD FAILURE"),
    ("plain line", "plain line"),
    ],
)
def test_clean(raw: str, want: str) -> None:
    assert clean(raw) == want


def test_clean_keeps_message_timestamps_and_numbers() -> None:
    # Only a *leading* timestamp is decoration; numbers inside the message stay.
    assert clean("Tests run: 5, Failures: 1") == "Tests run: 5, Failures: 1"
    assert clean("2024-01-02T03:04:05Z took 12:34:56 total") == "took 12:34:56 total"


REDACT_CASES = [
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("gho_abcdefghijklmnopqrstuvwxyz0123456789 used", "gho_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("ghs_abcdefghijklmnopqrstuvwxyz0123456789", "ghs_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"),
    ("GITLAB glpat-abcdefghijklmnopqrst", "glpat-abcdefghijklmnopqrst"),
    ("key AKIAABCDEFGHIJKLMNOP in env", "AKIAABCDEFGHIJKLMNOP"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("slack xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"),
    ("-----BEGIN RSA PRIVATE KEY-----", "BEGIN RSA PRIVATE KEY"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "OPENSSH PRIVATE KEY"),
    ("password=hunter2 --verbose", "hunter2"),
    ("DB_PASSWORD: hunter2", "hunter2"),
    ("passwd: s3cr3t!", "s3cr3t!"),
    ("--token=abc123def", "abc123def"),
    ("CLIENT_SECRET=topsecretvalue", "topsecretvalue"),
        ('{"api_key": "abc123xyz"}', "abc123xyz"),
    ("Authorization: Bearer abcdef1234567890abcdef", "abcdef1234567890abcdef"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("curl -H 'authorization: token ghx1234567'", "ghx1234567"),
    ("git clone https://user:pa55w0rd@github.com/o/r.git", "pa55w0rd"),
]


@pytest.mark.parametrize(("raw", "secret"), REDACT_CASES)
def test_redact_removes_secret(raw: str, secret: str) -> None:
    out = redact(raw)
    assert secret not in out
    assert REDACTED in out


def test_redact_many_is_redact_of_each_text() -> None:
    """Runs of clean texts are checked joined; any secret, generated value or key body line anywhere in the
    list must come out as redact() of its own text would."""
    secrets = [raw for raw, _ in REDACT_CASES]
    body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
    texts = [f"svc{i % 7}/tests/test_mod{i}.py::TestCase::test_case_{i}[param-{i}]" for i in range(700)]
    for j, secret in enumerate(secrets):  # ids 0-300
        texts.insert(5 + 13 * j, f"tests/test_x.py::test_login[{secret}]")
    texts[400:400] = [body, "plain"]  # each in a run of its own (runs of 64)
    texts[470:470] = [f"line one\n{body}\nline three"]
    texts[530:530] = ["tests/test_s.py::test_session[SESSION=Zq8vN2pLw7Rt5Ys1Kd4Hj6FmXa93Lq]"]  # generated-looking
    got = redact_many(texts)
    assert got == [redact(t) for t in texts]
    assert sum(g != t for g, t in zip(got, texts)) >= len(secrets)
    assert redact_many([]) == [] and redact_many(["one"]) == ["one"]


def test_redact_fast_path_returns_same_object() -> None:
    line = "collected 12 items; 3 passed"
    assert redact(line) is line


def test_redact_leaves_harmless_lines() -> None:
    assert redact("Secret source: Actions") == "Secret source: Actions"
    assert redact("Tokens processed: 12") == "Tokens processed: 12"
    assert redact("basic functionality works") == "basic functionality works"
    assert redact("see https://github.com/o/r") == "see https://github.com/o/r"


def test_redact_is_idempotent() -> None:
    once = redact("password=hunter2 token=abc")
    assert redact(once) == once


def test_tokenize_is_clean_then_redact() -> None:
    raw = "2024-01-02T03:04:05.1Z ##[error]\x1b[31mpassword=hunter2\x1b[0m"
    assert tokenize(raw) == f"password={REDACTED}"


def test_template_groups_two_runs() -> None:
    a = (
        "FAILED tests/test_io.py::test_read - AssertionError: 3 != 4 at /home/runner/work/a/a/src/io.py:12 "
        "run 123e4567-e89b-12d3-a456-426614174000 sha deadbeef12 took 3.5s from 10.0.0.1:8080 https://x.y/r/1"
    )
    b = (
        "FAILED tests/test_io.py::test_read - AssertionError: 7 != 9 at /builds/grp/b/src/io.py:99 "
        "run 00000000-1111-2222-3333-444444444444 sha 0123abcd99 took 12ms from 192.168.1.20:443 https://x.y/r/2"
    )
    assert template(a) == template(b)
    t = template(a)
    for placeholder in ("<PATH>", "<NUM>", "<UUID>", "<HEX>", "<DURATION>", "<IP>", "<URL>"):
        assert placeholder in t


def test_template_windows_paths_and_idempotence() -> None:
    t = template(r"error in C:\Users\ci\work\file.cs at 0x7ffe1234")
    assert t == "error in <PATH> at <HEX>"
    assert template(t) == t


def test_template_keeps_words() -> None:
    # An all-letter word that happens to be hex-like must not be masked.
    assert template("defaced database") == "defaced database"
