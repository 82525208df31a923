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
    spot_interruptions.parquet  one row per spot interruption (``fleet.spot_interruptions()``; spot fleets only)
    spot_ledger.parquet  every instance's purchase option, type and life (that frame's ``attrs["ledger"]``)
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
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._bundle_files import (
    MAX_JSON_BYTES,
    _inside,
    _object,
    _read_json,
    _safe_label,
    find_bundles,
    is_bundle,
)
from .errors import BundleError, StorageError
from .run_facts import RunFacts, derive_facts

if TYPE_CHECKING:
    import pandas as pd

    from .spec import FleetSpec

__all__ = ["MAX_JSON_BYTES", "LoadedBundle", "RunBundle", "RunFacts", "find_bundles", "is_bundle"]

log = logging.getLogger(__name__)

_APPENDABLE = ("requests", "intervals")
_TABLES = (
    "requests",
    "intervals",
    "metrics",
    "events",
    "decisions",
    "status",
    "spot_interruptions",
    "spot_ledger",
)
_PARTS_KEY = b"mlops_lb_parts"


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

    def write_spot(self, df: pd.DataFrame) -> list[Path]:
        """Write (replace) ``spot_interruptions.parquet`` and ``spot_ledger.parquet`` from a
        ``fleet.spot_interruptions()`` frame (its ``attrs["ledger"]`` is the ledger; ``attrs["time_scale"]``
        goes into each ledger row, so the bundle alone prices the run). Nothing is written for a fleet that
        never had a spot instance."""
        import pandas as pd

        ledger = pd.DataFrame(list(df.attrs.get("ledger") or []))
        if not len(df) and not len(ledger):
            return []
        if len(ledger):
            ledger["time_scale"] = float(df.attrs.get("time_scale") or 1.0)
        out = []
        for name, frame in (("spot_interruptions", df), ("spot_ledger", ledger)):
            path = self.path / f"{name}.parquet"
            frame = frame.copy()
            frame.attrs = {}  # the ledger list does not belong in the parquet metadata
            with _storage(path):
                _atomic_write_parquet(path, frame)
            out.append(path)
        return out

    def capture(
        self,
        fleet: Any,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        tables: tuple[str, ...] = ("metrics", "events", "status", "decisions", "spot"),
    ) -> list[str]:
        """Save the fleet's metrics, events, decisions, status and spot tables (each best effort); returns what
        failed.

        ``start``/``end`` bound the metrics and events read (the run's window); a failed read is logged and named
        in the returned list but never loses what the load already wrote. A fleet without ``decisions()`` (AWS)
        simply has no decisions table; one without ``spot_interruptions()`` (or without spot capacity) has no
        spot tables. ``tables`` picks which to save (the session saves metrics and events while the run goes,
        all of them at its end).

        Example::

            bundle.capture(fleet, start=result.started_at)     # -> [] when everything was saved
        """
        failed: list[str] = []
        readers: list[tuple[str, Any]] = [
            ("metrics", lambda: fleet.metrics(start=start, end=end)),
            ("events", lambda: fleet.events(start=start, end=end)),
            ("status", lambda: fleet.status()),
            ("decisions", lambda: fleet.decisions()),
        ]
        spot = getattr(fleet, "spot_interruptions", None)
        if callable(spot):  # a local fleet; it answers an empty frame without capacity.spot (nothing written)
            readers.append(("spot", spot))
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
            rollouts=list((_object(folder, "rollout.json") or {}).get("rollouts") or []),
            shadow=_object(folder, "shadow.json"),
            summary=_object(folder, "summary.json") or {},
            run_facts=RunFacts.from_dict(run)
            if (run := _read_json(folder / "run.json", folder)) is not None
            else None,
            **tables,
        )

    def __repr__(self) -> str:
        return f"RunBundle({str(self.path)!r})"


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
    # rollout.json's rollouts (RolloutResult.to_dict() each) and shadow.json (ShadowResult.summary()), if any
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    shadow: dict[str, Any] | None = None
    # spot fleets: one row per interruption (with UTC ``<moment>_at`` columns) and the instance ledger; empty in
    # bundles of other fleets and in bundles written before they were saved
    spot_interruptions: pd.DataFrame = field(default_factory=_empty)
    spot_ledger: pd.DataFrame = field(default_factory=_empty)

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
            spot_interruptions=frame("spot_interruptions"),
            spot_ledger=frame("spot_ledger"),
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
