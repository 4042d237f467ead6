"""kvshuttle: the Python client of kvshuttled, the KV-cache block conversion daemon.

    import kvshuttle
    client = kvshuttle.connect("unix:/run/kvshuttle/kvshuttle.sock")
    session = client.session("worker-0")
    cache = session.register_vllm_cache(kv_caches)                  # torch CUDA tensors
    pool = session.create_pool("store", cache.layout.replace("universal"), 1024)
    future = session.offload(cache, [3, 5], pool, pool.allocate(2))
    future.result()

    kvshuttle.block_to_universal(blocks, universals)                 # the seed's API

torch is optional (imported only when torch tensors are passed); host memory works with numpy
arrays in kvshuttle shared memory (shm_empty, HostArena). See docs/python.md.
"""
from pkgutil import extend_path

# The generated stubs (kvshuttle/v1/) may live in another folder on sys.path (a build tree).
__path__ = extend_path(__path__, __name__)

from kvshuttle import dtypes  # noqa: E402
from kvshuttle.blocksets import BlockSet, KVCache  # noqa: E402
from kvshuttle.errors import (AlreadyExistsError, CancelledError,  # noqa: E402
                              DeadlineExceededError, FailedPreconditionError, InternalError,
                              InvalidArgumentError, KvshuttleError, NotFoundError,
                              OutOfRangeError, PermissionDeniedError, ResourceExhaustedError,
                              UnavailableError)
from kvshuttle.jobs import AxisRange, Job, JobError, JobFuture, JobResult, Span  # noqa: E402
from kvshuttle.layout import BlockShape, Layout, LayoutKind  # noqa: E402
from kvshuttle.pools import Pool  # noqa: E402
from kvshuttle.regions import MemoryRegistration, Region  # noqa: E402
from kvshuttle.seed import (block_to_operational, block_to_universal,  # noqa: E402
                            default_session, operational_to_block, set_default_session,
                            universal_to_block)
from kvshuttle.client import DEFAULT_TARGET, Client, connect  # noqa: E402
from kvshuttle.session import Session  # noqa: E402
from kvshuttle.shm import HostArena, SharedMemory, shm_empty, shm_zeros  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError", "AxisRange", "BlockSet", "BlockShape", "CancelledError", "Client",
    "DEFAULT_TARGET", "DeadlineExceededError", "FailedPreconditionError", "HostArena",
    "InternalError", "InvalidArgumentError", "Job", "JobError", "JobFuture", "JobResult",
    "KVCache", "KvshuttleError", "Layout", "LayoutKind", "MemoryRegistration", "NotFoundError",
    "OutOfRangeError", "PermissionDeniedError", "Pool", "Region", "ResourceExhaustedError",
    "Session", "SharedMemory", "Span", "UnavailableError", "block_to_operational",
    "block_to_universal", "connect", "default_session", "dtypes", "operational_to_block",
    "set_default_session", "shm_empty", "shm_zeros", "universal_to_block",
]
