"""Log normalisation, the failure pattern library and the Hyperscan matcher.

Pure logic: nothing here talks to Kafka or ClickHouse, so every piece is unit-testable on plain lists
of strings.
"""

from .library import Pattern, PatternError, load_library, parse_library
from .matcher import Hit, Matcher
from .tokenize import clean, redact, template, tokenize

__all__ = [
    "Hit",
    "Matcher",
    "Pattern",
    "PatternError",
    "clean",
    "load_library",
    "parse_library",
    "redact",
    "template",
    "tokenize",
]
