"""Hosting handlers for the Iris PyTorch classifier, called by the SageMaker PyTorch serving
container (sagemaker-pytorch-inference-toolkit: model_fn once, then input_fn -> predict_fn ->
output_fn for each request). Train repacks this folder into model.tar.gz under code/, and the
endpoint sets SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code, as the SageMaker SDK does.

Requests: `text/csv` rows of four measurements, or `application/json` `{"instances": [[...]]}`.
Responses: `{"predictions": ["setosa", ...]}`.
"""

import json
import os

import torch
from torch import nn

SPECIES = ("setosa", "versicolor", "virginica")
MODEL_FILE = "model.pth"
JSON = "application/json"
CSV = "text/csv"


def model_fn(model_dir):
    """Rebuild the network train.py saved and load its weights."""
    saved = torch.load(os.path.join(model_dir, MODEL_FILE), map_location="cpu")
    hidden = saved["hidden"]
    model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, len(SPECIES)))
    model.load_state_dict(saved["state"])
    return model.eval()


def input_fn(request_body, content_type):
    """A text/csv or application/json body as an (n, 4) tensor."""
    if isinstance(request_body, (bytes, bytearray)):
        request_body = request_body.decode("utf-8")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == CSV:
        rows = [[float(cell) for cell in line.split(",")] for line in request_body.splitlines() if line.strip()]
    elif media_type == JSON:
        rows = json.loads(request_body).get("instances")
    else:
        raise ValueError(f"unsupported content type '{content_type}': send {CSV} or {JSON}")
    data = torch.tensor(rows, dtype=torch.float32)
    if data.ndim != 2 or data.shape[1] != 4:
        raise ValueError("expected rows of four measurements")
    return data


def predict_fn(data, model):
    """The species of each row."""
    with torch.no_grad():
        return [SPECIES[index] for index in model(data).argmax(dim=1).tolist()]


def output_fn(prediction, accept):
    """`{"predictions": [...]}` as JSON, with its content type."""
    if (accept or "").split(";")[0].strip().lower() not in ("", "*/*", JSON):
        raise ValueError(f"unsupported accept type '{accept}': this model answers {JSON}")
    return json.dumps({"predictions": list(prediction)}), JSON
