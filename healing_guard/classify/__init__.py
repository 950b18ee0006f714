"""Turn pattern evidence from a job's log into one diagnosis (category, confidence, evidence)."""

from .classifier import Diagnosis, EvidenceLine, classify, evidence_from_hits

__all__ = ["Diagnosis", "EvidenceLine", "classify", "evidence_from_hits"]
