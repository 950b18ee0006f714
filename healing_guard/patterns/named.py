"""The product document's pattern format: named patterns with indicators and a remediation list.

```yaml
patterns:
  timing_sensitive:
    regex: "(timeout|deadline|elapsed)"
    indicators: ["assertion failed after \\\\d+ms"]
    remediation:
      - increase_timeout: 2x
      - add_retry_logic: true
```

Each name becomes patterns of the library like any other, so the matcher, the classifier and the
hostile-regex checks treat them alike: ``regex`` is the pattern ``user.NAME`` and each indicator the
pattern ``user.NAME.<i>`` (``i`` as in ``indicators[i]``). The ``user.`` namespace keeps them apart from
the built-in ids (a name is letters, digits, ``_`` and ``-``, so two names never make the same id). They
match case-insensitively unless ``caseless: false``: the document writes "no space left on device" for
a message most tools print as "No space left on device".

The category is ``category:`` when given, else what the remediation entries point at
(:data:`VOCABULARY`), else what the name's words say (:data:`NAME_WORDS`); when those disagree or say
nothing, the file is refused with a request to add ``category:``. Each remediation entry either maps
onto an action and parameters the guard's planner and directives carry out, or is advice for the
author; anything else is refused, so no entry is silently ignored. Which entries a category accepts is
checked here too: a code failure is never rerun, failed tests are rerun only as the flaky-test rerun.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from healing_guard.directives import MAX_MEMORY_FACTOR, MAX_TIMEOUT_FACTOR

from .library import (
    _DEFAULT_CONFIDENCE,
    PATTERN_CATEGORIES,
    Pattern,
    _Ctx,
    _mapping_items,
    _Pending,
    _text_problem,
    check_regex,
    hs_flags,
)

__all__ = [
    "INFERRED_CONFIDENCE",
    "NAMESPACE",
    "NAME_CONFIDENCE",
    "NAME_WORDS",
    "Remediation",
    "Step",
    "TEST_CATEGORIES",
    "VOCABULARY",
    "parse_named",
    "pattern_remedies",
]

#: prefix of every id a named pattern makes
NAMESPACE = "user."
#: confidence of a named pattern without ``confidence:`` whose category is given or follows from its
#: remediation: the list format's default. The category cannot pick a wrong action here: the action that
#: runs is the pattern's own remediation (or, with none, the category the author named)
INFERRED_CONFIDENCE = _DEFAULT_CONFIDENCE
#: ...and when only the name's words gave the category: below every automatic gate (the packaged ones
#: start at 0.75), so a guessed category is reported and a person told, never acted on by itself
NAME_CONFIDENCE = 0.6
#: failed tests are rerun only as the flaky-test rerun (the planner's rule): entries that name another
#: action do not apply to them
TEST_CATEGORIES = ("test_failure", "test_timeout")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_KEYS = frozenset({"regex", "indicators", "remediation", "category", "confidence", "description", "caseless"})
_FACTOR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX×]?\s*$")
_SIZE_RE = re.compile(r"^\s*\+?\s*\d+(?:\.\d+)?\s*(?:[KMGTkmgt]i?[Bb]?)?\s*$")
_MAX_ADVICE = 500


@dataclass(frozen=True)
class Step:
    """One remediation entry the format knows: the category it points at, the action it asks for and
    with which parameters, or the advice it gives the author.

    ``value``: what the entry takes: ``flag`` (true, or false to leave it out), ``factor`` (``2x``, ``1.5``,
    or true for 2x), ``size`` (``+10GB``, or true), ``text`` (the advice itself)."""

    value: str
    category: str | None = None
    action: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: the parameter a factor sets, and its cap
    factor: tuple[str, float] | None = None
    advice: str = ""


#: The remediation entries, by key. ``action`` None: the entry adds parameters to the rerun the category
#: calls for (``increase_timeout``) or is advice only.
VOCABULARY: Mapping[str, Step] = {
    "increase_timeout": Step("factor", "test_timeout", factor=("timeout_factor", MAX_TIMEOUT_FACTOR)),
    "increase_memory": Step("factor", "oom", "rerun_more_memory", factor=("memory_factor", MAX_MEMORY_FACTOR)),
    "retry_with_backoff": Step("flag", "network", "retry_backoff"),
    "clear_cache": Step("flag", "cache_corruption", "clear_cache_retry", {"clear_cache": True}),
    "rebuild_without_cache": Step("flag", "docker_registry", "rebuild_no_layer_cache", {"no_cache": True}),
    "cleanup_artifacts": Step("flag", "disk_full", "cleanup_retry", {"cleanup": ("git clean -ffdx",)}),
    "prune_docker": Step("flag", "disk_full", "cleanup_retry", {"cleanup": ("docker system prune -af",)}),
    # no platform lets the guard grow a job's disk: it frees space instead, and says so
    "expand_volume": Step("size", "disk_full", "cleanup_retry",
                          {"cleanup": ("docker system prune -af", "rm -rf ~/.cache")}),
    "add_retry_logic": Step("flag", advice="add retry logic (a bounded number of attempts) around the "
                                           "timing-sensitive code"),
    "mock_external_services": Step("flag", "network", advice="mock the external services the tests call, so "
                                                             "they do not depend on those services being up"),
    "add_circuit_breaker": Step("flag", "network", advice="add a circuit breaker around calls to the "
                                                          "external service"),
    "advice": Step("text"),
}

#: Words of a pattern's name (split on ``_`` and ``-``) and the category each points at: asked only when
#: the remediation decides nothing. Several categories, or none: ``category:`` is required.
NAME_WORDS: Mapping[str, str] = {
    **dict.fromkeys(("timeout", "timeouts", "timing", "deadline", "slow"), "test_timeout"),
    **dict.fromkeys(("flaky", "assertion", "assert"), "test_failure"),
    **dict.fromkeys(("oom", "memory", "heap"), "oom"),
    **dict.fromkeys(("disk", "space", "volume", "storage", "enospc"), "disk_full"),
    **dict.fromkeys(("network", "dns", "connection", "connect", "socket", "tls", "ssl", "http", "external"),
                    "network"),
    **dict.fromkeys(("rate", "ratelimit", "throttle", "throttling", "throttled"), "rate_limit"),
    **dict.fromkeys(("registry", "docker", "image", "layer", "blob"), "docker_registry"),
    **dict.fromkeys(("cache",), "cache_corruption"),
    **dict.fromkeys(("runner", "agent"), "infra_runner_lost"),
    **dict.fromkeys(("compile", "compiler", "compilation"), "compilation_error"),
    **dict.fromkeys(("lint", "linter", "style", "format"), "lint_style"),
    **dict.fromkeys(("dependency", "dependencies", "resolve", "resolution"), "dependency_resolution"),
    **dict.fromkeys(("crash", "segfault", "panic"), "crash"),
}


@dataclass(frozen=True)
class Remediation:
    """What a named pattern's remediation asks the planner for (hashable, like the pattern it belongs to).

    ``action`` None: the rerun the category calls for, with ``parameters`` added (or, with no parameters
    either, advice only: the author is told)."""

    pattern: str  # the named pattern's id (user.NAME), which its regex and indicators (user.NAME.<i>) share
    action: str | None = None
    parameters: tuple[tuple[str, Any], ...] = ()  # list values as tuples
    advice: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what the guard does instead of an entry it cannot do as asked

    @property
    def advice_only(self) -> bool:
        return self.action is None and not self.parameters

    def params(self) -> dict[str, Any]:
        """The parameters as a command carries them (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.parameters}

    def describe(self) -> str:
        """In words, for the command's reason and ``guard analyze``'s ``remediation``."""
        p = dict(self.parameters)
        parts: list[str] = []
        what = _ACTION_WORDS.get(self.action or "", "rerun")
        if self.action == "rerun_more_memory":
            what = f"rerun with {p.get('memory_factor', 2):g}x memory"
        elif self.action == "cleanup_retry":
            what = f"clean up ({', '.join(p.get('cleanup', ()))}) and rerun"
        if "timeout_factor" in p:
            what += f" with a {p['timeout_factor']:g}x test timeout"
        if not self.advice_only:
            parts.append(what)
        parts.extend(self.notes)
        if self.advice:
            parts.append("for the author: " + "; ".join(self.advice))
        return "; ".join(parts)


_ACTION_WORDS = {
    "retry_backoff": "retry after an exponential backoff",
    "clear_cache_retry": "clear the CI cache and rerun",
    "rebuild_no_layer_cache": "rebuild without the Docker layer cache",
}


def pattern_remedies(patterns: Iterator[Pattern] | list[Pattern] | tuple[Pattern, ...]) -> dict[str, Remediation]:
    """Pattern id -> its remediation, for the planner's config (``PlanConfig.pattern_remedies``)."""
    return {p.id: p.remedy for p in patterns if p.remedy is not None}


# --- parsing ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    index: int
    key: str
    node: yaml.Node
    step: Step
    parameters: dict[str, Any]
    advice: str = ""
    note: str = ""  # what the guard does instead of what the entry literally asks


def parse_named(ctx: _Ctx, node: yaml.MappingNode, pending: _Pending) -> list[Pattern]:
    """The patterns of a ``patterns:`` mapping; their regexes join ``pending`` for the Hyperscan check."""
    out: list[Pattern] = []
    for name, knode, vnode in _mapping_items(ctx, node, "patterns"):
        where = f"patterns.{name}"
        if not _NAME_RE.match(name):
            raise ctx.err(knode, where, "a pattern's name is letters, digits, _ and - (at most 64 characters): "
                                        f"it becomes the id {NAMESPACE}NAME")
        out.extend(_parse_one(ctx, name, knode, vnode, pending))
    return out


def _parse_one(ctx: _Ctx, name: str, knode: yaml.Node, node: yaml.Node, pending: _Pending) -> list[Pattern]:
    where = f"patterns.{name}"
    if not isinstance(node, yaml.MappingNode):
        raise ctx.err(node, where, "a named pattern is a mapping with regex and/or indicators, and remediation")
    nodes: dict[str, yaml.Node] = {}
    for key, kn, vn in _mapping_items(ctx, node, where):
        if key not in _KEYS:
            raise ctx.err(kn, f"{where}.{key}", f"unknown key; allowed: {', '.join(sorted(_KEYS))}")
        nodes[key] = vn

    def scalar(key: str) -> Any:
        try:
            return ctx.value(nodes[key])
        except yaml.YAMLError as exc:
            raise ctx.err(nodes[key], f"{where}.{key}", f"bad value: {exc}") from None

    def text(key: str) -> str:
        v = scalar(key)
        if not isinstance(v, str) or not v.strip():
            raise ctx.err(nodes[key], f"{where}.{key}", "must be a non-empty string")
        bad = _text_problem(v)
        if bad:
            raise ctx.err(nodes[key], f"{where}.{key}", bad)
        return v

    caseless = True
    if "caseless" in nodes:
        caseless = scalar("caseless")
        if not isinstance(caseless, bool):
            raise ctx.err(nodes["caseless"], f"{where}.caseless", "must be true or false")
    description = text("description") if "description" in nodes and scalar("description") is not None else ""

    # the regexes that identify it: regex, then each indicator
    regexes: list[tuple[str, str, yaml.Node, str]] = []  # (id, regex, node, key)
    if "regex" in nodes:
        regexes.append((f"{NAMESPACE}{name}", text("regex"), nodes["regex"], f"{where}.regex"))
    if "indicators" in nodes:
        inode = nodes["indicators"]
        if not isinstance(inode, yaml.SequenceNode) or not inode.value:
            raise ctx.err(inode, f"{where}.indicators", "must be a non-empty list of regexes")
        for i, item in enumerate(inode.value):
            ikey = f"{where}.indicators[{i}]"
            try:
                v = ctx.value(item) if isinstance(item, yaml.ScalarNode) else None
            except yaml.YAMLError as exc:
                raise ctx.err(item, ikey, f"bad value: {exc}") from None
            if not isinstance(v, str) or not v.strip():
                raise ctx.err(item, ikey, "must be a non-empty string (a regex)")
            bad = _text_problem(v)
            if bad:
                raise ctx.err(item, ikey, bad)
            regexes.append((f"{NAMESPACE}{name}.{i}", v, item, ikey))
    if not regexes:
        raise ctx.err(knode, where, "needs a regex or indicators (each one a regex that identifies the failure)")
    for _, rx, rnode, rkey in regexes:
        check_regex(ctx, rnode, rkey, rx, caseless=caseless)

    entries = _entries(ctx, nodes.get("remediation"), where)
    category, how = _category(ctx, name, knode, nodes, entries, where, scalar)
    _check_fits(ctx, category, entries, where)

    confidence = INFERRED_CONFIDENCE if how != "name" else NAME_CONFIDENCE
    if "confidence" in nodes:
        c = scalar("confidence")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
            raise ctx.err(nodes["confidence"], f"{where}.confidence", "must be a number between 0 and 1")
        confidence = float(c)

    remedy = _remedy(ctx, f"{NAMESPACE}{name}", entries, where)
    out = []
    for pid, rx, rnode, rkey in regexes:
        p = Pattern(id=pid, category=category, regex=rx, confidence=confidence,
                    remediation=remedy.describe() if remedy else None, description=description,
                    caseless=caseless, remedy=remedy)
        pending.append((rx, hs_flags(p), rnode, rkey))
        out.append(p)
    return out


def _entries(ctx: _Ctx, node: yaml.Node | None, where: str) -> list[_Entry]:
    """The remediation entries, each checked against the vocabulary (``false`` ones left out)."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return []
    rkey = f"{where}.remediation"
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.err(node, rkey, "must be a list of entries such as '- increase_timeout: 2x' or "
                                  "'- prune_docker: true' (free text: '- advice: ...')")
    out: list[_Entry] = []
    seen: dict[str, int] = {}
    for i, enode in enumerate(node.value):
        ekey = f"{rkey}[{i}]"
        if isinstance(enode, yaml.ScalarNode):
            key, value = enode.value, True
        elif isinstance(enode, yaml.MappingNode):
            items = _mapping_items(ctx, enode, ekey)
            if len(items) != 1:
                raise ctx.err(enode, ekey, "each entry is one 'key: value', such as '- increase_timeout: 2x'")
            key, _, vnode = items[0]
            try:
                value = ctx.value(vnode)
            except yaml.YAMLError as exc:
                raise ctx.err(vnode, ekey, f"bad value: {exc}") from None
        else:
            raise ctx.err(enode, ekey, "each entry is a name or one 'key: value', such as '- increase_timeout: 2x'")
        step = VOCABULARY.get(key)
        if step is None:
            raise ctx.err(enode, ekey, f"unknown remediation {str(key)[:80]!r}; known: {', '.join(VOCABULARY)}")
        if key in seen:
            raise ctx.err(enode, ekey, f"{key} is given twice (also {rkey}[{seen[key]}])")
        seen[key] = i
        try:
            entry = _entry(i, key, enode, step, value)
        except ValueError as exc:
            raise ctx.err(enode, ekey, f"{key}: {exc}") from None
        if entry is not None:
            out.append(entry)
    return out


def _entry(index: int, key: str, node: yaml.Node, step: Step, value: Any) -> _Entry | None:
    params = dict(step.parameters)
    advice, note = step.advice, ""
    if step.value == "flag":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        if not value:
            return None
    elif step.value == "factor":
        assert step.factor is not None
        name, cap = step.factor
        written = _FACTOR_RE.match(value) if isinstance(value, str) else None
        if value is True:
            factor = 2.0
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = float(value) if value <= cap else math.inf  # no float() of a huge int
        elif written is not None:
            factor = float(written.group(1))
        elif value is False:
            return None
        else:
            raise ValueError(f"must be a factor such as 2x (above 1, at most {cap:g}), got {str(value)[:40]!r}")
        if not 1.0 < factor <= cap:
            raise ValueError(f"the factor must be above 1 and at most {cap:g}, got {factor:g}")
        params[name] = factor
    elif step.value == "size":
        if value is False:
            return None
        if value is not True and not (isinstance(value, str) and _SIZE_RE.match(value)) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"must be a size such as +10GB (or true), got {str(value)[:40]!r}")
        asked = "" if value is True else f" ({str(value).strip()[:40]} asked)"
        note = f"the guard cannot grow a job's disk{asked}; hosted runners have fixed disks: cleaning up instead"
    else:  # text: the advice itself
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be the advice, as text")
        if len(value) > _MAX_ADVICE or _text_problem(value):
            raise ValueError(_text_problem(value) or f"at most {_MAX_ADVICE} characters")
        advice = " ".join(value.split())
    return _Entry(index, key, node, step, params, advice, note)


def _category(ctx: _Ctx, name: str, knode: yaml.Node, nodes: Mapping[str, yaml.Node], entries: list[_Entry],
              where: str, scalar: Any) -> tuple[str, str]:
    """The category and where it came from: ``explicit``, ``remediation`` or ``name``."""
    if "category" in nodes:
        v = scalar("category")
        if not isinstance(v, str) or v not in PATTERN_CATEGORIES:
            raise ctx.err(nodes["category"], f"{where}.category",
                          f"unknown category {v!r}; one of: {', '.join(PATTERN_CATEGORIES)}")
        return v, "explicit"
    by_entry: dict[str, str] = {}
    for e in entries:
        if e.step.category is not None:
            by_entry.setdefault(e.step.category, e.key)
    if len(by_entry) == 1:
        return next(iter(by_entry)), "remediation"
    if len(by_entry) > 1:
        said = ", ".join(f"{key} -> {cat}" for cat, key in by_entry.items())
        raise ctx.err(knode, where, f"the remediation points at several categories ({said}): add category: "
                                    "(one of them)")
    words = [w for w in re.split(r"[_\-]+", name.lower()) if w]
    by_word: dict[str, str] = {}
    for w in words:
        if w in NAME_WORDS:
            by_word.setdefault(NAME_WORDS[w], w)
    if len(by_word) == 1:
        return next(iter(by_word)), "name"
    why = ("its remediation decides nothing and its name points at several categories ("
           + ", ".join(f"{w} -> {c}" for c, w in by_word.items()) + ")") if by_word else \
        "neither its remediation nor its name says which failure it is"
    raise ctx.err(knode, where, f"cannot tell the category: {why}; add category: (one of: "
                                f"{', '.join(PATTERN_CATEGORIES)})")


def _reruns(category: str) -> bool:
    """Whether the guard's answer to ``category`` is an automatic action (the planner's table)."""
    from healing_guard.remediate.strategies import STRATEGIES  # the table, in one place; imported late:
    # the remediation package imports the classifier, which imports this package

    st = STRATEGIES.get(category)
    return st is not None and st.automatic


def _check_fits(ctx: _Ctx, category: str, entries: list[_Entry], where: str) -> None:
    """Refuse entries the guard would never carry out for this category, rather than ignore them."""
    if _reruns(category):
        return
    tests = category in TEST_CATEGORIES
    for e in entries:
        if e.step.action is None and (tests or not e.parameters):
            continue  # advice; increase_timeout joins the flaky-test rerun
        ekey = f"{where}.remediation[{e.index}]"
        if tests:
            raise ctx.err(e.node, ekey, f"{e.key} does not apply to {category}: failed tests are rerun only "
                                        "as a rerun of those tests when their history says they are flaky "
                                        "(increase_timeout joins that rerun); give the pattern the category of "
                                        "the cause (category:) if it is not the tests")
        raise ctx.err(e.node, ekey, f"{e.key} does not apply to {category}: a code failure is never rerun, "
                                    "it goes to the author; only advice is allowed here (add_retry_logic, "
                                    "mock_external_services, add_circuit_breaker, advice)")


def _remedy(ctx: _Ctx, pid: str, entries: list[_Entry], where: str) -> Remediation | None:
    """One remediation from the entries: one action at most (cleanups add up), parameters, advice."""
    if not entries:
        return None
    action: _Entry | None = None
    params: dict[str, Any] = {}
    advice: list[str] = []
    notes: list[str] = []
    for e in entries:
        if e.step.action is not None:
            if action is not None and action.step.action != e.step.action:
                raise ctx.err(e.node, f"{where}.remediation[{e.index}]",
                              f"{e.key} asks for {e.step.action}, but {where}.remediation[{action.index}] "
                              f"({action.key}) asks for {action.step.action}: a pattern takes one action "
                              "(make two patterns)")
            action = action or e
        for k, v in e.parameters.items():
            if k == "cleanup":
                old = params.get(k, ())
                params[k] = tuple(dict.fromkeys((*old, *v)))
            else:
                params[k] = v
        if e.advice:
            advice.append(e.advice)
        if e.note:
            notes.append(e.note)
    return Remediation(pattern=pid, action=action.step.action if action else None,
                       parameters=tuple(params.items()), advice=tuple(advice), notes=tuple(notes))
