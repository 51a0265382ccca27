"""Scores and the confusion matrix: what every candidate and the chosen model are judged by."""

from __future__ import annotations

import numpy as np
import pandas as pd

from covertype import schema

LABELS = list(range(len(schema.COVER_TYPE_NAMES)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over all 7 classes (a class absent from both counts as 0)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0))


def scores(y_true: np.ndarray, y_pred: np.ndarray, prefix: str) -> dict[str, float]:
    """Accuracy, macro F1 and per-class precision, recall and F1, named `{prefix}_...`."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    result = {
        f"{prefix}_accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}_macro_f1": macro_f1(y_true, y_pred),
    }
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, zero_division=0
    )
    for k in LABELS:
        result[f"{prefix}_precision_class_{k}"] = float(precision[k])
        result[f"{prefix}_recall_class_{k}"] = float(recall[k])
        result[f"{prefix}_f1_class_{k}"] = float(f1[k])
    return result


def log_confusion(y_true: np.ndarray, y_pred: np.ndarray, share: str) -> None:
    """The confusion matrix in the active run: CSV, an MLflow table and a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=LABELS)
    table = pd.DataFrame(matrix, index=schema.COVER_TYPE_NAMES, columns=schema.COVER_TYPE_NAMES)
    table.index.name = "true \\ predicted"
    mlflow.log_text(table.to_csv(), "confusion_matrix.csv")
    mlflow.log_table(table.reset_index(), "confusion_matrix.json")
    figure, axes = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=schema.COVER_TYPE_NAMES).plot(
        ax=axes, xticks_rotation=45, colorbar=False, values_format="d"
    )
    axes.set_title(f"{share} confusion matrix ({len(y_true)} rows)")
    figure.tight_layout()
    mlflow.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
