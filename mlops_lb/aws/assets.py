"""Reproducible, content-addressed assets for instances: this package's wheel, a pinned wheelhouse, the model.

Every ``pulumi up`` renders user data from these; a byte that changes there makes a new launch-template
version and an instance refresh (DESIGN §4). So the same code must give the same bytes:

* :func:`build_wheel` zips the *installed* package's files (a source checkout, an editable install or
  site-packages alike: no setuptools, no source tree, no ``pip wheel``) with sorted entries, a fixed timestamp
  and fixed permissions; METADATA comes from the installed distribution;
* :func:`pinned_requirements` pins the ``serve`` closure to the versions of *this* environment, and
  :func:`build_wheelhouse` downloads exactly those as binary wheels for the instance's platform and Python
  (``pip download --only-binary=:all: --no-deps --platform ... --python-version ...``), cached by content;
* keys in the bucket carry the content hash (``wheels/<sha>/mlops_lb-...whl``, ``model/<sha>/<name>``).

Example::

    wheel = build_wheel()                         # same bytes on every call for the same installed code
    pins = pinned_requirements()                  # ('fastapi==0.115.0', ..., 'uvicorn==0.30.6')
    house = build_wheelhouse(pins)                # ~/.mlops_lb/wheelhouse/<hash>/ with *.whl + requirements.txt
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProvisionError

__all__ = [
    "AL2023_PYTHONS",
    "INSTANCE_PYTHON",
    "Assets",
    "Wheelhouse",
    "build_project_archive",
    "build_wheel",
    "build_wheelhouse",
    "content_key",
    "instance_python",
    "mlops_home",
    "pinned_requirements",
    "pip_download_command",
    "platform_tags",
    "resolve_requirements",
    "sha256_file",
    "staged_asset",
]

# Pythons AL2023 ships side by side with its system 3.9, each as python3.N (dnf install python3.N):
# https://docs.aws.amazon.com/linux/al2023/ug/python.html (read 2026-12-06: "3.11, 3.12, 3.13, and 3.14").
AL2023_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
# The oldest of them: what an instance gets when the launcher's own Python is older (3.10).
INSTANCE_PYTHON = AL2023_PYTHONS[0]
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry; what reproducible wheels use
_PACKAGE = "mlops_lb"
_DIST = "mlops-lb"


def mlops_home() -> Path:
    """The toolkit's state directory: ``$MLOPS_LB_HOME`` or ``~/.mlops_lb``.

    It lives here, the bottom of the AWS backend, because the asset caches, the program's staged files and the
    stack's Pulumi state all use it (``stack`` re-exports it).

    Example::

        mlops_home() / "wheelhouse"   # PosixPath('/home/me/.mlops_lb/wheelhouse')
    """
    return Path(os.environ.get("MLOPS_LB_HOME") or "~/.mlops_lb").expanduser()


def staged_asset(path: Path, key: str) -> Path:
    """A copy of ``path`` at the content-addressed ``mlops_home()/assets/<key>`` (written once, atomically), so an
    asset's path, not only its hash, is the same on every run and on every machine that has it.

    Example::

        staged_asset(Path("dist/mlops_lb-0.3-py3-none-any.whl"), "wheel/3f2a.../mlops_lb-0.3-py3-none-any.whl")
    """
    dest = mlops_home() / "assets" / key
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(path.read_bytes())
        tmp.replace(dest)
    return dest


def instance_python(launcher: tuple[int, int] | None = None) -> str:
    """The Python the instances run: the launcher's own minor version when AL2023 ships it (a model pickled here
    loads there under the same Python), the oldest AL2023 one for an older launcher; a launcher newer than
    AL2023 ships is refused with the range. The packages are resolved for this version, never copied from here.

    Example::

        instance_python((3, 13))   # '3.13'
        instance_python((3, 10))   # '3.11'
    """
    major, minor = launcher or sys.version_info[:2]
    version = f"{major}.{minor}"
    if version in AL2023_PYTHONS:
        return version
    if (major, minor) < (3, int(INSTANCE_PYTHON.split(".")[1])):
        return INSTANCE_PYTHON
    raise ProvisionError(
        f"this notebook runs Python {version}, newer than the Pythons Amazon Linux 2023 ships "
        f"({AL2023_PYTHONS[0]}-{AL2023_PYTHONS[-1]}); launch from Python {AL2023_PYTHONS[-1]} or older, "
        "so the model and the instances' packages match"
    )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_key(prefix: str, path: Path) -> str:
    """A bucket key that changes exactly when the file's bytes do: ``<prefix>/<sha256[:16]>/<file name>``."""
    return f"{prefix}/{sha256_file(path)[:16]}/{path.name}"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(_DIST)
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0.0.0"


def _metadata_text() -> str:
    """A minimal METADATA, written here rather than copied: the installed metadata differs by install method
    (an egg-info beside a checkout, a dist-info in site-packages), and instances install with --no-deps."""
    return f"Metadata-Version: 2.1\nName: {_DIST}\nVersion: {_version()}\n"


def _entry_points() -> str:
    return "[console_scripts]\nmlops-lb = mlops_lb.cli:main\n"


def _package_files(root: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent).as_posix()
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        out.append((rel, path))
    return out


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def build_wheel(out_dir: str | os.PathLike[str] | None = None, *, package_dir: Path | None = None) -> Path:
    """Zip the installed ``mlops_lb`` package into a wheel, byte-identical for the same files.

    Works from a source tree, an editable install or site-packages: it reads the package's own files
    (``package_dir``, default the imported package), never runs setuptools or pip.

    Example::

        build_wheel()   # PosixPath('/tmp/mlops-lb-wheel-.../mlops_lb-0.1.0-py3-none-any.whl')
    """
    # This file's grandparent is the package (mlops_lb/aws/assets.py): no import of the front door, which would
    # import every layer above this one.
    root = package_dir or Path(__file__).resolve().parents[1]
    version = _version()
    dist_info = f"{_PACKAGE}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [(rel, path.read_bytes()) for rel, path in _package_files(root)]
    entries += [
        (f"{dist_info}/METADATA", _metadata_text().encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: mlops_lb.aws.assets\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", _entry_points().encode()),
    ]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        writer.writerow(_record_line(name, data))
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="mlops-lb-wheel-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:  # package files sorted; dist-info last, as the wheel spec recommends
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    return path


# ------------------------------------------------------------------------------------------------ wheelhouse
def _requirement_parser() -> tuple[type, Callable[[str], object]]:
    try:
        from packaging.markers import Marker
        from packaging.requirements import Requirement
    except ImportError:  # pip always vendors packaging
        from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef,assignment]
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment]
    return Requirement, Marker


def _target_env(python_version: str, machine: str) -> dict[str, str]:
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
        "extra": "",
    }


def pinned_requirements(
    roots: Sequence[str] | None = None,
    *,
    python_version: str = INSTANCE_PYTHON,
    architecture: str = "x86_64",
) -> tuple[str, ...]:
    """``name==version`` for every package the ``serve`` requirements pull in, at the versions installed here.

    The closure is walked through installed metadata with markers evaluated for the *instance* (Linux, the
    instance's Python and CPU), so two instances launched a week apart install the same thing.
    A root that is not installed here raises ProvisionError naming it.

    Example::

        pinned_requirements()          # ('annotated-types==0.7.0', 'anyio==4.4.0', ...)
    """
    from importlib import metadata

    from .userdata import SERVE_REQUIREMENTS

    Requirement, _ = _requirement_parser()
    env = _target_env(python_version, "aarch64" if architecture == "arm64" else "x86_64")
    todo = [Requirement(r) for r in (roots if roots is not None else SERVE_REQUIREMENTS)]  # type: ignore[operator]
    pins: dict[str, str] = {}
    while todo:
        req = todo.pop()
        marker = getattr(req, "marker", None)
        extras = sorted(getattr(req, "extras", ()) or ())
        if marker is not None and not any(marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()  # type: ignore[attr-defined]
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise ProvisionError(
                f"cannot pin {req} for the instances: it is not installed in this environment; "
                "install the serve extra here (pip install 'mlops-lb[serve]') so instances get the same versions"
            ) from exc
        first = name not in pins
        pins[name] = dist.version
        for sub in dist.requires or []:
            sreq = Requirement(sub)  # type: ignore[operator]
            smarker = getattr(sreq, "marker", None)
            if smarker is not None and not any(smarker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                continue
            sname = re.sub(r"[-_.]+", "-", sreq.name).lower()  # type: ignore[attr-defined]
            if first or sname not in pins:
                todo.append(sreq)
    return tuple(f"{n}=={v}" for n, v in sorted(pins.items()))


def resolve_requirements(
    roots: Sequence[str] | None = None,
    *,
    python_version: str = INSTANCE_PYTHON,
    architecture: str = "x86_64",
    find_links: Path | None = None,
    python: str = sys.executable,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> tuple[str, ...]:
    """``name==version`` for the whole closure of ``roots`` (default: the ``serve`` extra), resolved for the
    *instance* (AL2023's glibc, ``architecture``, CPython ``python_version``), not copied from this environment.

    uv's resolver does it (``uv pip compile --python-platform <arch>-manylinux_2_34 --python-version X
    --only-binary :all:``): it evaluates markers *and* extras for the target (``uvicorn[standard]`` keeps
    websockets, watchfiles, python-dotenv; ``python_version < "3.12"`` is judged for the instance) and picks
    versions that have wheels for it. pip's ``install --dry-run --report --python-version`` was tried first and
    rejected: pip evaluates environment markers against the interpreter running it, not the target (measured
    here: a ``python_version < "3.12"`` dependency was pinned for a 3.13 instance). glibc 2.34 is AL2023's.

    Example::

        resolve_requirements(python_version="3.13")   # ('annotated-types==0.7.0', ..., 'numpy==2.3.4', ...)
    """
    from .userdata import SERVE_REQUIREMENTS

    arch = "aarch64" if architecture == "arm64" else "x86_64"
    cmd = [python, "-m", "uv", "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate"]
    cmd += ["--python-platform", f"{arch}-manylinux_2_34", "--python-version", python_version]
    cmd += ["--only-binary", ":all:"]
    if find_links is not None:  # tests and air-gapped setups: a local directory of wheels instead of PyPI
        cmd += ["--no-index", "--find-links", str(find_links), "--no-cache"]
    wanted = "".join(f"{r}\n" for r in (roots if roots is not None else SERVE_REQUIREMENTS))
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}  # resolving needs no interpreter of that version
    try:
        proc = run(cmd, input=wanted, capture_output=True, text=True, check=False, env=env)
    except FileNotFoundError as exc:  # pragma: no cover - python itself missing
        raise ProvisionError(f"cannot run {python}") from exc
    if proc.returncode != 0:
        missing = "No module named uv" in (proc.stderr or "")
        raise ProvisionError(
            "resolving the instances' packages needs uv: pip install 'mlops-lb[aws]'"
            if missing
            else f"resolving the instances' packages for {architecture}/Python {python_version} failed; every "
            "package needs a binary wheel for that platform (uv's message below names the one that has none)",
            stderr=(proc.stderr or proc.stdout or "")[-2000:],
        )
    pins = {}
    for line in proc.stdout.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()] = version.split(";", 1)[0].strip()
    return tuple(f"{n}=={v}" for n, v in sorted(pins.items()))


def platform_tags(architecture: str) -> tuple[str, ...]:
    """pip ``--platform`` tags an AL2023 instance accepts (glibc 2.34), newest first."""
    arch = "aarch64" if architecture == "arm64" else "x86_64"
    return (*tuple(f"manylinux_2_{v}_{arch}" for v in (34, 28, 17)), f"manylinux2014_{arch}", f"linux_{arch}")


def pip_download_command(
    pins: Iterable[str],
    dest: Path,
    *,
    architecture: str = "x86_64",
    python_version: str = INSTANCE_PYTHON,
    python: str = sys.executable,
    find_links: Path | None = None,
) -> list[str]:
    """The ``pip download`` command line that fetches exactly ``pins`` for the instance's platform."""
    cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:", "--no-deps"]
    for tag in platform_tags(architecture):
        cmd += ["--platform", tag]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    if find_links is not None:  # tests and air-gapped setups: a local directory of wheels instead of PyPI
        cmd += ["--no-index", "--find-links", str(find_links)]
    return cmd + list(pins)


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels plus the ``requirements.txt`` that pins them; ``digest`` hashes both."""

    path: Path
    requirements: tuple[str, ...]
    digest: str
    python_version: str = INSTANCE_PYTHON
    architecture: str = "x86_64"

    @property
    def files(self) -> list[Path]:
        """Every file to upload (wheels and requirements.txt), sorted."""
        return sorted(p for p in self.path.iterdir() if p.is_file())


@dataclass(frozen=True)
class Assets:
    """What the stack uploads: the package wheel, an optional wheelhouse, an optional model file.

    Example::

        Assets(wheel=build_wheel(), model=Path("model.onnx"))
    """

    wheel: Path
    model: Path | None = None
    wheelhouse: Wheelhouse | None = None
    install: Path | None = None  # server.install as one file: requirements, wheel or a project archive
    python_version: str | None = (
        None  # the instances' Python; default: the wheelhouse's, else instance_python()
    )

    @property
    def instance_python(self) -> str:
        """The AL2023 Python the instances' venv is made with (the one the wheelhouse was resolved for)."""
        if self.wheelhouse is not None:
            return self.wheelhouse.python_version
        return self.python_version or instance_python()


def build_wheelhouse(
    pins: Sequence[str],
    *,
    architecture: str = "x86_64",
    python_version: str = INSTANCE_PYTHON,
    cache_dir: Path | None = None,
    find_links: Path | None = None,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> Wheelhouse:
    """Download ``pins`` as binary wheels for the instance into a cache keyed by what was asked.

    A second call with the same pins, platform and Python returns the cached directory without running pip.

    Example::

        build_wheelhouse(pinned_requirements(), architecture="arm64")
    """
    ask = "\n".join([architecture, python_version, *sorted(pins)])
    key = hashlib.sha256(ask.encode()).hexdigest()[:16]
    dest = (cache_dir or mlops_home() / "wheelhouse") / key
    req = dest / "requirements.txt"
    if not req.is_file():
        tmp = dest.with_name(dest.name + ".part")
        tmp.mkdir(parents=True, exist_ok=True)
        cmd = pip_download_command(
            pins, tmp, architecture=architecture, python_version=python_version, find_links=find_links
        )
        proc = run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and "No module named pip" in (proc.stderr or ""):
            # A venv made by uv (or `python -m venv --without-pip`) has no pip: say so, not "no binary wheel".
            raise ProvisionError(
                f"downloading the instances' wheels needs pip in this environment ({sys.executable} has none, "
                "as venvs made by uv do): pip is a dependency of mlops-lb; install it with "
                "`uv pip install pip` or `python -m ensurepip`",
                stderr=(proc.stderr or "")[-2000:],
            )
        if proc.returncode != 0:
            raise ProvisionError(
                f"downloading the instances' wheels for {architecture}/Python {python_version} failed; "
                "every pinned version needs a binary wheel for that platform",
                stderr=(proc.stderr or proc.stdout or "")[-2000:],
            )
        (tmp / "requirements.txt").write_text("".join(f"{p}\n" for p in sorted(pins)))
        tmp.replace(dest) if not dest.exists() else None
    files = sorted(p for p in dest.iterdir() if p.is_file())
    digest = hashlib.sha256(b"".join(p.name.encode() + sha256_file(p).encode() for p in files)).hexdigest()
    return Wheelhouse(
        path=dest,
        requirements=tuple(sorted(pins)),
        digest=digest,
        python_version=python_version,
        architecture=architecture,
    )


_SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
}


def build_project_archive(project: Path, out_dir: Path | None = None) -> Path:
    """A ``.tar.gz`` of a project directory (``server.install``), byte-identical for the same files.

    Entries sorted, owner 0/0, mode 0644 (0755 when executable), mtime 0, gzip without a timestamp; caches,
    virtualenvs and ``.git`` are left out. Its content hash becomes its bucket key, so user data (and the fleet)
    change only when a file does.

    Example::

        build_project_archive(Path("examples/byo_fastapi"))   # .../byo_fastapi.tar.gz
    """
    import gzip
    import tarfile

    project = project.resolve()
    files = sorted(
        p
        for p in project.rglob("*")
        if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(project).parts) and p.suffix != ".pyc"
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.relative_to(project).as_posix())
            data = f.read_bytes()
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
            info.mode = 0o755 if os.access(f, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = out_dir or Path(tempfile.mkdtemp(prefix="mlops-lb-project-"))
    path = out / f"{project.name}.tar.gz"
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    return path
