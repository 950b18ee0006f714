"""Normalise raw CI log lines before they are matched, stored or grouped.

Three separate steps, because they serve different consumers:

* :func:`clean` removes what the *platform* adds (colour codes, timestamps, ``##[error]`` markers,
  GitLab section markers, Jenkins ``[Pipeline]`` prefixes) so one pattern library works on logs from
  GitHub Actions, GitLab CI, Jenkins and CircleCI alike.
* :func:`redact` removes what must never leave the job (tokens, keys, passwords): evidence lines are
  written to Kafka, ClickHouse, Slack and tickets, which have wider audiences than the CI log itself.
* :func:`template` masks what differs between runs (numbers, paths, hashes, ids) so the same failure
  groups under one key across runs and repositories.

Everything runs per line on hot paths (millions of lines per job fleet per minute), so every regex is
precompiled and each function takes a cheap early exit when the line cannot need the work.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "clean", "redact", "strip_ansi", "template", "tokenize"]

REDACTED = "[REDACTED]"

# --------------------------------------------------------------------------------------------------
# clean
# --------------------------------------------------------------------------------------------------

# CSI sequences (colours, cursor moves, "erase line"), OSC sequences (hyperlinks, window titles) and
# the two-byte escapes some tools emit. One alternation so a line is scanned once.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ params intermediates final
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL or ST
    r"|\x1b[()][0-9A-Za-z]"  # charset selection
    r"|\x1b[@-Z\\-_]"  # other 2-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)

# GitLab wraps collapsible sections in `section_start:<unix>:<name>[opts]\r\x1b[0K` markers; the
# escape is gone by the time this runs, the `\r` may or may not be.
_GITLAB_SECTION = re.compile(r"section_(?:start|end):\d+:[A-Za-z0-9_.\-]+(?:\[[^\]\r\n]*\])?\r?")

# What may precede the real message, in any order and repeated: timestamps in the common shapes,
# GitHub `##[error]` markers and `::error file=..::` workflow commands, Jenkins `[Pipeline]`.
_PREFIX = re.compile(
    r"(?:"
    # ISO-8601 (GitHub: 2024-01-02T03:04:05.1234567Z), optionally bracketed (Jenkins timestamper)
    r"\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?\]?[ \t]*"
    # bare or bracketed clock time: 12:34:56, [12:34:56.789]
    r"|\[?\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\]?(?:[ \t]+|$)"
    # GitHub log markers
    r"|##\[(?:error|warning|notice|debug|group|endgroup|command|section|info)\][ \t]*"
    # GitHub workflow commands echoed into the log: ::error file=a.py,line=3::message
    r"|::(?:error|warning|notice|debug|group|endgroup|add-mask|set-output|save-state|stop-commands)"
    r"(?:[ \t][^:\r\n]*)?::[ \t]*"
    # Jenkins pipeline step prefix
    r"|\[Pipeline\][ \t]*"
    r")+"
)


#: ANSI escapes in a UTF-8 byte buffer. The 8-bit CSI is U+009B, encoded as C2 9B: a bare 0x9B byte is
#: a UTF-8 continuation byte of ordinary characters and must not be touched.
_ANSI_BYTES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]"
    rb"|\xc2\x9b[0-?]*[ -/]*[@-~]"
)
# CSI alone: almost every escape in a CI log is one (colours), and a regex that starts with one literal
# byte runs several times faster than the whole alternation.
_CSI_BYTES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")


def strip_ansi(buf: bytes) -> bytes:
    """Remove ANSI escapes from a whole buffer at once (C speed). Newlines are never removed, so line
    numbers stay valid."""
    if b"\x1b" in buf:
        buf = _CSI_BYTES.sub(b"", buf)
    # a one-byte search runs at memchr speed; the two-byte one only when it can succeed
    if b"\x1b" in buf or (b"\x9b" in buf and b"\xc2\x9b" in buf):
        buf = _ANSI_BYTES.sub(b"", buf)
    return buf


def clean(line: str) -> str:
    """Strip platform decoration so patterns see only what the tool printed.

    Handles ANSI escapes, carriage-return redraws (progress bars keep only their final state, which is
    what a human sees), GitLab section markers, leading timestamps and CI markers. Cheap checks guard
    each regex because most lines carry at most one kind of decoration.
    """
    if "\x1b" in line or "\x9b" in line:
        line = _ANSI.sub("", line)
    if "\r" in line:
        line = line.rstrip("\r")
        if "section_" in line:
            line = _GITLAB_SECTION.sub("", line)
        if "\r" in line:
            # A redraw: the terminal shows what follows the last carriage return.
            tail = line.rsplit("\r", 1)[1]
            line = tail if tail.strip() else line.replace("\r", "")
    elif "section_" in line:
        line = _GITLAB_SECTION.sub("", line)
    if line[:1] in _PREFIX_FIRST:
        m = _PREFIX.match(line)
        if m is not None:
            line = line[m.end() :]
    return line


# First characters a prefix can start with: lets clean() skip the prefix regex on most lines that have
# no timestamp (e.g. CircleCI output, or lines already cleaned).
_PREFIX_FIRST = frozenset("0123456789[#:")

# --------------------------------------------------------------------------------------------------
# redact
# --------------------------------------------------------------------------------------------------

# Lower-case substrings at least one of which occurs in every line any redaction rule can change. The
# checks are plain `in` tests on the lower-cased line: far cheaper than running the rules.
_TRIGGERS = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "akia",
    "asia",
    "xox",
    "eyj",
    "private key",
    "passw",  # password, passwd (not "pass": every "passed" would pay for the rules)
    "pwd",
    "token",
    "secret",
    "key",
    "auth",
    "bearer",
)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys: the whole marker line goes.
    (re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*"), REDACTED),
    # Provider tokens with recognisable prefixes.
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+"), REDACTED),
    # Credentials in URLs: scheme://user:pass@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # HTTP authorization headers (Basic/Token only after the header name: the bare words are common).
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token|digest)\s+)?[^\s\"']+"),
        r"\1\2 " + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{16,}"), r"\1 " + REDACTED),
    # key=value / key: value for names that end in a secret-ish word (DB_PASSWORD, GITHUB_TOKEN, ...).
    (
        re.compile(
            r"(?i)\b([A-Za-z0-9_.\-]*?(?:password|passwd|pwd|token|secret|api[_\-]?key|access[_\-]?key(?:[_\-]?id)?"
            r"|secret[_\-]?access[_\-]?key|private[_\-]?key|client[_\-]?secret))"
            r"([\"']?\s*[:=]\s*)([\"']?)(?![\"']|\[REDACTED\])[^\s\"'&,;]+"
        ),
        r"\1\2\3" + REDACTED,
    ),
)


def redact(line: str) -> str:
    """Replace secrets with ``[REDACTED]`` before a line can leave the guard.

    Most log lines contain none of the trigger substrings, so they are returned untouched after a few
    substring tests; only candidates pay for the rules.
    """
    low = line.lower()
    for t in _TRIGGERS:
        if t in low:
            break
    else:
        if "@" not in line or "://" not in line:  # credentials in a URL need both
            return line
    for rx, repl in _RULES:
        line = rx.sub(repl, line)
    # The header rule leaves a double space when no scheme word was present.
    return line.replace("  " + REDACTED, " " + REDACTED) if "  " + REDACTED in line else line


# --------------------------------------------------------------------------------------------------
# template
# --------------------------------------------------------------------------------------------------

_TEMPLATE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>()\[\]]+"), "<URL>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TS>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<IP>"),
    # Windows paths (C:\x\y, \\server\share) then POSIX paths (absolute, ./ ../ ~/ or with >= 1 slash).
    (re.compile(r"(?:\b[A-Za-z]:\\|\\\\)[^\s\"'<>|:*?]+"), "<PATH>"),
    (re.compile(r"(?:(?<![\w.<>/\-])(?:~|\.{1,2})?/|\b[\w.@+\-]+/)[\w.@+\-]+(?:/[\w.@+\-]*)*"), "<PATH>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<HEX>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?(?:ms|us|µs|ns|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)\b"), "<DURATION>"),
    (re.compile(r"\b\d+(?:[.,]\d+)*\b"), "<NUM>"),
)


def template(line: str) -> str:
    """Mask run-specific values so the same failure from two runs yields the same string.

    Order matters: compound shapes (UUID, URL, timestamps, IPs, paths) are masked before the numbers
    inside them. Placeholders contain no digits, slashes or hex runs, so templating a template changes
    nothing.
    """
    for rx, repl in _TEMPLATE_RULES:
        line = rx.sub(repl, line)
    return line


def tokenize(line: str) -> str:
    """The form of a line that is stored and shown as evidence: cleaned, then redacted."""
    return redact(clean(line))
