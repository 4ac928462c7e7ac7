"""Train an Iris classifier with PyTorch: the SageMaker PyTorch container's script-mode entry point.

The container (sagemaker-training toolkit) runs `python train.py --epochs 200 --hidden 16
--learning-rate 0.05` with the `train` channel in SM_CHANNEL_TRAIN and the folder to save the model
to in SM_MODEL_DIR (uploaded as model.tar.gz). The pipeline's Train step then repacks that archive
with this folder under code/, as the SageMaker SDK does for PyTorch >= 1.2. Locally:

    python examples/pytorch/model/train.py --train examples/pytorch/model/data --model-dir build/pt

Prints `validation:accuracy=...`, the line the pipeline's quality gate reads. Bad data raises.
"""

import argparse
import csv
import glob
import os

import torch
from torch import nn

SPECIES = ("setosa", "versicolor", "virginica")
MODEL_FILE = "model.pth"
SEED = 42


def parse_args(argv=None):
    """Hyperparameters as SageMaker passes them (`--name value`), and the container's folders."""
    parser = argparse.ArgumentParser(description="Train the Iris PyTorch classifier.")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model-out"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data"))
    return parser.parse_args(argv)


def build(hidden):
    """The network: four measurements -> hidden units -> three species scores."""
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, len(SPECIES)))


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
    return torch.tensor(features), torch.tensor(labels)


def main(argv=None):
    """Train, validate on a held-out fifth, save the weights and the width in the model folder."""
    args = parse_args(argv)
    torch.manual_seed(SEED)
    features, labels = read_data(args.train)
    order = torch.randperm(len(labels))
    held, kept = order[: len(order) // 5], order[len(order) // 5 :]
    model = build(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    for _ in range(args.epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(features[kept]), labels[kept])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(features[held]).argmax(dim=1) == labels[held]).float().mean().item()
    print(f"validation:accuracy={accuracy:.4f}")
    os.makedirs(args.model_dir, exist_ok=True)
    torch.save({"hidden": args.hidden, "state": model.state_dict()}, os.path.join(args.model_dir, MODEL_FILE))


if __name__ == "__main__":
    main()
