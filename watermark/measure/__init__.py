"""Measurement: detection rates, ROC/AUROC and the evaluation grid."""
