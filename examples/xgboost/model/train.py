"""Train an Iris classifier with XGBoost: the SageMaker XGBoost container's script-mode entry point.

The container (sagemaker-xgboost-container, framework mode) runs `python train.py --num-round 50
--max-depth 3 --eta 0.3` with the `train` channel in SM_CHANNEL_TRAIN and the folder to save the
model to in SM_MODEL_DIR (uploaded as model.tar.gz when the job ends). Locally:

    python examples/xgboost/model/train.py --train examples/xgboost/model/data --model-dir build/xgb

Prints `validation:accuracy=...`, the line the pipeline's quality gate reads. Bad data raises.
"""

import argparse
import csv
import glob
import os

import numpy as np
import xgboost as xgb

SPECIES = ("setosa", "versicolor", "virginica")
MODEL_FILE = "xgboost-model.json"
RANDOM_STATE = 42


def parse_args(argv=None):
    """Hyperparameters as SageMaker passes them (`--name value`), and the container's folders."""
    parser = argparse.ArgumentParser(description="Train the Iris XGBoost classifier.")
    parser.add_argument("--num-round", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--eta", type=float, default=0.3)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model-out"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data"))
    return parser.parse_args(argv)


def read_data(folder):
    """Features and species indexes of every *.csv in the folder (header rows skipped)."""
    features, labels = [], []
    files = sorted(glob.glob(os.path.join(folder, "*.csv")))
    if not files:
        raise ValueError(f"{folder}: no *.csv training files")
    for path in files:
        with open(path, newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or row[-1] == "species":
                    continue
                if len(row) != 5 or row[4] not in SPECIES:
                    raise ValueError(f"{path}: line {number}: expected four numbers and a species")
                features.append([float(cell) for cell in row[:4]])
                labels.append(SPECIES.index(row[4]))
    return np.array(features), np.array(labels)


def main(argv=None):
    """Train, validate on a held-out fifth, save the booster as JSON in the model folder."""
    args = parse_args(argv)
    features, labels = read_data(args.train)
    order = np.random.default_rng(RANDOM_STATE).permutation(len(labels))
    held = order[: len(order) // 5]
    kept = order[len(order) // 5 :]
    params = {"objective": "multi:softprob", "num_class": len(SPECIES), "max_depth": args.max_depth}
    params.update(eta=args.eta, seed=RANDOM_STATE)
    booster = xgb.train(params, xgb.DMatrix(features[kept], label=labels[kept]), args.num_round)
    predicted = booster.predict(xgb.DMatrix(features[held])).argmax(axis=1)
    print(f"validation:accuracy={float((predicted == labels[held]).mean()):.4f}")
    os.makedirs(args.model_dir, exist_ok=True)
    booster.save_model(os.path.join(args.model_dir, MODEL_FILE))


if __name__ == "__main__":
    main()
