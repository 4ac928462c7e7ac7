"""A tiny nearest-centroid classifier over CSV rows (features..., label): the example's model,
standard library only so the image needs no packages."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def read_rows(folder: Path) -> list[tuple[list[float], str]]:
    """Every CSV row under `folder` as (features, label), header rows skipped."""
    rows = []
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="") as handle:
            for record in csv.reader(handle):
                try:
                    rows.append(([float(x) for x in record[:-1]], record[-1]))
                except ValueError:
                    continue  # the header
    return rows


def fit(rows: list[tuple[list[float], str]]) -> dict[str, list[float]]:
    """Label -> the mean of its rows' features."""
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for features, label in rows:
        total = sums.setdefault(label, [0.0] * len(features))
        sums[label] = [a + b for a, b in zip(total, features, strict=True)]
        counts[label] = counts.get(label, 0) + 1
    return {label: [x / counts[label] for x in total] for label, total in sums.items()}


def predict(centroids: dict[str, list[float]], features: list[float]) -> str:
    """The label of the nearest centroid."""
    return min(centroids, key=lambda label: math.dist(centroids[label], features))


def save(centroids: dict[str, list[float]], model_dir: Path) -> None:
    """Write the model where SageMaker archives it (model.tar.gz)."""
    (model_dir / "centroids.json").write_text(json.dumps(centroids))


def load(model_dir: Path) -> dict[str, list[float]]:
    """Read the model SageMaker unpacked into /opt/ml/model."""
    return json.loads((model_dir / "centroids.json").read_text())
