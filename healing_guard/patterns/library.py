"""The pattern library: which log lines point at which failure category.

Patterns come from the packaged ``builtin.yml`` plus users' files (the product's pattern library YAML),
in either of two formats: a list of ``{id, category, regex, ...}`` entries (the built-in library's), or
the product document's mapping of named patterns ``NAME: {regex, indicators, remediation}`` (``named.py``).
User files are untrusted input that ends up inside one shared Hyperscan database on every worker, so
loading is strict: every pattern is checked on its own, with the same flags the matcher uses, and a
refusal names the file, the line and the key so the author can fix it without guessing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hyperscan
import yaml

from .hs_cache import compile_database

from healing_guard.schemas.records import CATEGORIES

if TYPE_CHECKING:
    from .named import Remediation

__all__ = [
    "BUILTIN_FILE",
    "check_regex",
    "STEP_CATEGORY",
    "STEP_MARKERS",
    "EXIT_CATEGORY",
    "ERROR_CATEGORY",
    "DETAIL_CATEGORY",
    "MARKER_CATEGORIES",
    "COMMAND_CATEGORY",
    "PATTERN_CATEGORIES",
    "Pattern",
    "PatternError",
    "hs_flags",
    "load_library",
    "parse_library",
]

BUILTIN_FILE = "builtin.yml"

#: Categories a pattern may name. ``unknown`` is what the classifier says when nothing matched; a
#: pattern that "proves" it would only add noise.
PATTERN_CATEGORIES = tuple(c for c in CATEGORIES if c != "unknown")

_PATTERN_KEYS = frozenset(
    {"id", "category", "regex", "confidence", "indicators", "remediation", "description", "caseless"}
)
_TOP_KEYS = frozenset({"patterns", "version"})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
_DEFAULT_CONFIDENCE = 0.8
_MAX_REGEX_LEN = 2000
#: largest count of a bounded repeat (``x{n}``, ``x{n,m}``), and of nested ones multiplied together:
#: Hyperscan compiles a bounded repeat into states, so ``.{30000}`` costs seconds of compile time and
#: memory on every worker; log patterns need a few dozen at most
MAX_REPEAT = 1000

# Constructs that need backtracking (back-references) or look-around. Hyperscan refuses them too, but
# with a message that does not say which key or why; checking first gives a clearer error.
_ESCAPED = re.compile(r"\\.")
_UNBOUNDED = (
    (re.compile(r"\\[1-9]|\\k[<{']|\(\?P="), "back-references are not allowed (they need unbounded backtracking)"),
    (re.compile(r"\(\?<?[=!]"), "look-around assertions are not allowed (use a plain alternative instead)"),
    (re.compile(r"\(\?>|[*+?}][+]"), "atomic groups and possessive quantifiers are not supported"),
    (re.compile(r"\(\?[R0-9]|\(\?&|\\g[<{'0-9-]"), "recursion and subroutine calls are not allowed"),
)


@dataclass(frozen=True)
class Pattern:
    """One library entry: a regex that, when it matches a log line, is evidence for ``category``.

    ``confidence`` is how strongly one matching line supports the category on its own; generic
    consequence lines ("exit code 1") get low values so specific root causes win.
    """

    id: str
    category: str
    regex: str
    confidence: float
    indicators: tuple[str, ...] = ()
    remediation: str | None = None
    description: str = ""
    caseless: bool = False
    #: what the planner does when this pattern decides a diagnosis (the named format's ``remediation``
    #: entries, see named.py); ``remediation`` above is the same in words. None: the category's own answer
    remedy: Remediation | None = None


#: Pseudo-category of the step markers: lines where a CI step (GitHub Actions `##[group]Run`, a GitLab
#: section, a Jenkins stage) begins. They are not evidence; they tell the classifier where the step that
#: failed (the last one) starts, so its lines count as "at the end" however long the post-job cleanup.
STEP_CATEGORY = "_step"
#: where a platform says the job (or its failing step) stopped: see classify/locate.py
EXIT_CATEGORY = "_exit"
#: a line that says error, failed, exception...: the locator keeps the last few before the exit
ERROR_CATEGORY = "_err"
#: a command a step runs, as the platform echoes it (GitHub "Run x", a shell's "$ x", a trace's "+ x")
COMMAND_CATEGORY = "_cmd"
#: a line that starts a failure's details in any ecosystem (a compiler's ``file:line:`` diagnostic, a
#: test runner's numbered failure, an exception's first line, a linter's cross): the locator keeps the
#: first few of the failing step, where a person reading the log starts reading
DETAIL_CATEGORY = "_detail"
#: categories of marker patterns: their hits locate things in the log and are never evidence
MARKER_CATEGORIES = frozenset({STEP_CATEGORY, EXIT_CATEGORY, ERROR_CATEGORY, COMMAND_CATEGORY, DETAIL_CATEGORY})

STEP_MARKERS: tuple[Pattern, ...] = (
    Pattern("_step.github", STEP_CATEGORY, r"##\[group\]Run ", 0.0),
    Pattern("_step.gitlab", STEP_CATEGORY, r"section_start:\d+:(?:step_script|build_script|script|after_script|[a-z_]*_script)", 0.0),
    Pattern("_step.jenkins", STEP_CATEGORY, r"\[Pipeline\] \{ \(", 0.0),
    # the platforms' own words for a failed step or job (GitHub, GitLab, Jenkins, CircleCI, Travis, and a
    # platform's time limit or lost runner)
    Pattern("_exit.github", EXIT_CATEGORY, r"##\[error\]Process completed with exit code [1-9]", 0.0),
    Pattern("_exit.gitlab", EXIT_CATEGORY, r"ERROR: Job failed", 0.0),
    Pattern("_exit.jenkins", EXIT_CATEGORY, r"script returned exit code [1-9]|Build step '[^']*' marked build as failure", 0.0),
    Pattern("_exit.circleci", EXIT_CATEGORY, r"Exited with code (?:exit status )?[1-9]", 0.0),
    Pattern("_exit.travis", EXIT_CATEGORY, r"The command \".*\" (?:failed and )?exited with [1-9]", 0.0),
    Pattern("_exit.platform", EXIT_CATEGORY,
            r"has exceeded the maximum execution time|The runner has received a shutdown signal"
            r"|lost communication with the server|No output has been received in the last"
            r"|Too long with no output|execution took longer than", 0.0),
    Pattern("_cmd.github", COMMAND_CATEGORY, r"##\[group\]Run \S", 0.0),
    Pattern("_cmd.shell", COMMAND_CATEGORY, r"^\$ \S", 0.0),
    Pattern("_cmd.trace", COMMAND_CATEGORY, r"^\+ \S", 0.0),
    Pattern("_err.generic", ERROR_CATEGORY,
            r"\berror\b|\berr!|\bfatal\b|\bfailed\b|\bfailure\b|\bfail\b|exception\b|traceback|\bpanic"
            r"|assertion|\bcannot\b|could not|couldn't|unable to|not found|no such file|permission denied"
            r"|refused|timed? ?out\b|\bkilled\b|segmentation fault|\baborted\b|undefined reference", 0.0,
            caseless=True),
    # where a failure's details start: formats shared by many tools, none of them one project's words
    # (unanchored, so Hyperscan alone decides: an anchored pattern's candidates cost a Python check each)
    Pattern("_detail.file_line", DETAIL_CATEGORY,  # path/file.ext:12[:3]: msg, File.cs(12,3): msg, File.java:[12,3] msg
            r"[\w./\\$-]\.[A-Za-z][\w$]*(?::\d+(?::\d+)?:\s|\(\d+,\d+\):?\s|:\[\d+,\d+\]\s|: \d+: \S)", 0.0),
    # a finding under its file's name ("  12:5  error  message  rule", stylelint, eslint's stylish format)
    Pattern("_detail.line_col", DETAIL_CATEGORY, r"^\s*\d{1,6}:\d{1,4}\s+\S", 0.0),
    Pattern("_detail.numbered", DETAIL_CATEGORY, r"  \d{1,4}\)(?: \S|[ \t]*$)", 0.0),  # "  1) test name" (mocha, rspec, minitest)
    Pattern("_detail.failed_item", DETAIL_CATEGORY, r"^\s*\[-\] \S", 0.0),  # [-] a failed item
    Pattern("_detail.cross", DETAIL_CATEGORY, "\u2716|\u2717|\u2718|\u2715", 0.0),  # a failed item's cross
    Pattern("_detail.exception", DETAIL_CATEGORY,
            r"^Traceback \(most recent call last\)|^Exception in thread |^\*\* \(\w+"
            r"|^\s*(?:[\w$]+\.)*[\w$]*(?:Error|Exception)(?: \[[^\]]*\])?:\s", 0.0),
    Pattern("_detail.test", DETAIL_CATEGORY,
            r"^(?:FAIL|ERROR): \S+ \(|^FAIL\s+\S|^FAILED\b|--- FAIL: |^_{3,} \S.* _{3,}$|^={3,} (?:FAILURES|ERRORS) ={3,}"
            r"|^\s*(?:Failure|Error):\s*$|^\s*[\w.-]+ FAILED\s*$|\S failed on line \d+\s*$"
            r"|\)\s+Time elapsed: [\d.]+ s(?:ec)?\s+<<< (?:FAILURE|ERROR)!", 0.0),
    Pattern("_detail.parse", DETAIL_CATEGORY,  # a YAML parser's error (psych, PyYAML, SnakeYAML)
            r"while (?:parsing|scanning) an? (?:flow|block|simple|quoted|plain|anchor|alias|directive|tag)", 0.0),
    Pattern("_detail.expected", DETAIL_CATEGORY, r"\bexpected\b.*\b(?:but (?:was|got)|got|actual)\b", 0.0,
            caseless=True),
    Pattern("_detail.diff", DETAIL_CATEGORY, r"^diff --git ", 0.0),  # a check printed what it would change
)


class PatternError(ValueError):
    """A pattern file the guard refuses, with the place to fix it."""

    def __init__(self, file: str, line: int | None, key: str | None, reason: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.reason = reason
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


def hs_flags(pattern: Pattern) -> int:
    """Hyperscan flags for a pattern; the library and the matcher must agree on them.

    No DOTALL (``.`` never crosses a line), MULTILINE (``^``/``$`` anchor at each line), no UTF8 (logs are
    not guaranteed valid UTF-8 and Hyperscan's behaviour on invalid input in UTF8 mode is undefined).
    """
    flags = hyperscan.HS_FLAG_MULTILINE
    if pattern.caseless:
        flags |= hyperscan.HS_FLAG_CASELESS
    return flags


def _hs_check(regex: str, flags: int) -> str | None:
    """Compile one regex alone in Hyperscan; return its refusal reason or None."""
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        db.compile(expressions=[regex.encode("utf-8")], ids=[0], elements=1, flags=[flags])
    except hyperscan.error as exc:  # includes "too large", "resource limit", empty-match
        msg = str(exc.args[0] if exc.args else exc)
        return f"hyperscan refuses this regex: {msg}"
    return None


class _Ctx:
    """File name plus a constructor for turning composed YAML nodes into Python values."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._loader = yaml.SafeLoader("")

    def value(self, node: yaml.Node) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except RecursionError:
            raise yaml.YAMLError("nested too deeply") from None

    def err(self, node: yaml.Node | None, key: str | None, reason: str) -> PatternError:
        line = node.start_mark.line + 1 if node is not None else None
        return PatternError(self.file, line, key, reason)


def _text_problem(v: str) -> str | None:
    """Why a string cannot be used as is (it ends up in Hyperscan's C strings, Kafka and ClickHouse)."""
    if "\x00" in v:
        return "must not contain NUL characters (write \\x00 in a regex)"
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it holds a lone surrogate)"
    return None


def _repeat_problem(regex: str, flags: int) -> str | None:
    """Refuse what can run unbounded or blow up compilation in a regex engine.

    The guard matches with Hyperscan (linear whatever the regex), but the same patterns also run in
    Python's backtracking ``re`` (validation, ``guard bench matcher``, users testing them), so nested
    unbounded quantifiers such as ``(a+)+$`` or ``(x*)*`` (catastrophic backtracking) are refused, and
    so are bounded repeats above :data:`MAX_REPEAT` (alone or multiplied through nesting).
    """
    try:
        from re import _parser as sre  # type: ignore[attr-defined]
        from re._constants import MAXREPEAT  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - the parser moved
        return None
    try:
        tree = sre.parse(regex, flags)
    except Exception:  # re.compile already refused what does not parse
        return None

    repeats = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}

    def walk(items: Any, outer_unbounded: bool, product: int) -> str | None:
        for op, av in items:
            if op in repeats:
                lo, hi, sub = av
                unbounded = hi == MAXREPEAT
                count = lo if unbounded else hi
                if count > MAX_REPEAT:
                    return f"repeat count {count} is too large (at most {MAX_REPEAT})"
                if product * max(count, 1) > MAX_REPEAT:
                    return (f"nested repeats multiply to {product * max(count, 1)} repetitions "
                            f"(at most {MAX_REPEAT})")
                if unbounded and outer_unbounded:
                    return ("nested unbounded quantifiers such as (a+)+ or (a*)* can backtrack "
                            "catastrophically; drop the inner or the outer quantifier")
                why = walk(sub, outer_unbounded or unbounded, product * max(count, 1))
                if why:
                    return why
            elif op is sre.SUBPATTERN:
                why = walk(av[-1], outer_unbounded, product)
                if why:
                    return why
            elif op is sre.BRANCH:
                for alt in av[1]:
                    why = walk(alt, outer_unbounded, product)
                    if why:
                        return why
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                why = walk(av[1], outer_unbounded, product)
                if why:
                    return why
        return None

    return walk(tree, False, 1)


def _mapping_items(ctx: _Ctx, node: yaml.MappingNode, where: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    seen: set[str] = set()
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode):
            raise ctx.err(knode, where, "keys must be plain strings")
        key = str(knode.value)
        if key in seen:
            raise ctx.err(knode, f"{where}.{key}" if where else key, "duplicate key")
        seen.add(key)
        items.append((key, knode, vnode))
    return items


#: a pattern's regex waiting for the Hyperscan check: (regex, flags, its YAML node, its dotted key)
_Pending = list[tuple[str, int, yaml.Node, str]]


def _check_regexes(ctx: _Ctx, pending: _Pending) -> None:
    """Every regex through Hyperscan: all at once in one database (kept by the compile cache, so a
    library seen before costs milliseconds), and one by one only when that fails, to name the culprit."""
    if not pending:
        return
    try:
        compile_database([rx.encode("utf-8") for rx, _, _, _ in pending], list(range(len(pending))),
                         [f for _, f, _, _ in pending])
        return
    except hyperscan.error:
        pass
    for regex, flags, node, key in pending:
        refusal = _hs_check(regex, flags)
        if refusal is not None:
            raise ctx.err(node, key, refusal)


def check_regex(ctx: _Ctx, node: yaml.Node, key: str, regex: str, *, caseless: bool, trusted: bool = False) -> None:
    """Every check a user's regex passes before it joins the shared database, except Hyperscan's own
    (:func:`_check_regexes`, all of a file's regexes at once): length, constructs that backtrack,
    Python's ``re`` and the repeat guard. Both file formats call it for each regex they hold."""
    if len(regex) > _MAX_REGEX_LEN:
        raise ctx.err(node, key, f"longer than {_MAX_REGEX_LEN} characters")
    if trusted:  # the packaged library passes these checks in its tests; users' files every time
        return
    unescaped = _ESCAPED.sub("_", regex)
    for rx, reason in _UNBOUNDED:
        if rx.search(regex if rx is _UNBOUNDED[0][0] else unescaped):
            raise ctx.err(node, key, reason)
    try:
        re.compile(regex, re.IGNORECASE if caseless else 0)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ctx.err(node, key, f"not a valid regular expression: {exc}") from None
    repeat = _repeat_problem(regex, re.IGNORECASE if caseless else 0)
    if repeat is not None:
        raise ctx.err(node, key, repeat)


def _parse_pattern(ctx: _Ctx, node: yaml.Node, where: str, pending: _Pending, *, trusted: bool = False) -> Pattern:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.err(node, where, "each pattern must be a mapping with id, category, regex, ...")
    fields: dict[str, tuple[yaml.Node, Any]] = {}
    for key, knode, vnode in _mapping_items(ctx, node, where):
        if key not in _PATTERN_KEYS:
            raise ctx.err(knode, f"{where}.{key}", f"unknown key; allowed: {', '.join(sorted(_PATTERN_KEYS))}")
        try:
            fields[key] = (vnode, ctx.value(vnode))
        except yaml.YAMLError as exc:
            raise ctx.err(vnode, f"{where}.{key}", f"bad value: {exc}") from None

    def need_str(key: str) -> tuple[yaml.Node, str]:
        if key not in fields:
            raise ctx.err(node, f"{where}.{key}", "required key is missing")
        vnode, v = fields[key]
        if not isinstance(v, str) or not v.strip():
            raise ctx.err(vnode, f"{where}.{key}", "must be a non-empty string")
        bad = _text_problem(v)
        if bad:
            raise ctx.err(vnode, f"{where}.{key}", bad)
        return vnode, v

    id_node, pid = need_str("id")
    if not _ID_RE.match(pid):
        raise ctx.err(id_node, f"{where}.id", "use letters, digits and _ . : - (at most 128 characters)")

    cat_node, category = need_str("category")
    if category not in PATTERN_CATEGORIES:
        raise ctx.err(cat_node, f"{where}.category", f"unknown category {category!r}; one of: {', '.join(PATTERN_CATEGORIES)}")

    confidence = _DEFAULT_CONFIDENCE
    if "confidence" in fields:
        cnode, c = fields["confidence"]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:  # no float(): a huge int
            raise ctx.err(cnode, f"{where}.confidence", "must be a number between 0 and 1")
        confidence = float(c)

    caseless = False
    if "caseless" in fields:
        bnode, b = fields["caseless"]
        if not isinstance(b, bool):
            raise ctx.err(bnode, f"{where}.caseless", "must be true or false")
        caseless = b

    indicators: tuple[str, ...] = ()
    if "indicators" in fields:
        inode, ind = fields["indicators"]
        if not isinstance(ind, list) or not all(isinstance(i, str) and i for i in ind):
            raise ctx.err(inode, f"{where}.indicators", "must be a list of non-empty strings")
        for j, i in enumerate(ind):
            bad = _text_problem(i)
            if bad:
                raise ctx.err(inode, f"{where}.indicators[{j}]", bad)
        indicators = tuple(ind)

    remediation: str | None = None
    if "remediation" in fields:
        rnode, r = fields["remediation"]
        if r is not None and not isinstance(r, str):
            raise ctx.err(rnode, f"{where}.remediation", "must be a string")
        if r is not None and _text_problem(r):
            raise ctx.err(rnode, f"{where}.remediation", _text_problem(r) or "")
        remediation = r

    description = ""
    if "description" in fields:
        dnode, d = fields["description"]
        if d is not None and not isinstance(d, str):
            raise ctx.err(dnode, f"{where}.description", "must be a string")
        if d is not None and _text_problem(d):
            raise ctx.err(dnode, f"{where}.description", _text_problem(d) or "")
        description = d or ""

    rx_node, regex = need_str("regex")
    rkey = f"{where}.regex"
    check_regex(ctx, rx_node, rkey, regex, caseless=caseless, trusted=trusted)
    pattern = Pattern(
        id=pid,
        category=category,
        regex=regex,
        confidence=confidence,
        indicators=indicators,
        remediation=remediation,
        description=description,
        caseless=caseless,
    )
    pending.append((regex, hs_flags(pattern), rx_node, rkey))  # checked with the others, see _check_regexes
    return pattern


def parse_library(text: str, file: str = "<string>", *, trusted: bool = False) -> list[Pattern]:
    """Parse one pattern file's text; ``file`` is only used in error messages. ``trusted`` (the packaged
    library) composes with libyaml's C parser when present, ten times faster, and skips the checks for
    hostile regexes (its tests run them: tests/unit/patterns); users' files always go through the
    pure-Python parser and every check, whose limits the hostile-input tests pin down."""
    ctx = _Ctx(file)
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if trusted else yaml.SafeLoader
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PatternError(file, line, None, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise PatternError(file, None, None, f"not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise PatternError(file, None, None, "not valid YAML: nested too deeply") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ctx.err(root, None, "the file must be a mapping with a top-level 'patterns:' list or mapping")
    plist: yaml.Node | None = None
    for key, knode, vnode in _mapping_items(ctx, root, ""):
        if key not in _TOP_KEYS:
            raise ctx.err(knode, key, f"unknown top-level key; allowed: {', '.join(sorted(_TOP_KEYS))}")
        if key == "patterns":
            plist = vnode
    if plist is None:
        raise ctx.err(root, "patterns", "required top-level key is missing")
    if isinstance(plist, yaml.ScalarNode) and plist.tag.endswith(":null"):
        return []
    pending: _Pending = []
    if isinstance(plist, yaml.MappingNode):  # the product document's named patterns
        from .named import parse_named  # named.py builds on this module's checks

        named = parse_named(ctx, plist, pending)
        _check_regexes(ctx, pending)
        return named
    if not isinstance(plist, yaml.SequenceNode):
        raise ctx.err(plist, "patterns", "must be a list of patterns ({id, category, regex, ...} entries) or a "
                                         "mapping of named patterns (NAME: {regex, indicators, remediation})")
    out: list[Pattern] = []
    ids: dict[str, int] = {}
    for i, pnode in enumerate(plist.value):
        p = _parse_pattern(ctx, pnode, f"patterns[{i}]", pending, trusted=trusted)
        if p.id in ids:
            raise ctx.err(pnode, f"patterns[{i}].id", f"duplicate id {p.id!r} (first defined as patterns[{ids[p.id]}])")
        ids[p.id] = i
        out.append(p)
    _check_regexes(ctx, pending)
    return out


@functools.lru_cache(maxsize=1)
def _builtin_patterns() -> tuple[Pattern, ...]:
    """The packaged patterns, validated once per process (checking each one in Hyperscan takes ~1 s)."""
    ref = resources.files("healing_guard.patterns").joinpath(BUILTIN_FILE)
    return tuple(parse_library(ref.read_text(encoding="utf-8"), f"<builtin>/{BUILTIN_FILE}", trusted=True))


def load_library(extra_files: Sequence[str | Path] = (), *, include_builtin: bool = True) -> list[Pattern]:
    """The built-in patterns plus users' files, later files overriding earlier ones by id.

    Overriding by id lets a team retune or silence (confidence 0) one built-in pattern without forking
    the whole library. Order is stable: built-ins first, then new ids in file order.
    """
    merged: dict[str, Pattern] = {}
    if include_builtin:
        for p in _builtin_patterns():
            merged[p.id] = p
    for f in extra_files:
        path = Path(f)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PatternError(str(path), None, None, f"cannot read pattern file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise PatternError(str(path), None, None, f"not UTF-8 text: {exc}") from None
        for p in _parse_user_file(text, str(path)):
            merged[p.id] = p
    return list(merged.values())


@functools.lru_cache(maxsize=32)
def _parse_user_file(text: str, file: str) -> tuple[Pattern, ...]:
    """A user's file as parsed before, when its text has not changed: the engine, the planner's config
    and the Python API each load the same files (patterns are immutable, so sharing them is safe)."""
    return tuple(parse_library(text, file))
