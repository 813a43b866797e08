"""Read the history rows back from a W&B offline run (``run-*.wandb``), for the tests.

The file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of records, each ``crc32 (4) | length (2, little-endian) | type (1)`` and
its bytes (type 1 full, 2 first, 3 middle, 4 last piece), a ``wandb_internal_pb2.Record``.
wandb >= 0.19 no longer ships a Python reader, so this is one.
"""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
RECORD_HEADER = 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, "not a W&B record log"
    pos, pieces = HEADER, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:
            pos += left_in_block  # the block's tail is padding
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        if length == 0 and kind == 0:
            pos += left_in_block
            continue
        body = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        pieces = body if kind in (1, 2) else pieces + body
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            yield record
            pieces = b""


def history(run_dir: Path) -> list[dict]:
    """Every logged history row of the offline run in ``run_dir`` (``offline-run-*``), keys to values."""
    (log,) = Path(run_dir).glob("run-*.wandb")
    rows = []
    for record in records(log):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                path = [item.key] if item.key else list(item.nested_key)
                target = row
                for part in path[:-1]:  # a histogram is nested: [name, "_type"], [name, "values"], ...
                    target = target.setdefault(part, {})
                target[path[-1]] = json.loads(item.value_json)
            rows.append(row)
    return rows


@contextmanager
def offline_wandb(monkeypatch, folder: Path):
    """W&B in offline mode, writing under ``folder``; on exit the active run is finished and wandb's
    service process stopped, so that its record log is complete on disk before it is read."""
    import wandb

    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(folder),
                       "WANDB_PROJECT": "adamdist-test"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield
    finally:
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()


def run_folder(run) -> Path:
    """The ``offline-run-*`` folder of ``run`` (wandb keeps its first run's folder per process, so ask the run)."""
    return Path(run.dir).parent
