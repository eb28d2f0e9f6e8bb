"""Uncertainty of an LLM's answers: SAR (Shifting Attention to Relevance) and its baselines.

`scores` holds the formulas, `similarity` the models that judge meaning, `sampling` draws the
answers with their token NLLs, `estimate` combines them per question and `evaluate` runs a QA
set. See papers.md §5 for the paper and the fixes made here.
"""

from .estimate import METHODS, Estimator, parse_methods
from .sampling import Answer, QuestionSamples, SamplingConfig, sample_answers
from .similarity import load_nli, load_similarity

__all__ = [
    "METHODS",
    "Answer",
    "Estimator",
    "QuestionSamples",
    "SamplingConfig",
    "load_nli",
    "load_similarity",
    "parse_methods",
    "sample_answers",
]
