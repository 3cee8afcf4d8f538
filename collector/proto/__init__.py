"""Eclipse Tahu's `sparkplug_b.proto` (EPL-2.0, vendored unchanged) and the Python module protoc made from it.

Why the generated `sparkplug_b_pb2.py` is committed: the collector image installs only `.[collector]`
(the `protobuf` runtime), never a compiler, so the image builds offline and identically every time.
`tests/collector/test_sparkplug_proto.py` recompiles the .proto with the pinned `grpcio-tools` protoc and
fails when the committed module differs. Regenerate with:

    .venv/bin/python -m grpc_tools.protoc -Icollector/proto --python_out=collector/proto \
        --pyi_out=collector/proto collector/proto/sparkplug_b.proto

The proto's file name and package are part of the cloud contract: AWS IoT's `decode(*, 'proto', ...)`
names the file (without `.proto`) and the fully qualified message type.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

from collector.proto import sparkplug_b_pb2

PROTO_FILE = Path(__file__).with_name("sparkplug_b.proto")
PROTO_NAME = "sparkplug_b"  # file name without extension, as AWS IoT's decode() wants it
PAYLOAD_TYPE = "org.eclipse.tahu.protobuf.Payload"
# Eclipse Tahu commit the .proto was copied from, unchanged.
TAHU_COMMIT = "5736e404889d4b95910613040a99ba79589ffb13"


def descriptor_set() -> bytes:
    """The serialized `FileDescriptorSet` of sparkplug_b.proto, as `protoc --descriptor_set_out` writes it.

    Built from the descriptor protoc compiled into `sparkplug_b_pb2` (no imports to include), so infra
    needs no compiler at deploy time; a test checks it equals protoc's own output byte for byte.
    """
    file_proto = descriptor_pb2.FileDescriptorProto()
    sparkplug_b_pb2.DESCRIPTOR.CopyToProto(file_proto)
    data: bytes = descriptor_pb2.FileDescriptorSet(file=[file_proto]).SerializeToString(deterministic=True)
    return data
