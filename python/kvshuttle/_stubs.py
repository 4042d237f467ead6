"""The generated gRPC stubs of kvshuttle.v1, imported once, with a clear error when missing.

Everything else imports `pb` (messages and enums) and `pb_grpc` (the Shuttle stub) from here.
Feature flags say which optional proto fields the stubs were generated with, so the client works
against the proto of its build (CUDA IPC completion events came after the first release).
"""
from __future__ import annotations

try:
    from kvshuttle.v1 import kvshuttle_pb2 as pb
    from kvshuttle.v1 import kvshuttle_pb2_grpc as pb_grpc
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "kvshuttle: the generated gRPC stubs (kvshuttle.v1.kvshuttle_pb2) are missing or do not "
        f"import ({error}). Install the package (pip install ./python), or generate them with "
        "`python3 python/gen_stubs.py --out DIR` and put DIR on PYTHONPATH.") from error

# Job.completion_event / WaitRequest.until_launched / JobResult.launched exist.
HAS_COMPLETION_EVENT: bool = (
    "completion_event" in pb.Job.DESCRIPTOR.fields_by_name
    and "until_launched" in pb.WaitRequest.DESCRIPTOR.fields_by_name)

# Job.start_event exists (a job may wait on the GPU for the client's stream).
HAS_START_EVENT: bool = "start_event" in pb.Job.DESCRIPTOR.fields_by_name

# The streaming channel (Shuttle.Channel) exists.
HAS_CHANNEL: bool = hasattr(pb, "ChannelRequest") and hasattr(pb, "ChannelEvent")

__all__ = ["pb", "pb_grpc", "HAS_COMPLETION_EVENT", "HAS_START_EVENT", "HAS_CHANNEL"]
