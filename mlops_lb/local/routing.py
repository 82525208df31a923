"""Routing policies on the local fleet: one pre-declared HAProxy backend per policy, chosen through a map.

HAProxy 2.6 cannot change a backend's ``balance`` at run time, and a reload would lose every dynamic server
(``add server``: "A dynamic server not present in the configuration won't be restored after a reload", HAProxy
2.6 Management Guide, section 9.3, https://docs.haproxy.org/2.6/management.html#9.3-add%20server). So the config
declares, beside the target group's checked backend ``<tg>`` (policy ``alb``: the spec's own algorithm) and its
fail-open twin ``<tg>_open``, one backend per policy:

============================== ======================== ===========================================================
policy                         backend                  HAProxy 2.6 (configuration manual, section 4.2)
============================== ======================== ===========================================================
``round_robin``                ``<tg>_rr``              ``balance roundrobin``
``least_outstanding_requests`` ``<tg>_lor``             ``balance leastconn``
``weighted_random``            ``<tg>_wr``              ``balance random(1)``
``consistent_hash``            ``<tg>_hash``            ``balance hdr(<key_header>)``, ``hash-type consistent``,
                                                        ``hash-balance-factor <routing.hash_balance_factor>``
``sticky_cookie``              ``<tg>_sticky``          the spec's algorithm + ``stick on req.cook(<cookie_name>)``
                                                        in a string stick-table that expires after
                                                        ``routing.cookie_duration_s``
============================== ======================== ===========================================================

The frontend picks the backend with ``use_backend %[str(policy),map(<work_dir>/routing.map,<tg>)]``; switching is
one Runtime API ``set map`` (no reload, no lost request; measured in docs/routing.md), and the map file is
rewritten too, so a balancer restart keeps the policy. The fail-open rule (``<tg>_open`` when ``<tg>`` has no
usable server) is evaluated first, as before.

**Dynamic servers in these backends.** ``add server`` needs "a dynamic load-balancing algorithm" (Management
Guide 9.3); ``hash-type consistent`` "is dynamic, it supports changing weights" (configuration manual,
``hash-type``), so consistent hashing takes servers at run time (``map-based`` would not). ``add server`` does not
accept the ``cookie`` keyword in 2.6 (its keyword list, same section), so per-server cookie insertion is out; the
stick-table keyed on the application's cookie is the documented alternative, and it is also what an ALB's
*application-based* stickiness does: bind the application's session cookie to the target that served it.

**Health.** Only ``<tg>`` runs health checks (six backends checking every target would multiply the check load on
two cores, and a dynamic server cannot ``track`` another dynamic server). The ASG emulator mirrors each target into
every policy backend (weight 1 after its first passing check, ``drain`` and ``del server`` with the target group)
and mirrors its health: ``maint`` while ``<tg>`` says DOWN, ``ready`` again when it is UP (one controller tick,
100 ms, behind HAProxy's own view).

**Keys.** ``consistent_hash`` hashes the ``routing.key_header`` header (``X-Prefix-Key``): the *client* computes
it, our load generator from the first prompt blocks of each request (or a session id); a request without it is
placed round robin ("If the header is absent ... the roundrobin algorithm is applied instead", ``balance hdr``).
``sticky_cookie`` keys on the ``routing.cookie_name`` cookie the client sends.

Example::

    switch = RoutingSwitch(api, map_path, backend="tg")
    switch.set("consistent_hash")       # seconds the switch took
    switch.current()                    # 'consistent_hash'
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._validate import show
from ..errors import SpecError

if TYPE_CHECKING:
    from ..haproxy_runtime import RuntimeApi
    from ..spec import FleetSpec

__all__ = [
    "MAP_FILE",
    "POLICIES",
    "POLICY_SUFFIX",
    "POLICY_WEIGHT",
    "RoutingSwitch",
    "backend_for",
    "check_policy",
    "policy_backends",
    "render_policy_backends",
    "render_switch_rule",
    "reset_prefix_caches",
    "write_map",
]

MAP_FILE = "routing.map"
MAP_KEY = "policy"
# The policies a running local fleet can switch between: "alb" is the target group's own backend.
POLICY_SUFFIX: dict[str, str] = {
    "round_robin": "rr",
    "least_outstanding_requests": "lor",
    "weighted_random": "wr",
    "consistent_hash": "hash",
    "sticky_cookie": "sticky",
}
POLICIES: tuple[str, ...] = ("alb", *POLICY_SUFFIX)
# Every target's weight in the policy backends (all equal, so shares stay equal). Not 1: consistent hashing puts
# weight x 16 points per server on its ring, and with 16 each "the distribution will never be very smooth and it
# may sometimes be necessary to adjust a server's weight" (HAProxy 2.6 manual, ``hash-type``; the weight range is
# 1-256, ``weight``); 100 gives 1,600 points each. ``balance random`` draws on the same ring.
POLICY_WEIGHT = 100
# ``random(1)``: one draw, i.e. a target picked at random by weight, the ALB's weighted random. HAProxy's plain
# ``random`` makes two draws and keeps the less loaded ("The default value is 2", ``balance random``): that is the
# power of two choices, a load-aware policy, not the ALB's.
_BALANCE = {
    "round_robin": "roundrobin",
    "least_outstanding_requests": "leastconn",
    "weighted_random": "random(1)",
}


def check_policy(policy: object) -> str:
    """``policy`` if it is one of :data:`POLICIES`, else a SpecError naming the choices.

    Example::

        check_policy("consistent_hash")   # 'consistent_hash'
    """
    if not isinstance(policy, str) or policy not in POLICIES:
        import difflib

        close = difflib.get_close_matches(str(policy), POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError("policy", f"must be one of {', '.join(POLICIES)} (got {show(policy)}){hint}")
    return policy


def backend_for(policy: str, backend: str = "tg") -> str:
    """The HAProxy backend that implements ``policy`` (``alb``: the target group's own ``backend``)."""
    return backend if check_policy(policy) == "alb" else f"{backend}_{POLICY_SUFFIX[policy]}"


def policy_backends(backend: str = "tg") -> tuple[str, ...]:
    """Every policy backend beside ``backend`` itself: the ASG emulator mirrors each target into all of them."""
    return tuple(f"{backend}_{s}" for s in POLICY_SUFFIX.values())


def _initial(spec: FleetSpec) -> str:
    """The policy a fleet starts with: the spec's routing policy, or ``alb``."""
    return spec.routing.policy if spec.routing.policy in POLICY_SUFFIX else "alb"


def render_switch_rule(backend: str, map_path: str | Path) -> str:
    """The frontend's ``use_backend`` line that reads the active policy's backend from the map."""
    return f"    use_backend %[str({MAP_KEY}),map({map_path},{backend})]"


def render_policy_backends(spec: FleetSpec, backend: str, target_header: str) -> str:
    """Config text of the policy backends (no health checks: the ASG emulator mirrors ``backend``'s health)."""
    r = spec.routing
    first = _BALANCE[spec.target_group.algorithm]
    parts = []
    for policy, suffix in POLICY_SUFFIX.items():
        lines = [f"backend {backend}_{suffix}"]
        if policy == "consistent_hash":
            lines += [
                f"    balance hdr({r.key_header})",
                "    hash-type consistent",
            ]
            if r.hash_balance_factor:
                lines.append(f"    hash-balance-factor {r.hash_balance_factor}")
        elif policy == "sticky_cookie":
            # The ALB places a session's first request with the target group's algorithm, later ones by cookie.
            lines += [
                f"    balance {first}",
                f"    stick-table type string len 128 size 100k expire {r.cookie_duration_s}s",
                f"    stick on req.cook({r.cookie_name})",
            ]
        else:
            lines.append(f"    balance {_BALANCE[policy]}")
        lines.append(target_header)
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def write_map(map_path: str | Path, policy: str, backend: str = "tg") -> None:
    """Write the map file HAProxy reads at start (atomically: a restart must never read half a file)."""
    path = Path(map_path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{MAP_KEY} {backend_for(policy, backend)}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class RoutingSwitch:
    """Switch a running HAProxy between the pre-declared policy backends (Runtime API ``set map``).

    Example::

        sw = RoutingSwitch(api, "/tmp/fleet/routing.map")
        took_s = sw.set("least_outstanding_requests")
        sw.current(), sw.clear_sessions()
    """

    def __init__(self, api: RuntimeApi, map_path: str | Path, *, backend: str = "tg") -> None:
        self.api = api
        self.map_path = Path(map_path)
        self.backend = backend

    def set(self, policy: str) -> float:
        """Route new requests with ``policy`` from now on; returns the seconds the switch took."""
        name = backend_for(policy, self.backend)
        t0 = time.perf_counter()
        # The file first: if HAProxy restarts right after, it starts with the new policy too.
        write_map(self.map_path, policy, self.backend)
        self.api._checked(f"set map {self.map_path} {MAP_KEY} {name}")
        return time.perf_counter() - t0

    def current(self) -> str:
        """The policy HAProxy routes with now (read back from its map, not from our own memory)."""
        answer = self.api.command(f"get map {self.map_path} {MAP_KEY}")
        # 2.6 answers: type=str, case=sensitive, found=yes, idx=tree, key="policy", value="tg_hash", ...
        for field in answer.split(","):
            k, _, v = field.strip().partition("=")
            if k == "value":
                name = v.strip().strip('"')
                for policy in POLICIES:
                    if backend_for(policy, self.backend) == name:
                        return policy
        raise RuntimeError(f"haproxy's routing map has no policy: {answer.strip()!r}")

    def clear_sessions(self) -> None:
        """Forget every sticky session (``clear table``), so the next arm of an A/B starts without affinity."""
        self.api._checked(f"clear table {self.backend}_{POLICY_SUFFIX['sticky_cookie']}")


def reset_prefix_caches(addresses: list[str], *, timeout_s: float = 2.0) -> int:
    """``POST /reset_prefix_cache`` to each ``host:port`` directly (not through the balancer, which would pick
    one target); returns how many answered 200. vLLM serves this route only with ``VLLM_SERVER_DEV_MODE=1``
    (vllm/entrypoints/serve/cache/api_router.py: ``attach_router`` returns early without it,
    https://docs.vllm.ai/en/stable/api/vllm/entrypoints/serve/cache/api_router/); our emulator always does."""
    import http.client

    done = 0
    for address in addresses:
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
        try:
            conn.request("POST", "/reset_prefix_cache", body=b"", headers={"Content-Length": "0"})
            resp = conn.getresponse()
            resp.read()
            done += resp.status == 200
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
    return done
