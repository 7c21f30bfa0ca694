"""Read the records of an offline W&B run file (`run-*.wandb`), for tests.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
chunks, each with a 7-byte header (crc32c: 4, length: 2 little-endian, type: 1 = full, 2 = first,
3 = middle, 4 = last); a record's protobuf is the concatenation of its chunks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7


def records(path: str | Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = FILE_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if length == 0 and kind == 0:
            pos += room  # zero padding to the block's end
            continue
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def run_contents(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, summary, run attributes) as the run file states them last."""
    config, summary, run = {}, {}, {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in r.summary.update})
        elif kind == "run":
            run = {
                "group": r.run.run_group,
                "job_type": r.run.job_type,
                "name": r.run.display_name,
                "project": r.run.project,
                "tags": list(r.run.tags),
                "id": r.run.run_id,
            }
            config.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "history":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return config, summary, run
