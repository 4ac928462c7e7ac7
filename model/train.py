"""Train the sample Iris classifier: the SageMaker scikit-learn (script mode) training entry point.

SageMaker runs `python train.py --n-estimators 100 --max-depth 4` inside the scikit-learn
container (Python 3.9), with the training channel in SM_CHANNEL_TRAIN and the folder to save the
model to in SM_MODEL_DIR. Run it locally the same way:

    python model/train.py --train model/data --model-dir build/model

It prints one metric line, `validation:accuracy=0.9667`, which the pipeline's quality gate reads
from the job's logs. Bad input raises, so the job (and the pipeline) fails instead of shipping
a model trained on nothing.
"""

import argparse
import csv
import glob
import os
import sys

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MODEL_FILE = "model.joblib"
VALIDATION_FRACTION = 0.2
RANDOM_STATE = 42


class DataError(ValueError):
    """The training data cannot be used; the message says which file and why."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Hyperparameters as SageMaker passes them (`--name value`), and the container's folders."""
    parser = argparse.ArgumentParser(description="Train the Iris random-forest classifier.")
    parser.add_argument("--n-estimators", type=int, default=100, help="Trees in the forest")
    parser.add_argument("--max-depth", type=int, default=4, help="Maximum depth of each tree")
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("SM_MODEL_DIR", "model-out"),
        help="Where model.joblib is saved (default: $SM_MODEL_DIR)",
    )
    parser.add_argument(
        "--train",
        default=os.environ.get("SM_CHANNEL_TRAIN", "data"),
        help="Folder of *.csv training files (default: $SM_CHANNEL_TRAIN)",
    )
    args = parser.parse_args(argv)
    if args.n_estimators < 1 or args.max_depth < 1:
        parser.error("--n-estimators and --max-depth must be at least 1")
    return args


def _is_header(row: list[str]) -> bool:
    try:
        float(row[0])
    except ValueError:
        return True
    return False


def read_file(path: str) -> tuple[list[list[float]], list[str]]:
    """Rows of one CSV file: four measurements then the species name; an optional header row."""
    features, labels = [], []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if number == 1 and _is_header(row):
                continue
            if len(row) != len(FEATURES) + 1:
                raise DataError(
                    "{}: line {}: expected {} columns ({}, species), found {}".format(
                        path, number, len(FEATURES) + 1, ", ".join(FEATURES), len(row)
                    )
                )
            try:
                values = [float(cell) for cell in row[: len(FEATURES)]]
            except ValueError:
                raise DataError(f"{path}: line {number}: the first {len(FEATURES)} columns must be numbers") from None
            label = row[-1].strip()
            if not label:
                raise DataError(f"{path}: line {number}: the species column is empty")
            features.append(values)
            labels.append(label)
    return features, labels


def load_dataset(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Every *.csv in the training folder, as a feature matrix and a label vector."""
    paths = sorted(glob.glob(os.path.join(folder, "*.csv")))
    if not paths:
        raise DataError(f"no *.csv files in the training folder '{folder}'")
    features, labels = [], []
    for path in paths:
        rows, names = read_file(path)
        features.extend(rows)
        labels.extend(names)
    if not features:
        raise DataError(f"the *.csv files in '{folder}' hold no data rows")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"need at least two species to train a classifier, found {classes}")
    return np.array(features, dtype=float), np.array(labels)


def train(x: np.ndarray, y: np.ndarray, n_estimators: int, max_depth: int) -> tuple[RandomForestClassifier, float]:
    """Fit on a stratified 80 % and return the model with its accuracy on the held-out 20 %."""
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=RANDOM_STATE
        )
    except ValueError as exc:
        # Stratifying needs a few rows of every species; say so rather than sklearn's wording alone.
        raise DataError(f"cannot split the data 80/20 by species: {exc}") from exc
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=RANDOM_STATE)
    model.fit(x_train, y_train)
    return model, float(model.score(x_val, y_val))


def main(argv: list[str] | None = None) -> int:
    """Train, print the validation metric line, save model.joblib; raise on unusable input."""
    args = parse_args(argv)
    x, y = load_dataset(args.train)
    model, accuracy = train(x, y, args.n_estimators, args.max_depth)
    print(f"trained on {len(y)} rows of {len(model.classes_)} species")
    print(f"validation:accuracy={accuracy:.4f}")
    os.makedirs(args.model_dir, exist_ok=True)
    joblib.dump(model, os.path.join(args.model_dir, MODEL_FILE))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as exc:
        # A one-line reason and exit 1: the job fails, and its FailureReason reads like the cause.
        sys.exit(f"train.py: error: {exc}")
