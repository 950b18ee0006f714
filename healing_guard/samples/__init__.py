"""Bundled, seeded sample CI traffic that ``guard demo`` / ``make run`` replays through the real worker."""

from .generator import CATEGORY_MIX, SampleJob, build_repos, generate, messages

__all__ = ["CATEGORY_MIX", "SampleJob", "build_repos", "generate", "messages"]
