"""Bundled, seeded sample CI traffic that ``guard demo`` / ``make run`` replays through the real worker."""

from .generator import CATEGORY_MIX, Rerun, SampleJob, build_repos, generate, messages, rerun_attempts

__all__ = ["CATEGORY_MIX", "Rerun", "SampleJob", "build_repos", "generate", "messages", "rerun_attempts"]
