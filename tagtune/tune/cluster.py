"""Ray itself for a search: start or join the cluster, check its storage, choose the GPUs per trial.

Shared by a new search and a resumed one (:func:`tagtune.search.run_search`,
:func:`tagtune.search.resume_search`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagtune.errors import InputError

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "hdfs://", "az://")


def is_remote_storage(path: str) -> bool:
    """An object-store URI (s3://, gs://, ...) rather than a local or mounted folder."""
    return path.startswith(REMOTE_SCHEMES)


def ray_storage(path: str) -> str:
    """``--storage-path`` as Ray is given it: an object-store URI as it is, a folder absolute."""
    return path if is_remote_storage(path) else str(Path(path).resolve())


def _probe_address(address: str) -> None:
    """Fail fast (ray.init would retry for minutes) when nothing listens at HOST:PORT."""
    import socket

    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r} is not HOST:PORT; pass what `ray start --head` printed")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise InputError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}); start the head "
            "with `ray start --head` or fix HOST:PORT"
        ) from None


def init_ray(address: str | None) -> bool:
    """Start or join Ray unless it is already up; returns whether this call did."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        _probe_address(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,  # when enabled, Ray binds its dashboard to 127.0.0.1
        "logging_level": "ERROR",
        "log_to_driver": False,  # progress comes from the driver callback; errors via error files
    }
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = address or "a local Ray instance"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"cannot connect to Ray at {where}: {first}; check --address (the HOST:PORT printed by `ray start --head`)"
        ) from None
    return True


def check_storage_for_cluster(storage_path: str) -> None:
    """A cluster with nodes on other hosts needs storage every node can reach.

    Nodes on the driver's own host share its disk, so a local folder is fine for them (this is
    also how the tests run a 2-node cluster on one machine).
    """
    import ray

    if is_remote_storage(storage_path):
        return
    here = ray.util.get_node_ip_address()
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    others = sorted(hosts - {here})
    if others:
        raise InputError(
            f"--storage-path {storage_path} is a local folder, but the Ray cluster has nodes on "
            f"other hosts ({', '.join(others)}); pass a folder they all mount (NFS) or an "
            "object-store URI such as s3://bucket/tagtune-runs"
        )


def choose_trial_gpus(spec: Any, say: Callable[[str], None]) -> None:
    """Set ``spec.gpus_per_trial`` from the running Ray cluster's resources when it is None (the
    flag not given; :func:`tagtune.resources.choose_gpus`) and say what the trials get.  Runs
    after Ray is up and before the parent run records the spec, so the recorded number is the
    chosen one (and a resumed search reuses it)."""
    import ray

    from tagtune.resources import choose_gpus

    choice = choose_gpus(ray.cluster_resources(), spec.families, spec.cpus_per_trial, spec.gpus_per_trial)
    spec.gpus_per_trial = choice.gpus_per_trial
    say(choice.line)
