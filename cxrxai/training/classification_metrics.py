"""Validation metrics written into the model card (scikit-learn does the arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def multiclass_metrics(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall, one-vs-rest macro-AUC, confusion matrix.

    ``probs`` (N, C) softmax outputs, ``targets`` (N,) class indices. Confusion matrix rows
    are the true class, columns the predicted class, in ``labels`` order.
    """
    predicted = probs.argmax(axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=classes, zero_division=0
    )
    per_class_auc = {}
    for index, label in enumerate(labels):
        positives = targets == index
        per_class_auc[label] = (
            float(roc_auc_score(positives, probs[:, index]))
            if 0 < positives.sum() < len(targets)
            else float("nan")
        )
    return {
        "n": len(targets),
        "accuracy": float((predicted == targets).mean()),
        "macro_auc": float(np.nanmean(list(per_class_auc.values()))),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "auc": per_class_auc[label],
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(targets, predicted, labels=classes).tolist(),
    }


def multilabel_metrics(
    probs: np.ndarray, targets: np.ndarray, labels: list[str], thresholds: dict[str, float]
) -> dict[str, Any]:
    """Per-label AUC, precision, recall at the operating thresholds; macro-AUC, micro-F1."""
    cut = np.array([thresholds.get(label, 0.5) for label in labels])
    predicted = probs >= cut
    per_label = {}
    for i, label in enumerate(labels):
        truth = targets[:, i].astype(bool)
        auc = (
            float(roc_auc_score(truth, probs[:, i]))
            if 0 < truth.sum() < len(truth)
            else float("nan")
        )
        tp = int((predicted[:, i] & truth).sum())
        per_label[label] = {
            "precision": tp / max(int(predicted[:, i].sum()), 1),
            "recall": tp / max(int(truth.sum()), 1),
            "auc": auc,
            "support": int(truth.sum()),
            "confusion_matrix": confusion_matrix(
                truth, predicted[:, i], labels=[False, True]
            ).tolist(),
        }
    aucs = [v["auc"] for v in per_label.values() if not np.isnan(v["auc"])]
    return {
        "n": len(targets),
        "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "micro_f1": float(
            f1_score(targets.astype(bool), predicted, average="micro", zero_division=0)
        ),
        "exact_match_accuracy": float((predicted == targets.astype(bool)).all(axis=1).mean()),
        "per_label": per_label,
    }


def youden_thresholds(
    probs: np.ndarray, targets: np.ndarray, labels: list[str]
) -> dict[str, float]:
    """Per-label operating point maximising sensitivity + specificity on validation data."""
    from sklearn.metrics import roc_curve

    out = {}
    for i, label in enumerate(labels):
        truth = targets[:, i].astype(bool)
        if 0 < truth.sum() < len(truth):
            fpr, tpr, cuts = roc_curve(truth, probs[:, i])
            best = int(np.argmax(tpr - fpr))
            out[label] = float(np.clip(cuts[best], 0.0, 1.0))
        else:
            out[label] = 0.5
    return out
