"""The Ray options of ``run_load`` (``cluster=``, ``shards=``, ``placement=``), checked without importing Ray.

:class:`~mlops_lb.load.LoadSettings` validates them where they are written; :mod:`mlops_lb.load.distributed`
(which imports Ray when a run starts) uses the same checks. Neither imports the other for them.

Example::

    check_options("ray://head:10001", 4, "spread", workers=1, connections=32)   # raises SpecError if wrong
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import SpecError

__all__ = ["MAX_SHARDS", "PLACEMENTS", "check_options", "client_address"]

#: ``spread``: Ray's SPREAD strategy (best effort over nodes); ``strict_spread``: a placement group with one
#: shard per node (fails if there are fewer nodes than shards); ``pack``: Ray's default (fill a node first).
PLACEMENTS = ("spread", "strict_spread", "pack")
MAX_SHARDS = 1024


def check_options(cluster: Any, shards: Any, placement: Any, workers: int, connections: int) -> None:
    """Validate ``cluster=``/``shards=``/``placement=`` of run_load before anything starts (raises SpecError)."""
    if cluster is None:
        if shards is not None:
            raise SpecError(
                "shards", "needs cluster='ray' (or 'ray://head:10001'); use workers=N on one machine"
            )
        if placement != "spread":
            raise SpecError("placement", "needs cluster='ray' (or 'ray://head:10001')")
        return
    if not isinstance(cluster, str) or not (cluster == "ray" or cluster.startswith("ray://")):
        raise SpecError(
            "cluster",
            f"must be 'ray' (a running ray.init() connection, else the cluster RAY_ADDRESS names, else a local Ray) "
            f"or 'ray://host:10001' "
            f"(Ray Client) (got {cluster!r})",
        )
    if cluster.startswith("ray://"):
        client_address(cluster)
    if shards is not None and shards != "auto":
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
            raise SpecError(
                "shards", f"must be 'auto' or an integer between 1 and {MAX_SHARDS} (got {shards!r})"
            )
        if shards > connections:
            raise SpecError(
                "shards", f"must be <= connections ({connections}): each shard needs one (got {shards})"
            )
    if placement not in PLACEMENTS:
        raise SpecError("placement", f"must be one of {', '.join(PLACEMENTS)} (got {placement!r})")
    if workers != 1:
        raise SpecError(
            "workers", f"must be 1 with cluster= (shards= sets the number of engines) (got {workers})"
        )


def client_address(cluster: str) -> tuple[str, int]:
    """(host, port) of a ``ray://host[:port]`` address (port 10001 by default), or SpecError."""
    parts = urlsplit(cluster)
    try:
        port = parts.port or 10001
    except ValueError as exc:
        raise SpecError("cluster", f"has an invalid port: {cluster!r}") from exc
    if not parts.hostname or parts.path not in ("", "/"):
        raise SpecError("cluster", f"must be ray://host[:port] such as ray://head:10001 (got {cluster!r})")
    return parts.hostname, port
