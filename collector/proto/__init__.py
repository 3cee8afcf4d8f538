"""Eclipse Tahu's `sparkplug_b.proto` (EPL-2.0, vendored unchanged) and what protoc makes from it.

Both protoc outputs are committed: `sparkplug_b_pb2.py(i)` (the collector's payload classes) and
`sparkplug_b.desc` (the `FileDescriptorSet` AWS IoT's `decode(*, 'proto', ...)` reads from S3). The
collector image installs only `.[collector]` (the `protobuf` runtime) and infra needs no compiler at
deploy time, so both build offline and identically. `tests/collector/test_sparkplug_proto.py` recompiles
the .proto with the pinned `grpcio-tools` protoc and fails when a committed output differs. Regenerate:

    .venv/bin/python -m grpc_tools.protoc -Icollector/proto --python_out=collector/proto \
        --pyi_out=collector/proto --descriptor_set_out=collector/proto/sparkplug_b.desc \
        --include_imports collector/proto/sparkplug_b.proto

The proto's file name and package are part of the cloud contract: AWS IoT's `decode(*, 'proto', ...)`
names the file (without `.proto`) and the fully qualified message type.
"""

from __future__ import annotations

from pathlib import Path

PROTO_FILE = Path(__file__).with_name("sparkplug_b.proto")
DESCRIPTOR_SET_FILE = Path(__file__).with_name("sparkplug_b.desc")
PROTO_NAME = "sparkplug_b"  # file name without extension, as AWS IoT's decode() wants it
PAYLOAD_TYPE = "org.eclipse.tahu.protobuf.Payload"
# Eclipse Tahu commit the .proto was copied from, unchanged.
TAHU_COMMIT = "5736e404889d4b95910613040a99ba79589ffb13"


def descriptor_set() -> bytes:
    """The serialized `FileDescriptorSet` of sparkplug_b.proto, as `protoc --descriptor_set_out` wrote it."""
    return DESCRIPTOR_SET_FILE.read_bytes()
