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

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["JOB_EVENT_TEXT", "REDACTED", "TEST_RESULT_TEXT", "clean", "redact", "redact_bytes", "redact_fields",
           "redact_job", "redact_lines", "redact_many", "redact_test_result", "strip_ansi", "template", "tokenize",
           "tokenize_lines"]

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

_LONG_RUN = re.compile(r"[A-Za-z0-9+/_\-]{20}")


def _candidate(line: str) -> str | None:
    """The lower-cased line when a redaction rule may change it, else None (false positives allowed,
    no false negatives; a bare base64 line of a private key's body is checked separately).

    Plain ``in`` tests for trigger substrings are far cheaper than running the rules, and most log lines
    contain none. The common triggers come first; the rarer ones are only looked for when a character
    or pair they all contain is in the line (``_``, ``gh``, ``-``), so a line pays for about as many
    tests as with the original 19 triggers. Written out, not looped over a tuple: ~30 % faster.
    Not "pass" on its own: every "passed" would pay for the rules.
    """
    low = line.lower()
    if ("key" in low or "token" in low or "auth" in low or "secret" in low or "passw" in low or "pwd" in low
            or "bearer" in low or "eyj" in low or "akia" in low or "asia" in low or "xox" in low or "aiza" in low):
        return low
    if "_" in low and ("_pass" in low or "npm_" in low or "k_live_" in low or "k_test_" in low):
        return low
    if "gh" in low and ("ghp_" in low or "gho_" in low or "ghu_" in low or "ghs_" in low or "ghr_" in low):
        return low
    if "github_pat_" in low:  # no "gh" in it: its own test
        return low
    if "-" in low and ("gl" in low and ("glpat-" in low or "gldt-" in low or "glrt-" in low)
                       or "xapp-" in low or "pypi-" in low or "-pass" in low
                       or "-p" in low and ("login" in low or "mysql" in low or "sshpass" in low)
                       or "-u" in low and "curl" in low):
        return low
    if ("sig=" in low or "pass:" in low or "sg." in low or "hf_" in low or "::add-mask::" in low
            or "login" in low or "stdin" in low or "configure" in low or "machine" in low):
        return low
    # credentials in a URL (scheme://user:pass@host) need both; Slack webhooks are URLs too
    if "://" in low and ("@" in low or "hooks.slack.com" in low):
        return low
    return None


_PEM_KIND = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
#: the first line of a private key block (RSA, EC, DSA, OPENSSH, PKCS#8, ENCRYPTED, PGP)
_PEM_BEGIN = re.compile(r"-----BEGIN" + _PEM_KIND)
_PEM_END = re.compile(r"-----END" + _PEM_KIND)
#: names whose value is a secret: DB_PASSWORD, GITHUB_TOKEN, aws_secret_access_key, X-API-Key, ...
_SECRET_NAMES = (
    r"password|passwd|[_\-.]pwd|[_\-]pass|token|secret|api[_\-]?key|access[_\-]?key(?:[_\-]?id)?"
    r"|secret[_\-]?access[_\-]?key|secret[_\-]?key(?:[_\-]?base)?|private[_\-]?key(?:[_\-]?id)?|client[_\-]?secret|_auth"
    r"|account[_\-]?key|shared[_\-]?access[_\-]?key|signing[_\-]?key|encryption[_\-]?key|master[_\-]?key"
)
#: a value: double-quoted (also JSON-escaped \"...\" inside a JSON string), single-quoted or bare
_QUOTED_OR_BARE = r"(\\?\"[^\"\n]*?\\?\"|'[^'\n]*'|[^\s\"'&,;\\<]+)"
#: the same, a bare value running through ``&`` (cut back in a URL's query string by _named_value)
_QUOTED_OR_BARE_AMP = r"(\\?\"[^\"\n]*?\\?\"|'[^'\n]*'|[^\s\"',;\\<]+)"
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
#: a value that names where the secret is, not the secret: ${{ secrets.X }}, $VAR, ${VAR}, "$VAR", %VAR%
_REFERENCE = r"|[\"']?\$\{\{|[\"']?\$\{?[A-Za-z_][A-Za-z0-9_]*\}?(?:[\s\"',;]|$)|%[A-Za-z_][A-Za-z0-9_]*%"
_SEPARATORS = re.compile(r"[\-_]+")
#: a line that is one base64 token of 40+ characters with upper case, lower case and digits, optionally
#: after one short prefix token (a timestamp, `+`, `remote:`): a private key's body line. Lower-case hex
#: (commit and content hashes) has no upper case and is left alone.
_B64_BODY = re.compile(
    r"^((?:[^\s]{1,40}[ \t]+)?[ \t]*)"
    r"(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[0-9])"
    r"[A-Za-z0-9+/]{40,}={0,2}([ \t\r]*)$",
    re.M,
)
_BODY_REPL = r"\1" + REDACTED + r"\2"
_B64_END_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r")


def _redacted(m: re.Match[str], v: str) -> str:
    """The match's groups before its last, then ``v`` replaced by ``[REDACTED]`` inside v's own quotes."""
    q = '\\"' if v.startswith('\\"') else v[0] if v[:1] in ("'", '"') else ""
    return "".join(m.group(i) or "" for i in range(1, m.lastindex or 0)) + q + REDACTED + q


def _keep_quotes(m: re.Match[str]) -> str:
    """``name<sep>value`` -> ``name<sep>[REDACTED]``, keeping the value's quotes."""
    return _redacted(m, m.group(m.lastindex or 0))


def _named_value(m: re.Match[str]) -> str:
    """A secret-named value: all of a bare value, ``&`` included (``DB_PASSWORD=first&second``), except in
    a URL's query string, where ``&`` starts the next parameter."""
    v = m.group(m.lastindex or 0)
    rest = ""
    if "&" in v and v[:1] not in ("'", '"', "\\"):
        before = m.string[:m.start()]
        last = before.rsplit(None, 1)[-1] if before.strip() else ""
        if "?" in last or "&" in last:
            v, _, tail = v.partition("&")
            rest = "&" + tail
    return _redacted(m, v) + rest


def _entropy(v: str) -> float:
    n = len(v)
    return -sum(c / n * math.log2(c / n) for c in Counter(v).values())


def _random_looking(v: str) -> bool:
    """A value that looks generated rather than written: long, letters and digits mixed, no word, path or
    host shape, not a hex digest (commit, image and cache hashes are not secrets)."""
    if len(v) < 20 or "/" in v and "+" not in v or "." in v or v.startswith("$") or "[REDACTED]" in v:
        return False
    if "-" in v or "_" in v:  # words and ids joined (linux-node-<hash>, feature_branch_name): judge the longest part
        v = max(_SEPARATORS.split(v), key=len)
        if len(v) < 20:
            return False
    if _HEX.fullmatch(v) or not any(c.isdigit() for c in v) or not any(c.isalpha() for c in v):
        return False
    if not (any(c.isupper() for c in v) and any(c.islower() for c in v)) and len(v) < 32:
        return False
    return _entropy(v) >= (4.0 if len(v) < 32 else 3.7)


#: a value that looks generated in a NAME=value, --option value, header or URL-parameter position
_GENERATED = re.compile(r"((?:\b[A-Za-z_][A-Za-z0-9_]{2,}=|(?<![\w\-])--[a-z][a-z0-9\-]{2,}(?:=|[ \t]+)"
                        r"|^[ \t]*[A-Z][A-Za-z0-9\-]{2,}:[ \t]+|[?&][A-Za-z_][\w\-]*=)[\"']?)"
                        r"([A-Za-z0-9+/_\-]{20,}={0,2})(?![\w+/=\-])")
_GENERATED_GATES = ("=", ": ", "--")


def _maybe_generated(line: str) -> bool:
    """Whether _GENERATED can match (cheap tests first): a separator and a run of 20 value characters."""
    return (len(line) >= 22 and any(g in line for g in _GENERATED_GATES)
            and _LONG_RUN.search(line) is not None)


def _if_random(m: re.Match[str]) -> str:
    v, name = m.group(2), m.group(1).lower()
    if any(w in name for w in _DIGEST_NAMES) or _DIGEST_VALUE.match(v):
        return m.group(0)  # a digest or a request id: random, and meant to be seen
    return m.group(1) + REDACTED if _random_looking(v) else m.group(0)


#: names whose random-looking values are digests or ids (integrity=, md5=, X-Amz-Cf-Id:, x-request-id:)
_DIGEST_NAMES = ("integrity", "sha", "md5", "hash", "digest", "checksum", "etag", "-id", "_id", "id:", "id=",
                 "request", "trace", "span", "nonce", "cache")
_DIGEST_VALUE = re.compile(r"(?i)(?:sha(?:1|224|256|384|512)|md5|blake2b?)[\-:_]")


_D = TypeVar("_D")
_Repl = str | Callable[[re.Match[str]], str]
#: (gates, regex, replacement): a rule runs only when one of its lower-case gate substrings is in the
#: line (no gates: always), so a candidate line pays for the few rules that can apply to it
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], _Repl], ...] = (
    # PEM private keys: from the BEGIN marker to the END marker when both are in the text (a message or
    # a payload of many lines), else to the end of the text (one log line: the marker line goes).
    (("private key",), re.compile(r"-----BEGIN" + _PEM_KIND + r"(?:.*?-----END" + _PEM_KIND + r"|.*)", re.S),
     REDACTED),
    (("private key",), _PEM_END, REDACTED),
    # Provider tokens with recognisable prefixes.
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (("glpat-", "gldt-", "glrt-"), re.compile(r"\bgl(?:pat|dt|rt)-[A-Za-z0-9_\-]{20,}"), REDACTED),
    (("akia", "asia"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (("xox", "xapp-"), re.compile(r"\bxox[abeoprs]-[A-Za-z0-9\-]{10,}|\bxapp-\d-[A-Za-z0-9\-]{10,}"), REDACTED),
    (("hooks.slack.com",), re.compile(r"(https://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_\-]+"),
     r"\1" + REDACTED),
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+"), REDACTED),
    (("npm_", "pypi-", "aiza", "k_live_", "k_test_"),
     re.compile(r"\bnpm_[A-Za-z0-9]{36}\b|\bpypi-AgE[A-Za-z0-9_\-]{20,}|\bAIza[0-9A-Za-z_\-]{35}"
                r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"), REDACTED),
    (("sg.", "hf_"), re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{20,64}|\bhf_[A-Za-z0-9]{30,}"), REDACTED),
    # an Azure SAS URL's signature; a docker config.json's registry credentials
    (("sig=",), re.compile(r"(?i)([?&;]sig=)[^&\s\"'<>]+"), r"\1" + REDACTED),
    (('auth"', 'auth\\"', "identitytoken", "registrytoken"),
     re.compile(r'(?i)(\\?"(?:auth|identitytoken|registrytoken)\\?"[ \t]*:[ \t]*\\?")[^"\\]+(\\?")'),
     r"\1" + REDACTED + r"\2"),
    # openssl -passin pass:VALUE / -passout pass:VALUE (env:NAME and file:PATH name no secret)
    (("pass:",), re.compile(r"(-pass(?:in|out)?[ \t]+[\"']?pass:)[^\s\"']+"), r"\1" + REDACTED),
    # echo VALUE | vault login - / docker login --password-stdin (a $VARIABLE is no secret in the log)
    (("login", "stdin"),
     re.compile(r"(\b(?:echo[ \t]+(?:-n[ \t]+)?|printf[ \t]+(?:'%s'|\"%s\"|%s)[ \t]+))([\"']?)(?![$\[])([^\s\"'|]+)\2"
                r"([ \t]*\|[^|\n]*?(?:\blogin\b|--password-stdin))"), r"\1\2" + REDACTED + r"\2\4"),
    # aws configure set aws_secret_access_key VALUE; a .netrc line: machine HOST login USER password VALUE
    (("configure",), re.compile(r"(?i)(\baws[ \t]+configure[ \t]+set[ \t]+\S*(?:secret|token|key)\S*[ \t]+)(?![$\[])"
                                + _QUOTED_OR_BARE), _keep_quotes),
    (("machine",), re.compile(r"(\bmachine[ \t]+\S+[^\n]*?\bpassword[ \t]+)(?![$\[])[^\s\"']+"), r"\1" + REDACTED),
    # the value a GitHub Actions step asked the runner to mask, where the command itself is printed
    (("::add-mask::",), re.compile(r"(::add-mask::)(?![$*])\S.*"), r"\1" + REDACTED),
    # Credentials in URLs: scheme://user:pass@host
    (("://",), re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31}://)[^/\s:@]{0,256}:[^/\s@]{1,256}@"), r"\1" + REDACTED + "@"),
    # HTTP authorization headers (Basic/Token only after the header name: the bare words are common).
    (
        ("authorization",),
        re.compile(r"(?i)\b((?:proxy-)?authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)"
                   r"(?:(bearer|basic|token|digest)[ \t]+)?[^\s\"'\\]+"),
        r"\1\2 " + REDACTED,
    ),
    (("bearer",), re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{16,}"), r"\1 " + REDACTED),
    # <password>...</password> in XML (Maven settings.xml, NuGet.config)
    (("<",), re.compile(r"(?i)(<(?:password|passwd|secret|token|api[_\-]?key|client[_\-]?secret)>)[^<\n]*(</)"),
     r"\1" + REDACTED + r"\2"),
    # Command-line options: --password VALUE, --client-secret=VALUE (never --password-stdin)
    (
        ("--",),
        re.compile(r"(?i)((?<![\w\-])--(?:[a-z0-9]+[_\-])*(?:password|passwd|token|secret|api[_\-]?key"
                   r"|access[_\-]?key|secret[_\-]?key|client[_\-]?secret|auth[_\-]?token)(?:[ \t]+|[ \t]*=[ \t]*))"
                   r"(?![\-\[<|$])" + _QUOTED_OR_BARE),
        _keep_quotes,
    ),
    # docker/podman/helm login -p VALUE; mysql -pVALUE / -p'VALUE' (-p alone prompts: left alone; case-
    # sensitive, -P is the port); sshpass -p VALUE; curl -u user:VALUE
    (("login",), re.compile(r"(?i)(\blogin\b[^\n]{0,200}?[ \t]-p(?:[ \t]+|=))(?![\-\[])" + _QUOTED_OR_BARE), _keep_quotes),
    (("mysql",), re.compile(r"(\bmysql(?:dump|admin|sh|import|slap)?\b[^\n]{0,200}?[ \t]-p)(?=[^\s])" + _QUOTED_OR_BARE),
     _keep_quotes),
    (("sshpass",), re.compile(r"(\bsshpass[ \t]+(?:-[a-oq-zA-Z][ \t]+)*-p[ \t]*)" + _QUOTED_OR_BARE), _keep_quotes),
    (("curl",), re.compile(r"(?i)(\bcurl\b[^\n]{0,200}?[ \t](?:-u|--user)(?:[ \t]+|=)[\"']?[^\s:\"']+:)[^\s\"']+"),
     r"\1" + REDACTED),
    # npm config set //registry/:_authToken VALUE
    (("_auth",), re.compile(r"(?i)(\b_auth(?:token)?[ \t]+)(?![=:\[])([^\s\"']+)"), r"\1" + REDACTED),
    # key=value / key: value / "key": "value" for names that end in a secret-ish word (DB_PASSWORD,
    # GITHUB_TOKEN, ...). `::` is not a separator (pytest ids: tests/x.py::TestToken::test_y), nor `==`.
    # The match starts at the secret-ish word, not at the name's start (DB_ stays where it is): a
    # leading [A-Za-z0-9_.-]* would be tried at every word boundary, quadratic on a long hostile line.
    (
        ("passw", "pwd", "_pass", "-pass", "token", "secret", "key", "_auth"),
        re.compile(r"(?i)(?<!:)((?:" + _SECRET_NAMES + r"))(\\?[\"']?[ \t]*(?:=|:(?=[\s\"'\\]|$))(?![:=])[ \t]*)"
                   r"(?!\[REDACTED\]|\\?[\"']\[REDACTED\]|\[secure\]|\[MASKED\]|\*{3}[\s\"']|\*{3}$" + _REFERENCE + r")"
                   + _QUOTED_OR_BARE_AMP),
        _named_value,
    ),
    # Values that look generated (long, mixed letters and digits, high entropy), whatever their name, in
    # the places a secret is handed over: NAME=value, --option value, a header's value, a URL parameter
    (_GENERATED_GATES, _GENERATED, _if_random),
    # the body lines of a private key block, when they reach redact() one line at a time
    ((), _B64_BODY, _BODY_REPL),
)


def redact(line: str) -> str:
    """Replace secrets with ``[REDACTED]`` before a line can leave the guard.

    Most log lines contain none of the trigger substrings, so they are returned untouched after a few
    substring tests; only candidates pay for the rules. Works on one line or on a text of many (a test
    failure message, a dead letter's payload): a private key block is then removed from BEGIN to END.
    """
    low = _candidate(line)
    if low is None:
        # no trigger word: only a generated-looking value (its own rule alone, not the whole list) or a
        # key's body line can be a secret here
        if _maybe_generated(line):  # the two rules without a trigger word, in the rule list's order
            return _B64_BODY.sub(_BODY_REPL, _GENERATED.sub(_if_random, line))
        if len(line) >= 40 and line[-1] in _B64_END_CHARS and " " not in line[-40:]:
            # maybe a key's body line: one anchored regex, not the whole rule list
            return _B64_BODY.sub(_BODY_REPL, line) if _B64_BODY.search(line) else line
        return line
    out = _apply_rules(line, low)
    if out is not line and ("$" in line or "***" in line or "[MASKED]" in line or "<" in line or "{" in line
                            or "your" in low):
        return _keep_references(line, out)
    return out


def _apply_rules(line: str, low: str) -> str:
    """The rules whose gates are in ``low`` (the lower-cased line), applied in order."""
    for gates, rx, repl in _RULES:
        if not gates or any(g in low for g in gates):
            line = rx.sub(repl, line)
    # The header rule leaves a double space when no scheme word was present.
    if "  " + REDACTED in line:
        line = line.replace("  " + REDACTED, " " + REDACTED)
    return line


#: what stands in a log where a secret's value would be, but is not one: a shell or CI variable reference
#: (``$TOKEN``, ``${DB_PASSWORD:?missing}``, ``$(cat key)``, ``$env:TOKEN``), the platform's own mask
#: (an upper-case name, as environment variables are: ``$ecretPass`` is more likely a password), or a
#: placeholder in help text, docs and templates (group ``ph``; its text in ``in``..``in4``): ``<key>``,
#: ``<your-token>``, ``<API_KEY>``, ``{token}``, ``{{ secrets.X }}``, ``${{ secrets.GITHUB_TOKEN }}``,
#: ``YOUR_TOKEN``, ``your-api-key`` (one case throughout: ``Your_Pass1`` is more likely a password).
_REFERENCE_VALUE = re.compile(
    r"\$(?:\{[A-Za-z_]\w*(?:[:?=+-][^}]*)?\}|\([^)]*\)|(?:env:)?[A-Z_][A-Z0-9_]*)|\*{3,}|\[MASKED\]"
    r"|(?P<ph><(?P<in>[A-Za-z][\w.\- ]{0,60})>|\$?\{\{(?P<in2>[^{}\n]{1,200})\}\}|\{(?P<in3>\w{0,60})\}"
    r"|(?P<in4>YOUR_[A-Z0-9_]*[A-Z0-9]|your[_\-][a-z0-9_\-]*[a-z0-9]))"
)
#: what may follow a reference inside the value a rule replaced (``Bearer <key>`` + a closing backtick)
_CLOSERS = "`'\")]}.,;:!?"
_WORDS = re.compile(r"[\s.]+")


def _reference_at(raw: str, pos: int, end: int) -> bool:
    """Whether ``raw[pos:end]``, a value a rule replaced, is only a reference, mask or placeholder.

    The reference starts the value and covers it (a placeholder may also run on past it: ``{{`` of
    ``{{ secrets.X }}``, a bare value ending at the space), or leaves only closing punctuation. A
    placeholder's text must itself be no secret: ``<ghp_...>`` is a token in brackets."""
    m = _REFERENCE_VALUE.match(raw, pos)
    if m is None or m.end() < end and raw[m.end():end].strip(_CLOSERS):
        return False
    if m.group("ph") is None:
        return True
    text = m.group("in") or m.group("in2") or m.group("in3") or m.group("in4") or ""
    return _secret_free(text)


def _secret_free(text: str) -> bool:
    """No rule changes ``text`` and no word of it looks generated (the rules alone: no reference is put
    back here, so this never recurses)."""
    if any(_random_looking(w) for w in _WORDS.split(text)):
        return False
    low = _candidate(text)
    if low is None:
        return _B64_BODY.sub(_BODY_REPL, _GENERATED.sub(_if_random, text)) == text
    return _apply_rules(text, low) == text


def _keep_references(raw: str, out: str) -> str:
    """``out`` with each ``[REDACTED]`` that replaced only a variable reference, a platform mask or a
    placeholder put back.

    The rules only ever replace a value with ``[REDACTED]``, so the text between two of them in ``out`` is
    the original's; the value each replaced is found by locating that text in ``raw``."""
    parts = out.split(REDACTED)
    if not raw.startswith(parts[0]):
        return out
    pos = len(parts[0])
    rebuilt = [parts[0]]
    for following in parts[1:]:
        end = raw.find(following, pos) if following else len(raw)
        if end < 0:
            return out
        value = raw[pos:end]
        rebuilt.append(value if value and _reference_at(raw, pos, end) else REDACTED)
        rebuilt.append(following)
        pos = end + len(following)
    return "".join(rebuilt)


def _pem_body_line(line: str) -> bool:
    s = line.strip()
    return bool(s) and (s == REDACTED or _B64_CHARS.fullmatch(s) is not None)


_B64_CHARS = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# headers an encrypted PEM block may carry between BEGIN and the body
_PEM_HEADER = re.compile(r"\s*(?:Proc-Type|DEK-Info|Comment|Version|Hash):")


def redact_lines(lines: Iterable[str]) -> list[str]:
    """:func:`redact` for consecutive lines of one log, which also knows about private key blocks.

    One line at a time a key's body line is only recognisable by its shape (a long base64 line, see
    ``_B64_BODY``); the short last line of a body is not. Here every line between a BEGIN and its END
    marker goes, and so do base64 lines right before an END marker whose BEGIN came earlier than
    ``lines`` (a log's tail starting inside a key).
    """
    out: list[str] = []
    inside = False
    for line in lines:
        if "PRIVATE KEY" in line and ("-----BEGIN" in line or "-----END" in line):
            if _PEM_BEGIN.search(line):
                inside = _PEM_END.search(line) is None
            elif _PEM_END.search(line):
                if not inside:  # BEGIN not seen: the base64 lines just before are its body
                    i = len(out)
                    while i > 0 and _pem_body_line(out[i - 1]):
                        i -= 1
                    out[i:] = [REDACTED] * (len(out) - i)
                inside = False
            out.append(redact(line))
            continue
        if inside:
            if not line.strip() or _pem_body_line(line) or _PEM_HEADER.match(line):
                out.append(REDACTED if line.strip() else line)
                continue
            inside = False  # not a key after all (a truncated block): back to normal lines
        out.append(redact(line))
    return out


#: JSON string values that look like a key's body line (in a payload, lines are JSON strings)
_JSON_B64 = re.compile(
    r"(?<=\")(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[0-9])[A-Za-z0-9+/]{40,}={0,2}(?=\\?\")"
)


_PAYLOAD_LINES = re.compile(r'(\n|(?<!\\)",[ \t]*")')


def redact_bytes(raw: bytes) -> tuple[bytes, bool]:
    """Redact a raw message payload (a dead letter's original bytes) without losing anything else.

    The bytes are decoded as UTF-8 with ``surrogateescape``, which maps every byte sequence, valid
    UTF-8 or not, to a string and back unchanged; only the secrets differ. Returns the bytes and
    whether anything was redacted.
    """
    if not raw:
        return raw, False
    text = raw.decode("utf-8", "surrogateescape")
    # one piece per log line, also inside a JSON payload (a chunk's lines are one JSON line): the rules
    # then run on line-sized text (a rule scanning to the end of its line stays linear), and a private
    # key's lines are recognised as consecutive lines
    pieces = _PAYLOAD_LINES.split(text)
    pieces[0::2] = redact_lines(pieces[0::2])
    red = "".join(pieces)
    if "\"" in red and len(red) >= 42:
        red = _JSON_B64.sub(REDACTED, red)
    if red == text:
        return raw, False
    return red.encode("utf-8", "surrogateescape"), True


def redact_many(texts: list[str]) -> list[str]:
    """:func:`redact` of each of many short texts (a batch's test ids): a run of texts in which no rule can
    change anything, the usual case, is checked once, joined, instead of text by text."""
    out = list(texts)
    _redact_runs(texts, out, 0, len(texts), 64)
    return out


def _redact_runs(texts: list[str], out: list[str], lo: int, hi: int, size: int) -> None:
    for s in range(lo, hi, size):
        e = min(s + size, hi)
        if e - s > 1 and _untouched("\n".join(texts[s:e])):
            continue
        if e - s > 8:  # something in this run may be a secret: look closer
            _redact_runs(texts, out, s, e, 8)
        else:
            for i in range(s, e):
                out[i] = redact(texts[i])


def _untouched(text: str) -> bool:
    """Whether :func:`redact` leaves ``text`` and every line of it as they are, for sure: no trigger word,
    no generated-looking value, no line shaped like a key's body (each test only gets weaker on a part)."""
    return (_candidate(text) is None and not _maybe_generated(text)
            and (_B64_RUN not in text.translate(_B64_MARK) or _B64_BODY.search(text) is None))


#: what any key body line has (_B64_BODY): a run of 40 base64 characters, found as a run of 40 marks once
#: each base64 character is replaced by the mark (a \x01 of the text's own only adds false alarms)
_B64_MARK = str.maketrans(dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "\x01"))
_B64_RUN = "\x01" * 40


#: the free-text fields of a TestResult (ci.tests): parametrized test ids carry argument values,
#: assertion messages quote whatever was compared
TEST_RESULT_TEXT = ("test_id", "message", "changed_files")
#: the free-text fields of a JobEvent (ci.jobs): a job named after a command line, a branch named after
#: a ticket, a URL with credentials
JOB_EVENT_TEXT = ("job_name", "workflow", "branch", "url", "run_id", "runner_labels")


def redact_fields(obj: _D, *names: str) -> _D:
    """A dataclass ``obj`` with :func:`redact` applied to its named ``str`` and ``list[str]`` fields
    (None stays None). Returns ``obj`` itself when nothing needed redacting."""
    changes: dict[str, Any] = {}
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, str):
            r = redact(v)
            if r != v:
                changes[name] = r
        elif isinstance(v, list):
            rs = [redact(x) if isinstance(x, str) else x for x in v]
            if rs != v:
                changes[name] = rs
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]


def redact_job(ev: _D) -> _D:
    """A JobEvent with secrets removed from its free-text fields (the same object when there were none)."""
    return redact_fields(ev, *JOB_EVENT_TEXT)


def redact_test_result(r: _D) -> _D:
    """A TestResult with secrets removed from its test id (parametrized ids carry argument values),
    failure message and changed files (the same object when there were none)."""
    return redact_fields(r, *TEST_RESULT_TEXT)


# --------------------------------------------------------------------------------------------------
# template
# --------------------------------------------------------------------------------------------------

_TEMPLATE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://[^\s\"'<>()\[\]]+"), "<URL>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TS>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<IP>"),
    # Windows paths (C:\x\y, \\server\share) then POSIX paths (absolute, ./ ../ ~/ or with >= 1 slash).
    (re.compile(r"(?:\b[A-Za-z]:\\|\\\\)[^\s\"'<>|:*?]+"), "<PATH>"),
    (re.compile(r"(?:(?<![\w.<>/\-])(?:~|\.{1,2})?/|\b[\w.@+\-]{1,255}/)[\w.@+\-]+(?:/[\w.@+\-]*)*"), "<PATH>"),
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


def tokenize_lines(lines: Iterable[str]) -> list[str]:
    """:func:`tokenize` for consecutive lines of one log (a tail): private key blocks go whole."""
    return redact_lines(clean(x) for x in lines)
