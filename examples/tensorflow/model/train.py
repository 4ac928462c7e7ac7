"""Train an Iris classifier with TensorFlow (Keras): the SageMaker TensorFlow container's
script-mode entry point.

The container runs `python train.py --epochs 200 --units 16 --learning-rate 0.05 --model_dir
s3://.../<job>/model` (the SageMaker SDK's TensorFlow estimator passes model_dir, an S3 folder for
checkpoints; the pipeline does the same) with the `train` channel in SM_CHANNEL_TRAIN. The model to
serve goes to SM_MODEL_DIR/1/ as a SavedModel: TensorFlow Serving loads <model>/<version number>/.
Locally:

    python examples/tensorflow/model/train.py --train examples/tensorflow/model/data --sm-model-dir build/tf

Prints `validation:accuracy=...`, the line the pipeline's quality gate reads. Bad data raises.
"""

import argparse
import csv
import glob
import os

import numpy as np
import tensorflow as tf

SPECIES = ("setosa", "versicolor", "virginica")
SEED = 42


def parse_args(argv=None):
    """Hyperparameters as SageMaker passes them (`--name value`), model_dir, and the container's folders."""
    parser = argparse.ArgumentParser(description="Train the Iris TensorFlow classifier.")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--model_dir", default=None, help="S3 folder for checkpoints (unused here)")
    parser.add_argument("--sm-model-dir", default=os.environ.get("SM_MODEL_DIR", "model-out"))
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
    return np.array(features, dtype="float32"), np.array(labels)


def main(argv=None):
    """Train, validate on a held-out fifth, export a SavedModel (softmax scores) to <model dir>/1."""
    args = parse_args(argv)
    tf.random.set_seed(SEED)
    features, labels = read_data(args.train)
    order = np.random.default_rng(SEED).permutation(len(labels))
    held, kept = order[: len(order) // 5], order[len(order) // 5 :]
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(4,)),
            tf.keras.layers.Dense(args.units, activation="relu"),
            tf.keras.layers.Dense(len(SPECIES), activation="softmax"),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy")
    model.fit(features[kept], labels[kept], epochs=args.epochs, verbose=0)
    predicted = model.predict(features[held], verbose=0).argmax(axis=1)
    print(f"validation:accuracy={float((predicted == labels[held]).mean()):.4f}")
    model.export(os.path.join(args.sm_model_dir, "1"))


if __name__ == "__main__":
    main()
