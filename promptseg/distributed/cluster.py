"""Importing Ray lazily, and joining or starting the cluster a run uses."""

from __future__ import annotations

import os
from typing import Any, Optional

INSTALL_HINT = 'pip install "promptseg[ray]"'


class RayNotInstalledError(ImportError):
    """Ray Data is not installed; the message says how to install it."""


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or :class:`RayNotInstalledError`."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise RayNotInstalledError(
            f"the Ray engine needs Ray Data, which is not installed ({error}); install it with: {INSTALL_HINT}"
        ) from error
    return ray


def connect(address: Optional[str], min_cpus: int) -> bool:
    """Make sure this process is connected to a Ray cluster.

    Args:
        address: a cluster address ("auto", "ray://head:10001", "10.0.0.1:6379"); None joins
            ``RAY_ADDRESS`` when set, else starts a local Ray (no dashboard).
        min_cpus: a local Ray gets at least this many logical CPUs, so that the model actors
            never starve the decoding tasks on a small machine.
    Returns:
        True when this call connected (the caller then disconnects with ``ray.shutdown()``);
        False when Ray was already initialised by the caller, whose cluster is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(num_cpus=max(os.cpu_count() or 1, min_cpus), include_dashboard=False)
    else:
        ray.init(address=address)
    return True


def cluster_gpus() -> float:
    """GPUs in the connected cluster."""
    return float(require_ray().cluster_resources().get("GPU", 0))
