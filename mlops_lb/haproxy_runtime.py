"""HAProxy's Runtime API over its admin unix socket: a small stdlib client both backends use.

The local fleet drives its HAProxy with it; on AWS the optional router tier (a small Auto Scaling group of HAProxy
instances behind the ALB) runs the same client on each router instance. It lives below both backends because
``aws`` may not import ``local``. It needs only the standard library and ``mlops_lb.errors``.

Example::

    api = RuntimeApi("/tmp/fleet/admin.sock")
    api.add_server("tg", "i-local0001", "127.0.0.1:9001", server_id=1, check=True, inter_ms=333, rise=2, fall=2)
    [row.status for row in api.show_stat() if row.proxy == "tg"]
"""

from __future__ import annotations

import csv
import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ProvisionError

__all__ = ["RuntimeApi", "RuntimeApiError", "ServerState", "StatRow"]


class RuntimeApiError(ProvisionError):
    """HAProxy answered a Runtime API command with an error."""


_INT_FIELDS = (
    "qcur",
    "scur",
    "smax",
    "stot",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "req_tot",
    "econ",
    "eresp",
    "check_code",
    "check_duration",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "iid",
    "sid",
)


@dataclass(frozen=True)
class StatRow:
    """One line of ``show stat``: a frontend, backend or server with its counters.

    ``status`` is HAProxy's exact string: ``UP``, ``DOWN``, ``UP 1/2`` (up, failing checks), ``DOWN 1/2`` (down,
    passing checks), ``MAINT``, ``DRAIN``, ``NOLB``, ``no check``, ``OPEN`` (frontends).
    """

    proxy: str
    server: str
    status: str
    weight: int
    scur: int
    stot: int
    hrsp_2xx: int
    hrsp_4xx: int
    hrsp_5xx: int
    hrsp_other: int
    req_tot: int
    check_status: str
    chkfail: int
    lastchg: int
    raw: dict[str, str]

    @property
    def is_server(self) -> bool:
        return self.server not in ("FRONTEND", "BACKEND")

    def int(self, name: str) -> int:
        """Any numeric column by its HAProxy name (0 when empty)."""
        return _to_int(self.raw.get(name, ""))


def _to_int(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        return 0


@dataclass(frozen=True)
class ServerState:
    """One line of ``show servers state``: the server's operational/admin state and last check.

    ``op_state``: 0 stopped, 1 starting, 2 running, 3 stopping. ``admin_state`` bit flags (0x01 forced maint,
    0x08 forced drain...). ``check_health`` counts from 0 to ``rise + fall - 1``.
    """

    backend: str
    server_id: int
    name: str
    address: str
    port: int
    op_state: int
    admin_state: int
    user_weight: int
    check_status: int
    check_health: int


def _parse_stat(text: str) -> list[StatRow]:
    text = text.lstrip("# ")
    rows: list[StatRow] = []
    for rec in csv.DictReader(io.StringIO(text)):
        if not rec.get("pxname"):
            continue
        raw = {k: (v or "") for k, v in rec.items() if k}
        rows.append(
            StatRow(
                proxy=raw["pxname"],
                server=raw["svname"],
                status=raw.get("status", ""),
                weight=_to_int(raw.get("weight", "")),
                scur=_to_int(raw.get("scur", "")),
                stot=_to_int(raw.get("stot", "")),
                hrsp_2xx=_to_int(raw.get("hrsp_2xx", "")),
                hrsp_4xx=_to_int(raw.get("hrsp_4xx", "")),
                hrsp_5xx=_to_int(raw.get("hrsp_5xx", "")),
                hrsp_other=_to_int(raw.get("hrsp_other", "")),
                req_tot=_to_int(raw.get("req_tot", "")),
                check_status=raw.get("check_status", ""),
                chkfail=_to_int(raw.get("chkfail", "")),
                lastchg=_to_int(raw.get("lastchg", "")),
                raw=raw,
            )
        )
    return rows


def _parse_servers_state(text: str) -> list[ServerState]:
    lines = text.splitlines()
    header: list[str] = []
    out: list[ServerState] = []
    for line in lines:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        parts = line.split()
        if not header or len(parts) < len(header) - 3:  # trailing optional columns may be absent
            continue
        rec = dict(zip(header, parts, strict=False))
        out.append(
            ServerState(
                backend=rec["be_name"],
                server_id=_to_int(rec["srv_id"]),
                name=rec["srv_name"],
                address=rec["srv_addr"],
                port=_to_int(rec.get("srv_port", "0")),
                op_state=_to_int(rec["srv_op_state"]),
                admin_state=_to_int(rec["srv_admin_state"]),
                user_weight=_to_int(rec["srv_uweight"]),
                check_status=_to_int(rec["srv_check_status"]),
                check_health=_to_int(rec["srv_check_health"]),
            )
        )
    return out


class RuntimeApi:
    """HAProxy's Runtime API over its admin unix socket, one short connection per command.

    Example::

        api = RuntimeApi("/tmp/fleet/admin.sock")
        api.add_server("tg", "i-local0001", "127.0.0.1:9001", server_id=1, check=True, inter_ms=333, rise=2, fall=2)
        api.set_weight("tg", "i-local0001", 1)
        api.set_state("tg", "i-local0001", "drain")
    """

    def __init__(
        self,
        socket_path: str | Path,
        *,
        timeout_s: float = 5.0,
        on_command: Callable[[str], None] | None = None,
    ) -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s
        self.on_command = on_command

    def command(self, cmd: str) -> str:
        """Send one command, return HAProxy's whole answer (raises OSError when the socket is gone)."""
        if self.on_command:
            self.on_command(cmd)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout_s)
            s.connect(self.socket_path)
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")

    def _checked(self, cmd: str, ok: Callable[[str], bool] = lambda a: a.strip() == "") -> str:
        answer = self.command(cmd)
        if not ok(answer):
            raise RuntimeApiError(f"haproxy refused {cmd!r}: {answer.strip()}")
        return answer

    def add_server(
        self,
        backend: str,
        name: str,
        address: str,
        *,
        server_id: int,
        weight: int = 0,
        check: bool = False,
        inter_ms: int = 1000,
        rise: int = 2,
        fall: int = 2,
        slowstart_ms: int = 0,
    ) -> None:
        """Add a dynamic server and enable it (pitfall 1: ``add server`` leaves it in maintenance).

        ``slowstart_ms`` > 0 ramps the server's effective weight linearly from when it comes up, HAProxy's
        counterpart of the target group's slow start.

        Always with an explicit ``id`` (pitfall 4: ``balance random`` drops servers without one) and a connection
        pool (pitfall 3: without ``pool-max-conn`` dynamic servers keep no idle connections).
        """
        args = f"{address} id {server_id} weight {weight} pool-max-conn -1 pool-purge-delay 5s"
        if slowstart_ms > 0:
            args += f" slowstart {int(slowstart_ms)}"
        if check:
            args += (
                f" check inter {inter_ms} fastinter {inter_ms} downinter {inter_ms} rise {rise} fall {fall}"
            )
        self._checked(f"add server {backend}/{name} {args}", lambda a: "New server registered" in a)
        if check:
            self._checked(f"enable health {backend}/{name}")
        self._checked(f"enable server {backend}/{name}")

    def set_weight(self, backend: str, name: str, weight: int) -> None:
        self._checked(f"set server {backend}/{name} weight {weight}")

    def set_addr(self, backend: str, name: str, address: str, port: int) -> None:
        """Point an existing server (a ``server-template`` slot) at ``address:port`` (HAProxy 1.8+; answers
        "IP changed from ..." or "no need to change ...", both success)."""
        self._checked(
            f"set server {backend}/{name} addr {address} port {int(port)}",
            lambda a: a.strip() == "" or "changed" in a or "no need to change" in a,
        )

    def ready_down(self, backend: str, name: str) -> None:
        """Take a checked server out of maintenance as *down*, so it serves only after ``rise`` passing checks.

        HAProxy assumes a server leaving maintenance is up until ``fall`` checks fail, and ignores ``health down``
        while it is in maintenance (seen on 2.6): both commands go on one line, so no request is placed between.
        """
        cmd = f"set server {backend}/{name} state ready; set server {backend}/{name} health down"
        self._checked(cmd)

    def set_state(self, backend: str, name: str, state: str) -> None:
        """``ready``, ``drain`` (no new requests, existing ones finish) or ``maint``."""
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state must be ready, drain or maint (got {state!r})")
        self._checked(f"set server {backend}/{name} state {state}")

    def del_server(self, backend: str, name: str) -> None:
        """Delete a server; it must be in maintenance with no connection left (RuntimeApiError otherwise)."""
        self._checked(f"del server {backend}/{name}", lambda a: "Server deleted" in a)

    def shutdown_sessions(self, backend: str, name: str) -> None:
        self.command(f"shutdown sessions server {backend}/{name}")

    def show_stat(self) -> list[StatRow]:
        """``show stat`` parsed: one StatRow per frontend, backend and server."""
        return _parse_stat(self.command("show stat"))

    def show_servers_state(self, backend: str | None = None) -> list[ServerState]:
        """``show servers state [backend]`` parsed."""
        return _parse_servers_state(self.command("show servers state" + (f" {backend}" if backend else "")))
