"""Pre- and post-processing for the Iris TensorFlow model in the SageMaker TensorFlow Serving
container (aws/sagemaker-tensorflow-serving-container): it runs /opt/ml/model/code/inference.py
(Train repacks this folder into model.tar.gz under code/, as the SageMaker SDK does) and installs
code/requirements.txt if there is one. input_handler turns a request into TensorFlow Serving's
REST body; TensorFlow Serving predicts; output_handler turns its answer into the response.

Requests: `text/csv` rows of four measurements, or `application/json` `{"instances": [[...]]}`.
Responses: `{"predictions": ["setosa", ...]}`.
"""

import json

SPECIES = ("setosa", "versicolor", "virginica")
JSON = "application/json"
CSV = "text/csv"


def input_handler(data, context):
    """The request body as TensorFlow Serving's `{"instances": [[4 numbers], ...]}`."""
    body = data.read().decode("utf-8")
    media_type = (context.request_content_type or "").split(";")[0].strip().lower()
    if media_type == CSV:
        rows = [[float(cell) for cell in line.split(",")] for line in body.splitlines() if line.strip()]
    elif media_type == JSON:
        rows = json.loads(body).get("instances")
    else:
        raise ValueError(f"unsupported content type '{context.request_content_type}': send {CSV} or {JSON}")
    if not rows or any(len(row) != 4 for row in rows):
        raise ValueError("expected rows of four measurements")
    return json.dumps({"instances": rows})


def output_handler(response, context):
    """TensorFlow Serving's scores as `{"predictions": [species, ...]}`, with its content type."""
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    scores = json.loads(response.content)["predictions"]
    names = [SPECIES[max(range(len(row)), key=row.__getitem__)] for row in scores]
    return json.dumps({"predictions": names}), JSON
