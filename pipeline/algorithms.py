"""SageMaker's built-in algorithms: their images, training channels, metrics and serving content types.

A built-in algorithm (`model.algorithm` in pipeline.yml) trains and serves in SageMaker's own image:
no entry point, no source code, no script-mode settings. An `Algorithm` is a `Framework` as far as
images go (the same tables, written by pipeline.images from sagemaker-core, and the same
`image_uri`, `processors`, `repositories`), so the config, the templates and the train step ask it
the same questions; what differs is its container contract:

- hyperparameters go to the job as plain strings (sagemaker 2.232.0, estimator.py: the generic
  `Estimator.hyperparameters()` returns them as given and `_TrainingJob.start_new` sends
  ``to_string(v)`` of each; only `Framework.hyperparameters()` JSON-encodes). One difference: true
  and false go lowercase, as the algorithms' docs write them (Python's str() would send "True");
- the serving container needs no environment (no SAGEMAKER_PROGRAM / SUBMIT_DIRECTORY);
- the job reads named channels (train, validation, ...), each with a content type;
- the metrics are the algorithm's own (it logs them itself: the job has no MetricDefinitions), and
  the quality gate must name one of them.

The channels, content types, metric names and instance kinds are the SageMaker Developer Guide's,
each table citing its page (found with the docs search; not checkable offline).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.frameworks import Framework


@dataclass(frozen=True)
class ChannelSpec:
    """A training channel an algorithm reads: its name, whether the job needs it, its content types."""

    name: str
    required: bool
    content_types: tuple[str, ...]


@dataclass(frozen=True)
class Algorithm(Framework):
    """A SageMaker built-in algorithm (its images from the same tables as the frameworks)."""

    channels: tuple[ChannelSpec, ...] = ()
    # The channels a config gets when it names none: name -> content type.
    default_channels: tuple[tuple[str, str], ...] = ()
    metrics: tuple[str, ...] = ()
    metrics_source: str = ""
    serving_content_types: tuple[str, ...] = ()
    # Instance kinds (pipeline.instances.processor) per scope, from the algorithm's docs page; the
    # tables list no processor for these images (one image runs on both).
    training_processors: tuple[str, ...] = ("cpu", "gpu")
    serving_processors: tuple[str, ...] = ("cpu", "gpu")
    instances_source: str = ""
    # Image classification: with image files (not RecordIO) the job also needs the .lst channels.
    lst_channels: tuple[str, ...] = ()

    def _choices(self, version: str, scope: str, processor: str) -> list[dict[str, str]]:
        """As Framework's, but only on the instance kinds the algorithm's docs allow for the scope."""
        allowed = self.training_processors if scope == "training" else self.serving_processors
        return super()._choices(version, scope, processor) if processor in allowed else []

    def channel(self, name: str) -> ChannelSpec | None:
        """The algorithm's channel of that name, or None."""
        return next((spec for spec in self.channels if spec.name == name), None)

    def channel_problem(self, channels: dict[str, str]) -> str | None:
        """Why these channels (name -> content type) cannot feed the algorithm, or None."""
        for name, content_type in channels.items():
            spec = self.channel(name)
            if spec is None:
                known = ", ".join(each.name for each in self.channels)
                return f"'{name}' is not a channel {self.title} reads (one of: {known})"
            if content_type not in spec.content_types:
                return (
                    f"{name}.content_type: '{content_type}' is not one {self.title} reads on {name} "
                    f"(one of: {', '.join(spec.content_types)})"
                )
        missing = [spec.name for spec in self.channels if spec.required and spec.name not in channels]
        if missing:
            return f"{self.title} needs the channel(s) {', '.join(missing)}"
        images = [
            name
            for name, kind in channels.items()
            if kind != "application/x-recordio" and name not in self.lst_channels
        ]
        lacking = [name for name in self.lst_channels if name not in channels]
        if images and self.lst_channels and lacking:
            return (
                f"with image files ({', '.join(images)}) {self.title} also needs the list channels "
                f"{', '.join(lacking)} (each image's index, label and path); or send RecordIO (application/x-recordio)"
            )
        return None

    def training_hyperparameters(
        self, user: dict[str, object], entry_point: str, code_uri: str, region: str, job_output: str = ""
    ) -> dict[str, str]:
        """The job's HyperParameters: the user's only, each a plain string (true/false lowercase, as the
        algorithms' docs write them); entry point, code and region do not apply."""
        return {key: plain_value(value) for key, value in user.items()}

    def serving_environment(
        self, entry_point: object, code_uri: object, region: object, version: str = ""
    ) -> dict[str, object]:
        """A built-in's serving container takes no script-mode environment."""
        return {}


def plain_value(value: object) -> str:
    """A hyperparameter as a built-in algorithm reads it: the text itself, a number as written, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_CSV_LIKE = ("text/csv", "text/libsvm", "application/x-parquet", "application/x-recordio-protobuf")

# https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost.html (input/output interface; the versions
# table: 0.90-x deprecated) and xgboost-tuning.html ("Evaluation Metrics Computed by the XGBoost
# Algorithm"). Built-in mode runs in the framework-mode image (sagemaker-xgboost), as the SDK does.
XGBOOST = Algorithm(
    name="xgboost",
    title="built-in XGBoost",
    table_file="images/xgboost.json",
    withheld=("0.90-1", "0.90-2"),
    channels=(ChannelSpec("train", True, _CSV_LIKE), ChannelSpec("validation", False, _CSV_LIKE)),
    default_channels=(("train", "text/csv"), ("validation", "text/csv")),
    metrics=tuple(
        f"validation:{name}"
        for name in (
            "accuracy",
            "auc",
            "error",
            "f1",
            "logloss",
            "mae",
            "map",
            "merror",
            "mlogloss",
            "mse",
            "ndcg",
            "rmse",
        )
    ),
    metrics_source="https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost-tuning.html",
    # sagemaker-xgboost-container, algorithm_mode/serve_utils.py (get_content_type / data_utils).
    serving_content_types=("text/csv", "text/libsvm", "text/x-libsvm", "application/x-recordio-protobuf"),
    instances_source="https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost.html",
)

_LL_METRICS = (
    "absolute_loss",
    "binary_classification_accuracy",
    "binary_f_beta",
    "dcg",
    "macro_f_beta",
    "macro_precision",
    "macro_recall",
    "mse",
    "multiclass_accuracy",
    "multiclass_top_k_accuracy",
    "objective_loss",
    "precision",
    "recall",
    "rmse",
    "roc_auc_score",
)
_LL_TYPES = ("text/csv", "application/x-recordio-protobuf")

# https://docs.aws.amazon.com/sagemaker/latest/dg/linear-learner.html (channels train, validation,
# test; CSV or RecordIO-protobuf; CPU or GPU instances) and linear-learner-tuning.html (the metrics,
# each on the test and the validation channel).
LINEAR_LEARNER = Algorithm(
    name="linear-learner",
    title="Linear Learner",
    table_file="images/linear-learner.json",
    channels=(
        ChannelSpec("train", True, _LL_TYPES),
        ChannelSpec("validation", False, _LL_TYPES),
        ChannelSpec("test", False, _LL_TYPES),
    ),
    default_channels=(("train", "text/csv"), ("validation", "text/csv")),
    metrics=tuple(f"{channel}:{name}" for channel in ("test", "validation") for name in _LL_METRICS),
    metrics_source="https://docs.aws.amazon.com/sagemaker/latest/dg/linear-learner-tuning.html",
    serving_content_types=("text/csv", "application/json", "application/x-recordio-protobuf"),
    instances_source="https://docs.aws.amazon.com/sagemaker/latest/dg/linear-learner.html",
)

_IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png")

# https://docs.aws.amazon.com/sagemaker/latest/dg/image-classification.html: RecordIO
# (application/x-recordio: train, validation) or images (train, validation, train_lst,
# validation_lst); "EC2 Instance Recommendation": trains on GPU instances (P2, P3, G4dn, G5), serves
# on CPU or GPU. IC-tuning.html: the one metric it computes, validation:accuracy.
IMAGE_CLASSIFICATION = Algorithm(
    name="image-classification",
    title="Image Classification",
    table_file="images/image-classification.json",
    channels=(
        ChannelSpec("train", True, ("application/x-recordio", *_IMAGE_TYPES)),
        ChannelSpec("validation", True, ("application/x-recordio", *_IMAGE_TYPES)),
        ChannelSpec("train_lst", False, _IMAGE_TYPES),
        ChannelSpec("validation_lst", False, _IMAGE_TYPES),
    ),
    default_channels=(
        ("train", "application/x-image"),
        ("validation", "application/x-image"),
        ("train_lst", "application/x-image"),
        ("validation_lst", "application/x-image"),
    ),
    metrics=("validation:accuracy",),
    metrics_source="https://docs.aws.amazon.com/sagemaker/latest/dg/IC-tuning.html",
    serving_content_types=("application/x-image", "image/jpeg", "image/png"),
    training_processors=("gpu",),
    lst_channels=("train_lst", "validation_lst"),
    instances_source="https://docs.aws.amazon.com/sagemaker/latest/dg/image-classification.html",
)

ALGORITHMS: dict[str, Algorithm] = {each.name: each for each in (XGBOOST, LINEAR_LEARNER, IMAGE_CLASSIFICATION)}
