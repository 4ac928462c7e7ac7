"""Hosting handlers for the Iris XGBoost classifier, called by the SageMaker XGBoost container
(script mode: model_fn once, then input_fn -> predict_fn -> output_fn for each request).

Requests: `text/csv` rows of four measurements, or `application/json` `{"instances": [[...]]}`.
Responses: `{"predictions": ["setosa", ...]}`.
"""

import json
import os

import numpy as np
import xgboost as xgb

SPECIES = ("setosa", "versicolor", "virginica")
MODEL_FILE = "xgboost-model.json"
JSON = "application/json"
CSV = "text/csv"


def model_fn(model_dir):
    """Load the booster train.py saved."""
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, MODEL_FILE))
    return booster


def input_fn(request_body, content_type):
    """A text/csv or application/json body as an (n, 4) array."""
    if isinstance(request_body, (bytes, bytearray)):
        request_body = request_body.decode("utf-8")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == CSV:
        rows = [line.split(",") for line in request_body.splitlines() if line.strip()]
    elif media_type == JSON:
        rows = json.loads(request_body).get("instances")
    else:
        raise ValueError(f"unsupported content type '{content_type}': send {CSV} or {JSON}")
    data = np.array(rows, dtype=float)
    if data.ndim != 2 or data.shape[1] != 4:
        raise ValueError("expected rows of four measurements")
    return data


def predict_fn(data, model):
    """The species of each row."""
    return [SPECIES[index] for index in model.predict(xgb.DMatrix(data)).argmax(axis=1)]


def output_fn(prediction, accept):
    """`{"predictions": [...]}` as JSON, with its content type."""
    if (accept or "").split(";")[0].strip().lower() not in ("", "*/*", JSON):
        raise ValueError(f"unsupported accept type '{accept}': this model answers {JSON}")
    return json.dumps({"predictions": list(prediction)}), JSON
