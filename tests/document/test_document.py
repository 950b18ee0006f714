"""The product document in the repository is the one its authors keep, and its examples are found."""

from __future__ import annotations

import pytest

from tests.document.examples import DOCUMENT, UPSTREAM, block, blocks


def test_the_repository_carries_the_product_document_as_written() -> None:
    if not UPSTREAM.exists():
        pytest.skip(f"{UPSTREAM} is on the authors' machines only; the copy in docs/ is what CI checks")
    assert DOCUMENT.read_bytes() == UPSTREAM.read_bytes(), "docs/product-document.md differs from the seed"


def test_every_example_of_the_document_is_found() -> None:
    langs = [b.lang for b in blocks()]
    assert langs.count("yaml") == 8 and langs.count("python") == 3 and langs.count("bash") == 3, langs
    assert "ml_model" in block("Strategy Configuration", "yaml").text
    assert block("Cost Control Configuration", "yaml").text.startswith("cost_control:")
    assert "GuardClient" in block("Python SDK", "python").text
