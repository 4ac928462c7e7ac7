"""Facts about SageMaker ML instance types that the templates and scripts depend on."""

from __future__ import annotations

import re

# Families whose storage is local NVMe: SageMaker rejects a volume KMS key for them, because
# instance-store volumes are encrypted by the hardware.
_INSTANCE_STORE_FAMILIES = {"g5", "g6", "g6e", "p4de", "p5", "p5e", "trn1"}
_FAMILY = re.compile(r"^ml\.([a-z0-9]+)\.")


def has_instance_storage(instance_type: str) -> bool:
    """True for types with local NVMe storage (m5d, c5d, g4dn, p4d, g5, ...), where SageMaker refuses a volume KMS key."""
    match = _FAMILY.match(instance_type)
    if not match:
        return False
    family = match.group(1)
    return family in _INSTANCE_STORE_FAMILIES or bool(re.search(r"\d[a-z]*d[n]?$", family))


# Families whose accelerators are GPUs (SageMaker's accelerated computing instances: P and G);
# inf/trn carry AWS Neuron chips, which need the SDK's neuron images (not in our tables).
_GPU_FAMILY = re.compile(r"^(p|g)\d")
_NEURON_FAMILY = re.compile(r"^(inf|trn)\d")


def processor(instance_type: str) -> str:
    """The image processor an instance type runs: 'gpu' (P and G families), 'neuron' (inf, trn) or 'cpu'."""
    match = _FAMILY.match(instance_type)
    family = match.group(1) if match else ""
    if _GPU_FAMILY.match(family):
        return "gpu"
    if _NEURON_FAMILY.match(family):
        return "neuron"
    return "cpu"
