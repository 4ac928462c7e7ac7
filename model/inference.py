"""Hosting handlers for the sample Iris classifier, called by the SageMaker scikit-learn container.

The container calls model_fn once, then for each request input_fn -> predict_fn -> output_fn.
Requests are `text/csv` (one row of four measurements per line) or `application/json`
(`{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}`); responses are
`{"predictions": ["setosa", ...]}`. An error raised here reaches the caller as a ModelError
and lands in the endpoint's logs, so every ValueError says what was wrong with the request.
"""

import json
import os
from typing import Any

import joblib
import numpy as np

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MODEL_FILE = "model.joblib"
JSON = "application/json"
CSV = "text/csv"


def model_fn(model_dir: str) -> Any:
    """Load the classifier that train.py saved as model.joblib."""
    return joblib.load(os.path.join(model_dir, MODEL_FILE))


def _media_type(header: str | None) -> str:
    # "text/csv; charset=utf-8" -> "text/csv"
    return (header or "").split(";")[0].strip().lower()


def _rows(rows: Any) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"expected at least one row of {len(FEATURES)} features")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != len(FEATURES):
            found = len(row) if isinstance(row, list) else type(row).__name__
            raise ValueError(
                "row {}: expected {} features ({}), got {}".format(number, len(FEATURES), ", ".join(FEATURES), found)
            )
    try:
        return np.array(rows, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("every feature must be a number") from None


def _parse_csv(text: str) -> np.ndarray:
    rows = [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    return _rows(rows)


def _parse_json(text: str) -> np.ndarray:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or "instances" not in document:
        raise ValueError('expected a JSON object {"instances": [[4 numbers], ...]}')
    return _rows(document["instances"])


def input_fn(request_body: str | bytes, content_type: str) -> np.ndarray:
    """Turn a text/csv or application/json request body into an (n, 4) array of measurements."""
    if isinstance(request_body, (bytes, bytearray)):
        request_body = request_body.decode("utf-8")
    media_type = _media_type(content_type)
    if media_type == CSV:
        return _parse_csv(request_body)
    if media_type == JSON:
        return _parse_json(request_body)
    raise ValueError(f"unsupported content type '{content_type}': send {CSV} or {JSON}")


def predict_fn(data: np.ndarray, model: Any) -> list[str]:
    """Predict the species of each row, as class-name strings."""
    return [str(label) for label in model.predict(data)]


def output_fn(prediction: list[str], accept: str) -> tuple[str, str]:
    """Serialize as `{"predictions": [...]}`; returns (body, content type) as the container expects.

    Returning the content type with the body makes the response say application/json even when
    the caller sent `Accept: */*` or no Accept header at all.
    """
    media_type = _media_type(accept)
    if media_type in ("", "*/*", JSON):
        return json.dumps({"predictions": list(prediction)}), JSON
    raise ValueError(f"unsupported accept type '{accept}': this model answers {JSON}")
