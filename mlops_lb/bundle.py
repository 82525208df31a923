"""RunBundle: one folder per run, written while the run goes, loadable with one call — even after a crash.

(Over 500 lines on purpose: writing — atomic parts, finalize — and loading — ``LoadedBundle`` — must agree on
the one layout below, so they live together.)

Layout of ``runs/<utc-time>-<name>/``::

    spec.json            the FleetSpec (when there is one)
    run.json             the run's facts: start, end, send end, metric period, backend (written by RunSession)
    load.json            the load run's settings (written by run_load)
    requests.parquet     per-request records         (consolidated by finalize(); until then requests.parts/)
    intervals.parquet    per-interval summaries      (idem, intervals.parts/)
    metrics.parquet      MetricFrame
    events.parquet       events frame
    decisions.parquet    the autoscaler's decisions (``fleet.decisions()``; the local fleet has them)
    status.parquet       ``fleet.status()`` when the run ended
    summary.json         LoadResult.summary()
    report.html          written by mlops_lb.report

Appends are small parquet part files, each written to a temporary name and moved into place with
``os.replace`` (atomic on POSIX), so a crash at any moment leaves only whole files. ``finalize()`` merges the
parts into one file and records the merged part names in its parquet metadata before deleting them; ``load``
reads the consolidated file plus any part it does not already contain, so an interrupted ``finalize`` never
loses or duplicates rows.

Example::

    from mlops_lb.bundle import RunBundle
    b = RunBundle.create(root="runs", name="ramp", spec=spec)
    result = run_load(url, profile, bundle=b)          # appends as it goes, finalizes at the end
    loaded = RunBundle.load(b.path)
    loaded.requests.head(); loaded.summary["p99_s"]
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BundleError, StorageError

if TYPE_CHECKING:
    import pandas as pd

    from .spec import FleetSpec

__all__ = ["LoadedBundle", "RunBundle", "RunFacts"]

log = logging.getLogger(__name__)

_APPENDABLE = ("requests", "intervals")
_TABLES = ("requests", "intervals", "metrics", "events", "decisions", "status")
_PARTS_KEY = b"mlops_lb_parts"
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
# A folder name is at most 255 bytes (NAME_MAX on Linux and macOS); the stamp and a collision suffix take ~25 of
# them. A longer label is shortened (its head plus a hash of the whole), never a failed run.
_MAX_LABEL = 180
# The JSON files of a bundle are small (a spec is a few kB; a long trace profile in load.json a few MB). A file
# far beyond that is not ours: reading it whole would hold it several times in memory (a 200 MB spec.json took
# 1 GB of RSS into the report), so it is left unread with a warning.
MAX_JSON_BYTES = 64 * 1024 * 1024
# What makes a folder a run bundle: any of the files or folders a run writes.
_MARKERS = (
    "run.json", "spec.json", "load.json", "summary.json",
    *(f"{t}.parquet" for t in ("requests", "intervals", "metrics", "events", "decisions", "status")),
    "requests.parts", "intervals.parts",
)  # fmt: skip


def _jsonable(obj: Any) -> Any:
    """Make ``obj`` strict JSON: NaN/inf -> null, numpy scalars -> Python, timestamps -> ISO strings."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    return obj


@contextlib.contextmanager
def _storage(path: Path, action: str = "write") -> Iterator[None]:
    """Translate a filesystem error (ENOSPC, EACCES, a root that is a file...) into a StorageError naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:  # pyarrow's IO errors are OSErrors too
        raise StorageError(path, exc, action) from exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a fresh temporary name in the same folder, then move it into place.

    The temporary file is created with ``O_EXCL`` under a random name (never a fixed ``<name>.tmp`` that a
    symlink planted beforehand would redirect), and ``os.replace`` swaps the directory entry: a symlink at
    ``path`` is replaced, its target is never written.

    Example::

        atomic_write_bytes(bundle.path / "report.html", html_text.encode())
    """
    path = Path(path)
    _atomic_write_bytes(path, data)
    return path


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_parquet(path: Path, df: pd.DataFrame, parts: list[str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if parts is not None:
        meta = dict(table.schema.metadata or {})
        meta[_PARTS_KEY] = json.dumps(parts).encode()
        table = table.replace_schema_metadata(meta)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _merged_parts(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return set()
    raw = meta.get(_PARTS_KEY)
    return set(json.loads(raw)) if raw else set()


def _part_seq(name: str) -> int:
    """Sequence number of ``part-000012.parquet`` (-1 for a name that is not one)."""
    try:
        return int(name.split(".")[0].split("-")[1])
    except (IndexError, ValueError):
        return -1


def _inside(folder: Path, path: Path) -> bool:
    """True when ``path`` exists and, symlinks resolved, stays inside ``folder``: a bundle is data from anywhere,
    and a ``load.json`` linked to ``~/.aws/credentials`` must not be read into a report meant to be mailed."""
    if not path.exists():
        return False
    if not path.is_symlink() and path.parent == folder:
        return True
    root = folder.resolve()
    real = path.resolve()
    if real == root or root in real.parents:
        return True
    log.warning("not reading %s: it links outside the bundle (to %s)", path, real)
    return False


def _read_table(folder: Path, name: str) -> pd.DataFrame:
    """Consolidated file (if any) plus the part files it does not contain; unreadable pieces are skipped."""
    import pandas as pd

    frames: list[pd.DataFrame] = []
    merged: set[str] = set()
    main = folder / f"{name}.parquet"
    if _inside(folder, main):
        try:
            frames.append(pd.read_parquet(main))
            merged = _merged_parts(main)
        except Exception as exc:  # a damaged file must not hide the parts next to it
            log.warning("skipping unreadable %s: %s", main, exc)
    parts_dir = folder / f"{name}.parts"
    if _inside(folder, parts_dir) and parts_dir.is_dir():
        for part in sorted(parts_dir.glob("part-*.parquet")):
            if part.name in merged or not _inside(folder, part):
                continue
            try:
                frames.append(pd.read_parquet(part))
            except Exception as exc:
                log.warning("skipping unreadable part %s: %s", part, exc)
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class RunFacts:
    """What the run knew about itself, written once into ``run.json`` by the session that ran it.

    ``start`` is schedule offset 0, ``send_end`` the end of sending (the schedule's end, or the Stop), ``end``
    when the load returned its last response; ``metric_period_s`` is the seconds one fleet metric datapoint
    covers (``spec.local.period_s`` locally, 60 on AWS); ``backend`` the fleet's backend name (None for a bare
    URL). ``derived`` is True when some fact was derived from the records on load (a bundle without
    ``run.json``, an older one, or a session killed before its end was written): the window then runs from the
    first intended send to the last response.

    Example::

        f = RunBundle.load(path).facts
        f.window, f.metric_period_s, f.backend
    """

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    send_end: pd.Timestamp | None = None
    metric_period_s: float | None = None
    backend: str | None = None
    derived: bool = False

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(start, end) of the run in UTC, or None when nothing is known."""
        if self.start is None:
            return None
        return self.start, max(self.end if self.end is not None else self.start, self.start)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (times as ISO strings)."""
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "send_end": _iso(self.send_end),
            "metric_period_s": self.metric_period_s,
            "backend": self.backend,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunFacts:
        """Facts from ``run.json``'s content; a field that does not parse is left unknown (None), never raised."""
        data = data if isinstance(data, dict) else {}
        period = data.get("metric_period_s")
        try:
            period_s = float(period) if period is not None else None
        except (TypeError, ValueError):
            period_s = None
        if period_s is not None and not (math.isfinite(period_s) and period_s > 0):
            period_s = None
        backend = data.get("backend")
        return cls(
            start=_ts(data.get("start")),
            end=_ts(data.get("end")),
            send_end=_ts(data.get("send_end")),
            metric_period_s=period_s,
            backend=str(backend) if isinstance(backend, str) and backend else None,
        )

    def merged(self, other: RunFacts) -> RunFacts:
        """These facts with each unknown field taken from ``other`` (a derivation)."""
        import dataclasses

        filled = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "derived" and getattr(self, f.name) is None
        }
        return dataclasses.replace(self, **filled, derived=self.derived or bool(filled))


def _iso(t: Any) -> str | None:
    return None if t is None else t.isoformat()


def _ts(v: Any) -> pd.Timestamp | None:
    """A UTC timestamp from an ISO string (None for anything else)."""
    import pandas as pd

    if not isinstance(v, str):
        return None
    try:
        t = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    if pd.isna(t):
        return None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def derive_facts(requests: pd.DataFrame, intervals: pd.DataFrame, metrics: pd.DataFrame) -> RunFacts:
    """Facts of a bundle without ``run.json``, from its records: first intended send (or interval) to the last
    response, the last intended send, and the metrics' own spacing as their period. Read once per load.

    Example::

        derive_facts(b.requests, b.intervals, b.metrics).window
    """
    import pandas as pd

    starts: list[pd.Timestamp] = []
    ends: list[pd.Timestamp] = []
    send_end = None
    req = requests
    if len(req) and "intended_at" in req.columns:
        intended = pd.to_datetime(req["intended_at"], utc=True)
        starts.append(intended.min())
        send_end = intended.max()
        done = pd.to_datetime(req["done_at"], utc=True) if "done_at" in req.columns else None
        ends.append(done.max() if done is not None and done.notna().any() else starts[-1])
        ends.append(send_end)
    iv = intervals
    if len(iv) and "interval_start" in iv.columns:
        ts = pd.to_datetime(iv["interval_start"], utc=True)
        step = ts.sort_values().diff().dt.total_seconds().median() if len(ts) > 1 else 1.0
        starts.append(ts.min())
        ends.append(ts.max() + pd.Timedelta(seconds=float(step if step == step else 1.0)))
    starts = [t for t in starts if not pd.isna(t)]
    ends = [t for t in ends if not pd.isna(t)]
    period = None
    if len(metrics) and "timestamp" in metrics.columns:
        stamps = pd.to_datetime(metrics["timestamp"], utc=True).drop_duplicates().sort_values()
        d = stamps.diff().dt.total_seconds().dropna()
        period = float(d[d > 0].median()) if len(d[d > 0]) else None
    start = min(starts) if starts else None
    return RunFacts(
        start=start,
        end=max([*ends, start]) if start is not None else None,
        send_end=send_end if send_end is not None and not pd.isna(send_end) else None,
        metric_period_s=period,
        derived=True,
    )


class RunBundle:
    """A run folder being written. Create with :meth:`create`; read back with :meth:`load`.

    Example::

        b = RunBundle.create(root="runs", name="demo", spec=ml.FleetSpec(name="demo"))
        b.append_requests(df); b.write_metrics(metric_frame); b.finalize()
        b.path        # PosixPath('runs/20250101T120000Z-demo')
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        for name in _APPENDABLE:
            parts = self.path / f"{name}.parts"
            names = {p.name for p in parts.glob("part-*.parquet")} if parts.is_dir() else set()
            main = self.path / f"{name}.parquet"
            # Parts already merged into the consolidated file are gone from disk but listed in its metadata:
            # reusing one of their names would make load() and finalize() skip the new part as merged.
            if main.exists():
                names |= _merged_parts(main)
            existing = [_part_seq(n) for n in names]
            self._seq[name] = max(existing, default=-1) + 1

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str] = "runs",
        name: str = "run",
        spec: FleetSpec | dict[str, Any] | None = None,
    ) -> RunBundle:
        """Make ``<root>/<utc-time>-<name>/`` (a numeric suffix if it exists) and write ``spec.json``."""
        safe = _safe_label(name)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        root_path = Path(root)
        with _storage(root_path, "create the bundle root"):
            if root_path.exists() and not root_path.is_dir():
                raise NotADirectoryError(20, "exists and is not a directory", str(root_path))
            root_path.mkdir(parents=True, exist_ok=True)
        path = root_path / f"{stamp}-{safe}"
        n = 1
        while True:
            try:
                with _storage(path, "create"):
                    path.mkdir()
                break
            except StorageError as exc:
                if not isinstance(exc.cause, FileExistsError):
                    raise
                n += 1
                path = root_path / f"{stamp}-{safe}-{n}"
        bundle = cls(path)
        # run.json marks the folder as a bundle from its first moment; the session fills in the facts
        bundle.write_facts(RunFacts())
        if spec is not None:
            bundle.write_json("spec.json", spec.to_dict() if hasattr(spec, "to_dict") else spec)
        log.info("run bundle %s", path)
        return bundle

    # ---------------------------------------------------------------- writers
    def _append(self, name: str, df: pd.DataFrame) -> Path:
        # The whole write holds the lock: finalize() lists the parts, merges what it reads and deletes what it
        # listed (plus stray .tmp files), so a part landing in between would be merged twice or lose its file.
        with self._lock:
            seq = self._seq[name]
            self._seq[name] = seq + 1
            parts = self.path / f"{name}.parts"
            target = parts / f"part-{seq:06d}.parquet"
            with _storage(target):
                parts.mkdir(exist_ok=True)
                _atomic_write_parquet(target, df)
        return target

    def append_requests(self, df: pd.DataFrame) -> Path:
        """Append per-request rows (a ``LoadResult.requests()``-shaped frame) as one atomic part file."""
        return self._append("requests", df)

    def append_intervals(self, df: pd.DataFrame) -> Path:
        """Append interval rows (a ``LoadResult.intervals()``-shaped frame) as one atomic part file."""
        return self._append("intervals", df)

    def write_metrics(self, df: pd.DataFrame) -> Path:
        """Write (replace) ``metrics.parquet`` with a MetricFrame."""
        path = self.path / "metrics.parquet"
        with _storage(path):
            _atomic_write_parquet(path, df)
        return path

    def write_events(self, df: pd.DataFrame) -> Path:
        """Write (replace) ``events.parquet`` with an events frame."""
        path = self.path / "events.parquet"
        with _storage(path):
            _atomic_write_parquet(path, df)
        return path

    def write_decisions(self, df: pd.DataFrame) -> Path:
        """Write (replace) ``decisions.parquet`` with a ``fleet.decisions()`` frame."""
        path = self.path / "decisions.parquet"
        _atomic_write_parquet(path, df)
        return path

    def write_status(self, df: pd.DataFrame) -> Path:
        """Write (replace) ``status.parquet`` with a ``fleet.status()`` frame."""
        path = self.path / "status.parquet"
        _atomic_write_parquet(path, df)
        return path

    def capture(
        self,
        fleet: Any,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        tables: tuple[str, ...] = ("metrics", "events", "status", "decisions"),
    ) -> list[str]:
        """Save the fleet's metrics, events, decisions and status (each best effort); returns what failed.

        ``start``/``end`` bound the metrics and events read (the run's window); a failed read is logged and named
        in the returned list but never loses what the load already wrote. A fleet without ``decisions()`` (AWS)
        simply has no decisions table. ``tables`` picks which to save (the session saves metrics and events
        while the run goes, all four at its end).

        Example::

            bundle.capture(fleet, start=result.started_at)     # -> [] when everything was saved
        """
        failed: list[str] = []
        readers: list[tuple[str, Any]] = [
            ("metrics", lambda: fleet.metrics(start=start, end=end)),
            ("events", lambda: fleet.events(start=start, end=end)),
            ("status", fleet.status),
            ("decisions", fleet.decisions),
        ]
        for name, read in readers:
            if name not in tables:
                continue
            try:
                df = read()
                if name == "decisions" and start is not None and "timestamp" in df.columns and len(df):
                    import pandas as pd

                    df = df[pd.to_datetime(df["timestamp"], utc=True) >= pd.Timestamp(start)]
                getattr(self, f"write_{name}")(df)
            except Exception as exc:
                log.warning("could not save %s of %r: %s", name, fleet, exc)
                failed.append(name)
        return failed

    def write_facts(self, facts: RunFacts) -> Path:
        """Write (replace) ``run.json``: the run's start, end, send end, metric period and backend."""
        return self.write_json("run.json", facts.to_dict())

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as strict JSON (NaN -> null) to ``<name>`` (``.json`` added when missing)."""
        if not name.endswith(".json"):
            name += ".json"
        path = self.path / name
        with _storage(path):
            _atomic_write_bytes(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True).encode())
        return path

    def finalize(self) -> None:
        """Merge part files into ``requests.parquet`` / ``intervals.parquet``; safe to call again.

        A failure (a full disk) raises :class:`~mlops_lb.errors.StorageError` and leaves the parts in place:
        the bundle still loads.
        """
        for name in _APPENDABLE:
            with _storage(self.path / f"{name}.parquet", "merge parts into"):
                self._finalize_one(name)

    def _finalize_one(self, name: str) -> None:
        parts_dir = self.path / f"{name}.parts"
        if not parts_dir.is_dir():
            return
        with self._lock:
            main = self.path / f"{name}.parquet"
            merged = _merged_parts(main) if main.exists() else set()
            parts = sorted(p.name for p in parts_dir.glob("part-*.parquet"))
            if not set(parts) - merged:
                return
            df = _read_table(self.path, name)
            sort_col = "intended_at" if name == "requests" else "interval_start"
            if sort_col in df.columns:
                df = df.sort_values(sort_col, kind="stable").reset_index(drop=True)
            _atomic_write_parquet(main, df, parts=sorted(set(parts) | merged))
            for p in parts:
                (parts_dir / p).unlink(missing_ok=True)
            for leftover in parts_dir.glob("*.tmp"):
                leftover.unlink(missing_ok=True)
            # a concurrent append may have landed: then the folder stays and the next finalize takes it
            with contextlib.suppress(OSError):
                parts_dir.rmdir()

    # ---------------------------------------------------------------- readers
    @staticmethod
    def load(path: str | os.PathLike[str]) -> LoadedBundle:
        """Read a bundle folder, finished or not (a crash leaves parts and maybe stray ``.tmp`` files).

        Example::

            b = RunBundle.load("runs/20250101T120000Z-demo")
            b.intervals.plot(x="interval_start", y="p99_s")
        """
        folder = Path(path)
        if not folder.is_dir():
            raise BundleError(folder, f"no run bundle at {folder}: not a folder (pass a runs/<id>/ folder)")
        if not is_bundle(folder):
            found = find_bundles(folder)
            listed = ", ".join(str(b) for b in found[:5]) + (
                f" and {len(found) - 5} more" if len(found) > 5 else ""
            )
            raise BundleError(
                folder,
                f"{folder} is not a run bundle (none of run.json, spec.json, requests, intervals or summary is in "
                f"it); "
                + (
                    f"it holds {len(found)} run bundle(s): {listed} (pass one of them)"
                    if found
                    else "no run bundle found inside it either (a run writes runs/<utc-time>-<name>/)"
                ),
                tuple(found),
            )
        tables = {name: _read_table(folder, name) for name in _TABLES}
        spec_data = _read_json(folder / "spec.json", folder)
        if spec_data is not None and not isinstance(spec_data, dict):
            log.warning("spec.json in %s is not a JSON object: ignored", folder)
            spec_data = None
        spec = None
        if spec_data is not None:
            try:
                from .spec import FleetSpec

                spec = FleetSpec.from_dict(spec_data)
            except Exception as exc:
                log.warning("spec.json in %s is not a valid FleetSpec: %s", folder, exc)
        return LoadedBundle(
            path=folder,
            spec=spec,
            spec_dict=spec_data,
            load_settings=_object(folder, "load.json"),
            summary=_object(folder, "summary.json") or {},
            run_facts=RunFacts.from_dict(run)
            if (run := _read_json(folder / "run.json", folder)) is not None
            else None,
            **tables,
        )

    def __repr__(self) -> str:
        return f"RunBundle({str(self.path)!r})"


def _read_json(path: Path, folder: Path | None = None) -> Any:
    """The JSON in ``path``, or None (missing, unreadable, too large, or linked outside ``folder``) with a warning."""
    if not _inside(folder if folder is not None else path.parent, path):
        return None
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            log.warning(
                "skipping %s: %.0f MB is more than a run writes (limit %.0f MB)",
                path,
                size / 1e6,
                MAX_JSON_BYTES / 1e6,
            )
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None


def _object(folder: Path, name: str) -> dict[str, Any] | None:
    """A JSON file of the bundle that must hold an object: anything else is a malformed bundle, said plainly."""
    data = _read_json(folder / name, folder)
    if data is not None and not isinstance(data, dict):
        raise BundleError(
            folder / name,
            f"{folder / name} is malformed: expected a JSON object, found {type(data).__name__}",
        )
    return data


def is_bundle(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds any of the files a run writes (see the module docstring's layout).

    Example::

        is_bundle("runs/20260101T000000Z-demo")   # True; is_bundle("runs") -> False
    """
    f = Path(folder)
    return f.is_dir() and any((f / m).exists() for m in _MARKERS)


def find_bundles(root: str | os.PathLike[str], depth: int = 2) -> list[Path]:
    """Run bundles under ``root`` (itself excluded), up to ``depth`` folders down, newest name first.

    Example::

        find_bundles("runs")[:3]
    """
    out: list[Path] = []
    level = [Path(root)]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            try:
                children = sorted((c for c in d.iterdir() if c.is_dir() and not c.is_symlink()), reverse=True)
            except OSError:
                continue
            for c in children:
                (out if is_bundle(c) else nxt).append(c)
        level = nxt
    return out


def _safe_label(name: Any) -> str:
    """A folder-name-safe run label: other characters become ``-``; a long label keeps its head and gains a
    hash of the whole, so two long labels that share a head still get different folders."""
    import hashlib

    safe = _NAME_RE.sub("-", str(name)).strip("-") or "run"
    if len(safe) > _MAX_LABEL:
        digest = hashlib.sha256(safe.encode()).hexdigest()[:8]
        safe = f"{safe[: _MAX_LABEL - 9].rstrip('-.')}-{digest}"
    return safe


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


@dataclass
class LoadedBundle:
    """A run bundle read back from disk (see :meth:`RunBundle.load`); the report's typed input.

    ``facts`` are the run's start, end, send end, metric period and backend (:class:`RunFacts`); ``window`` is
    the run's own time span, which the report and its plots cut metrics, events, decisions and costs to.

    Example::

        b = RunBundle.load(path)
        b.spec, len(b.requests), b.summary.get("p99_s"), b.window
    """

    path: Path | None
    spec: FleetSpec | None
    requests: pd.DataFrame
    intervals: pd.DataFrame
    metrics: pd.DataFrame
    events: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    spec_dict: dict[str, Any] | None = None
    load_settings: dict[str, Any] | None = None
    decisions: pd.DataFrame = field(default_factory=_empty)
    status: pd.DataFrame = field(default_factory=_empty)
    run_facts: RunFacts | None = None

    @classmethod
    def coerce(cls, obj: Any) -> LoadedBundle:
        """A LoadedBundle from a run folder, a LoadedBundle, or a bundle-like object with the same attributes.

        This is the one place that adapts foreign shapes (a test's namespace, an older caller's object); the report
        reads typed fields only.

        Example::

            LoadedBundle.coerce("runs/20250101T120000Z-demo").window
        """
        import pandas as pd

        if isinstance(obj, LoadedBundle):
            return obj
        if isinstance(obj, (str, os.PathLike)):
            return RunBundle.load(obj)

        def frame(name: str) -> pd.DataFrame:
            v = getattr(obj, name, None)
            if callable(v):
                v = v()
            return v if isinstance(v, pd.DataFrame) else pd.DataFrame()

        summary = getattr(obj, "summary", None)
        if callable(summary):
            summary = summary()
        path = getattr(obj, "path", None)
        return cls(
            path=Path(path) if path is not None else None,
            spec=getattr(obj, "spec", None),
            requests=frame("requests"),
            intervals=frame("intervals"),
            metrics=frame("metrics"),
            events=frame("events"),
            summary=dict(summary) if isinstance(summary, dict) else {},
            spec_dict=getattr(obj, "spec_dict", None),
            load_settings=getattr(obj, "load_settings", None),
            decisions=frame("decisions"),
            status=frame("status"),
            run_facts=facts if isinstance(facts := getattr(obj, "run_facts", None), RunFacts) else None,
        )

    @property
    def facts(self) -> RunFacts:
        """The run's facts: ``run.json`` as the session wrote it, with what it lacks derived from the records
        once (an older bundle, or a session killed before its end was written)."""
        facts = self.run_facts
        if facts is None or (not facts.derived and None in (facts.start, facts.end, facts.metric_period_s)):
            derived = derive_facts(self.requests, self.intervals, self.metrics)
            facts = derived if facts is None else facts.merged(derived)
            self.run_facts = facts
        return facts

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(start, end) of the run in UTC (see :class:`RunFacts`), or None when nothing is known."""
        return self.facts.window

    def in_window(self) -> LoadedBundle:
        """A copy whose metrics, events and decisions are cut to :attr:`window` (unchanged when it is None).

        A metric datapoint is kept when its period overlaps the window (its timestamp is the period's start).
        """
        import dataclasses

        import pandas as pd

        facts = self.facts
        win = facts.window
        if win is None:
            return self
        start, end = win

        def cut(df: pd.DataFrame, margin_s: float = 0.0) -> pd.DataFrame:
            if not len(df) or "timestamp" not in df.columns:
                return df
            ts = pd.to_datetime(df["timestamp"], utc=True)
            keep = (ts >= start - pd.Timedelta(seconds=margin_s)) & (ts <= end)
            return df[keep].reset_index(drop=True)

        # a period that started just before the run still covers its first seconds
        metrics = cut(self.metrics, margin_s=max((facts.metric_period_s or 0.0) - 1e-6, 0.0))
        metrics.attrs = dict(self.metrics.attrs)
        return dataclasses.replace(
            self, metrics=metrics, events=cut(self.events), decisions=cut(self.decisions)
        )

    def __repr__(self) -> str:
        spec = self.spec.name if self.spec is not None else None
        path = str(self.path) if self.path is not None else None
        return (
            f"LoadedBundle({path!r}, spec={spec!r}, requests={len(self.requests):,}, "
            f"intervals={len(self.intervals):,}, metrics={len(self.metrics):,}, events={len(self.events):,}, "
            f"decisions={len(self.decisions):,})"
        )
