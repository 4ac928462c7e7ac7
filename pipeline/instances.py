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
