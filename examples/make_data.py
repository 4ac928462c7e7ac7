"""Writes the built-in algorithm examples' tiny data sets (no download): run from the repository root,
`python examples/make_data.py`. The CSVs come from model/data/iris.csv (the Iris data set as it ships in
scikit-learn); the images are 32x32 PNGs of two colours, written with the standard library."""

from __future__ import annotations

import base64
import csv
import json
import random
import struct
import zlib
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
IRIS = EXAMPLES.parent / "model" / "data" / "iris.csv"
SIDE = 32


def _iris_rows(positive: str) -> list[list[str]]:
    """Iris rows as the built-ins read CSV: label first (1 for `positive`, else 0), no header, shuffled."""
    with IRIS.open() as handle:
        rows = [[str(int(row[-1] == positive)), *row[:4]] for row in list(csv.reader(handle))[1:]]
    random.Random(0).shuffle(rows)  # linear learner refuses data sorted by label
    return rows


def write_csv_channels(folder: Path, positive: str) -> None:
    """train/ and validation/ (every fifth row) of a binary task on iris."""
    rows = _iris_rows(positive)
    for channel, part in (("train", [r for i, r in enumerate(rows) if i % 5]), ("validation", rows[::5])):
        (folder / channel).mkdir(parents=True, exist_ok=True)
        with (folder / channel / f"{channel}.csv").open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(part)


def png(rgb: tuple[int, int, int], seed: int) -> bytes:
    """A SIDE x SIDE PNG of one colour with a little noise (so no two images are the same)."""
    noise = random.Random(seed)
    raw = b"".join(
        b"\x00" + bytes(max(0, min(255, c + noise.randint(-20, 20))) for _ in range(SIDE) for c in rgb)
        for _ in range(SIDE)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def write_image_channels(folder: Path, per_class: dict[str, int]) -> None:
    """train/, validation/ (PNG files per class folder) and train_lst/, validation_lst/ (their .lst:
    index, label, path relative to the image channel, tab-separated)."""
    for channel, count in per_class.items():
        lines = []
        for label, (name, rgb) in enumerate(COLOURS.items()):
            for i in range(count):
                path = f"{name}/{name}-{i}.png"
                (folder / channel / name).mkdir(parents=True, exist_ok=True)
                (folder / channel / path).write_bytes(png(rgb, zlib.crc32(f"{channel}/{path}".encode())))
                lines.append(f"{len(lines)}\t{label}\t{path}\n")
        (folder / f"{channel}_lst").mkdir(parents=True, exist_ok=True)
        (folder / f"{channel}_lst" / f"{channel}.lst").write_text("".join(lines))


def image_payload(name: str, seed: int) -> str:
    """An image as body_base64 for an endpoint-test case."""
    return base64.b64encode(png(COLOURS[name], seed)).decode()


def main() -> None:
    """Write every example's data and image payloads."""
    write_csv_channels(EXAMPLES / "builtin-xgboost" / "data", "virginica")
    write_csv_channels(EXAMPLES / "linear-learner" / "data", "setosa")
    write_image_channels(EXAMPLES / "image-classification" / "data", {"train": 8, "validation": 4})
    tests = EXAMPLES / "image-classification" / "endpoint-tests"
    tests.mkdir(parents=True, exist_ok=True)
    for label, name in enumerate(COLOURS):
        expected = [1.0 if i == label else 0.0 for i in range(len(COLOURS))]
        case = {
            "description": f"A {name} image is class {label} (probabilities within 0.5: the right class wins)",
            "content_type": "application/x-image",
            "accept": "application/json",
            "body_base64": image_payload(name, 4242 + label),
            "expected": expected,
            "tolerance": 0.5,
        }
        (tests / f"{name}.json").write_text(json.dumps(case) + "\n")


if __name__ == "__main__":
    main()
