"""Compiled Hyperscan databases kept on disk, and the packaged library's fast path."""

from __future__ import annotations

import types
from importlib import resources
from pathlib import Path

import hyperscan
import pytest

from healing_guard.patterns import Matcher, load_library, parse_library
from healing_guard.patterns.hs_cache import compile_database
from healing_guard.patterns.library import BUILTIN_FILE


def _hits(db: hyperscan.Database, data: bytes) -> list[int]:
    out: list[int] = []
    db.scan(data, match_event_handler=lambda i, *_: out.append(i), scratch=hyperscan.Scratch(db))
    return out


def test_a_compiled_database_is_loaded_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exprs, ids, flags = [b"No space left", b"ECONN(RESET|REFUSED)"], [0, 1], [0, 0]
    db = compile_database(exprs, ids, flags, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.hsdb"))) == 1 and _hits(db, b"read ECONNRESET") == [1]

    def no_compiler(*a: object, **k: object) -> None:
        raise AssertionError("compiled again although the cache holds this database")

    from healing_guard.patterns import hs_cache

    fake = types.SimpleNamespace(**{n: getattr(hyperscan, n) for n in dir(hyperscan) if not n.startswith("__")},
                                 __version__=getattr(hyperscan, "__version__", ""))
    fake.Database = no_compiler
    monkeypatch.setattr(hs_cache, "hyperscan", fake)
    again = compile_database(exprs, ids, flags, cache_dir=tmp_path)
    assert _hits(again, b"No space left on device") == [0]
    with pytest.raises(AssertionError):  # another expression is another key: compiled, not a stale hit
        compile_database([b"No space left", b"ECONNRESET"], ids, flags, cache_dir=tmp_path)
    with pytest.raises(AssertionError):  # so is another flag
        compile_database(exprs, ids, [hyperscan.HS_FLAG_CASELESS, 0], cache_dir=tmp_path)


def test_a_corrupt_cache_file_is_compiled_again_and_replaced(tmp_path: Path) -> None:
    exprs, ids, flags = [b"Killed"], [0], [0]
    compile_database(exprs, ids, flags, cache_dir=tmp_path)
    (f,) = tmp_path.glob("*.hsdb")
    f.write_bytes(b"not a database")
    db = compile_database(exprs, ids, flags, cache_dir=tmp_path)
    assert _hits(db, b"Killed") == [0] and f.read_bytes() != b"not a database"


def test_an_unwritable_cache_still_gives_a_database(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    db = compile_database([b"abc"], [0], [0], cache_dir=blocker / "sub")  # a file where a directory should be
    assert _hits(db, b"xabcx") == [0]


def test_matchers_with_and_without_the_cache_agree(tmp_path: Path) -> None:
    lib = load_library()
    log = b"npm ERR! code ECONNRESET\nERROR: No matching distribution found for flask==99\nKilled\n"
    cached = [(h.index, h.pattern.id) for h in Matcher(lib, markers=True, cache_dir=tmp_path).scan(log)]
    loaded = [(h.index, h.pattern.id) for h in Matcher(lib, markers=True, cache_dir=tmp_path).scan(log)]
    plain = [(h.index, h.pattern.id) for h in Matcher(lib, markers=True, cache_dir=None).scan(log)]
    assert cached == loaded == plain and plain


def test_the_packaged_library_passes_every_check_a_users_file_gets() -> None:
    """The packaged file is parsed on a fast path (C YAML parser, no hostile-regex checks); here it goes
    through the full checks and must give the same patterns."""
    text = resources.files("healing_guard.patterns").joinpath(BUILTIN_FILE).read_text(encoding="utf-8")
    assert parse_library(text, "builtin.yml") == parse_library(text, "builtin.yml", trusted=True)
