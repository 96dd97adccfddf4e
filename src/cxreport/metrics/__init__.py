"""Report-generation metrics: captioning scores through pycocoevalcap, clinical efficacy from a
CheXpert labeler, bootstrap CIs, paired tests and baselines. Heavy parts are imported on use."""

from cxreport.metrics.classification import auroc, auroc_table
from cxreport.metrics.scoring import DEFAULT_METRICS, PROTOCOLS, compare, score, score_systems

__all__ = ["auroc", "auroc_table", "score", "compare", "score_systems", "DEFAULT_METRICS", "PROTOCOLS"]
