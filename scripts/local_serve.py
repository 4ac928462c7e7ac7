"""Serve a model on 127.0.0.1 with the SageMaker endpoint HTTP contract, as the scikit-learn image does.

What the scikit-learn serving image (1.2-1) runs is `sagemaker_sklearn_container.serving` on
`sagemaker-containers`' Flask worker behind gunicorn and nginx (aws/sagemaker-scikit-learn-container,
src/sagemaker_sklearn_container/serving.py). `sagemaker-containers` 2.8.6 does not import on Python
>= 3.10 (`collections.Mapping`, and protobuf code generated for protobuf 3), and the container
package is not on PyPI, so this module does what those two do, minimally, on the standard library:

- `GET /ping`: 200 with an empty body once the model is loaded (the worker's default health check).
- `POST /invocations`: the content type is the `ContentType` or `Content-Type` header, else
  application/json; the accept type is `Accept` unless missing or `*/*`, then
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT or application/json. The body reaches input_fn as text for
  application/json and text/csv, as bytes otherwise.
- The handlers: the user module's model_fn (required: the scikit-learn image has no default),
  input_fn/predict_fn/output_fn or transform_fn (not both), the image's defaults for the ones it
  leaves out: decode with sagemaker-inference's decoder (float32 for csv/json), `model.predict`,
  encode with its encoder in the accept type. A result `(body, content_type)` is answered with that
  content type.
- Errors: an UnsupportedFormatError from input_fn is 415, from output_fn 406, with the worker's
  JSON body (error, error-message, stack-trace); any other exception in a handler is a 500.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from scripts.common import StageFailure

JSON = "application/json"
CSV = "text/csv"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
# SageMaker's limit on an InvokeEndpoint payload (6 MB).
MAX_BODY_BYTES = 6 * 1024 * 1024


class UnsupportedFormat(Exception):
    """A content or accept type the default handlers cannot decode or encode."""


def _unsupported_types() -> tuple[type[BaseException], ...]:
    from sagemaker_inference import errors

    return (errors.UnsupportedFormatError, UnsupportedFormat)


def default_input_fn(input_data: Any, content_type: str) -> Any:
    """The scikit-learn image's default: decode to a numpy array, float32 for csv and json."""
    import numpy as np
    from sagemaker_inference import decoder

    array = decoder.decode(input_data, content_type)
    return array.astype(np.float32) if content_type in UTF8_TYPES else array


def default_predict_fn(data: Any, model: Any) -> Any:
    """The scikit-learn image's default: `model.predict(data)`."""
    return model.predict(data)


def default_output_fn(prediction: Any, accept: str) -> tuple[Any, str]:
    """The scikit-learn image's default: encode the prediction in the accept type."""
    from sagemaker_inference import encoder

    return encoder.encode(prediction, accept), accept


@dataclass
class Handlers:
    """The user module's handlers with the image's defaults filled in."""

    model: Any
    input_fn: Callable[[Any, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    transform_fn: Callable[[Any, Any, str, str], Any] | None = None
    code_dir: Path | None = None

    def transform(self, content: Any, content_type: str, accept: str) -> tuple[int, bytes, str]:
        """(status, body, content type) for one invocation."""
        unsupported = _unsupported_types()
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, content, content_type, accept)
        else:
            try:
                data = self.input_fn(content, content_type)
            except unsupported as exc:
                return _error(exc, 415)
            prediction = self.predict_fn(data, self.model)
            try:
                result = self.output_fn(prediction, accept)
            except unsupported as exc:
                return _error(exc, 406)
        body, mimetype = result if isinstance(result, tuple) else (result, accept)
        if isinstance(body, str):
            body = body.encode("utf-8")
        return 200, bytes(body), str(mimetype)


def _error(exc: BaseException, status: int) -> tuple[int, bytes, str]:
    body = {"error": type(exc).__name__, "error-message": str(exc), "stack-trace": traceback.format_exc()}
    return status, json.dumps(body).encode("utf-8"), JSON


def import_handlers(code_dir: Path, entry_point: str) -> ModuleType:
    """Import the inference script as the image does: by module name, its folder on sys.path."""
    path = code_dir / entry_point
    if not path.is_file():
        raise StageFailure(f"no {entry_point} in {code_dir}")
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    name = Path(entry_point).stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise StageFailure(f"importing {entry_point}: {_where(exc, code_dir)}") from None
    return module


def _where(exc: BaseException, code_dir: Path | None = None) -> str:
    """`Type: message (file:line)` at the innermost frame in `code_dir` (the user's code), else the innermost."""
    every = list(traceback.extract_tb(exc.__traceback__))
    mine = [f for f in every if code_dir is not None and Path(f.filename).resolve().is_relative_to(code_dir.resolve())]
    frames = mine or every
    at = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{at}"


def load_handlers(code_dir: Path, entry_point: str, model_dir: Path) -> Handlers:
    """The handlers, with model_fn called once (as the image does before it answers /ping)."""
    module = import_handlers(code_dir, entry_point)
    model_fn = getattr(module, "model_fn", None)
    if model_fn is None:
        raise StageFailure(f"{entry_point} defines no model_fn (the scikit-learn image has no default model_fn)")
    given = {name: getattr(module, name, None) for name in ("input_fn", "predict_fn", "output_fn")}
    transform_fn = getattr(module, "transform_fn", None)
    if transform_fn is not None and any(given.values()):
        raise StageFailure(f"{entry_point}: cannot use transform_fn with input_fn, predict_fn and/or output_fn")
    try:
        model = model_fn(str(model_dir))
    except Exception as exc:
        raise StageFailure(f"{entry_point}: model_fn failed: {_where(exc, code_dir)}") from None
    return Handlers(
        model=model,
        input_fn=given["input_fn"] or default_input_fn,
        predict_fn=given["predict_fn"] or default_predict_fn,
        output_fn=given["output_fn"] or default_output_fn,
        transform_fn=transform_fn,
        code_dir=code_dir,
    )


def request_types(headers: Any) -> tuple[str, str]:
    """(content type, accept) of a request as the image's worker reads them."""
    content_type = headers.get("ContentType") or headers.get("Content-Type") or JSON
    accept = headers.get("Accept")
    if not accept or accept == ANY:
        accept = os.environ.get(DEFAULT_ACCEPT_ENV, JSON)
    return content_type, accept


def make_handler(handlers: Handlers) -> type[BaseHTTPRequestHandler]:
    """The HTTP request handler class bound to loaded handlers."""

    class Endpoint(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the endpoint test prints one line per case

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/ping":
                self._reply(200, b"", JSON)
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/invocations":
                self._reply(404, b"not found", "text/plain")
                return
            if length > MAX_BODY_BYTES:
                self._reply(413, b"payload over 6 MB", "text/plain")
                return
            raw = self.rfile.read(length)
            content_type, accept = request_types(self.headers)
            content: Any = raw.decode("utf-8") if content_type in UTF8_TYPES else raw
            try:
                status, body, mimetype = handlers.transform(content, content_type, accept)
            except Exception as exc:
                status, body, mimetype = 500, _where(exc, handlers.code_dir).encode("utf-8"), "text/plain"
            self._reply(status, body, mimetype)

    return Endpoint


@dataclass
class Server:
    """A running local endpoint."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def serve_model(code_dir: Path, entry_point: str, model_dir: Path) -> Server:
    """Load the handlers and answer on 127.0.0.1 at a free port, in a background thread."""
    handlers = load_handlers(code_dir, entry_point, model_dir)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(handlers))
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-endpoint", daemon=True
    )
    thread.start()
    return Server(httpd, thread)
