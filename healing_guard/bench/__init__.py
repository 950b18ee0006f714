"""Benchmarks of the guard's parts, behind ``guard bench``: pure measuring functions plus their CLI."""

from .matcher import BenchError, Corpus, Run, build_corpus, compare_hits, run_matcher_bench

__all__ = ["BenchError", "Corpus", "Run", "build_corpus", "compare_hits", "run_matcher_bench"]
