"""AwsFleet: the Fleet protocol on AWS, through the Pulumi Automation API (slow paths) and boto3 (fast paths).

(Over 500 lines on purpose: one class implementing the Fleet protocol, plus the orphan finder that reads the
same state directory; splitting the class would scatter the one object users hold.)

Where things live: Pulumi state in a local file backend ``file://~/.mlops_lb/pulumi`` unless
``PULUMI_BACKEND_URL`` says otherwise; one persistent work dir per stack (``~/.mlops_lb/stacks/<stack>``) so
the stack's config survives a kernel restart; the secrets passphrase from ``PULUMI_CONFIG_PASSPHRASE`` /
``PULUMI_CONFIG_PASSPHRASE_FILE`` or one generated once into ``~/.mlops_lb/passphrase`` (mode 0600) and handed
to Pulumi *by file path*, so it never appears in a workspace repr or a log. ``MLOPS_LB_HOME`` moves
``~/.mlops_lb``.

Example::

    import mlops_lb as ml
    fleet = ml.open_fleet(ml.FleetSpec(name="demo", region="us-east-1"), backend="aws")
    fleet.preflight()                      # read-only checks of the account; launch() runs them first
    fleet.launch(on_output=print)          # pulumi up: ALB, target group, launch template, ASG, policy
    fleet.scale(desired=3)                 # boto3 SetDesiredCapacity, immediate, no pulumi
    fleet.scale(max=8)                     # stack config + pulumi up: only the group changes (assets pinned)
    fleet.update_code(on_output=print)     # ship new code/packages: diff, preview, refresh keeping capacity
    fleet.logs(fleet.status().target[0])   # the instance's console (bootstrap log)
    fleet.status(); fleet.events(); fleet.metrics()
    fleet.destroy(confirm="demo")
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, ProvisionError, SpecError
from ..fleet import Capacity, OnOutput
from ..frames import STATUS_COLUMNS, decisions_frame, events_frame
from ..spec import FleetSpec
from ._boto import client, provision_error
from .assets import Wheelhouse, mlops_home
from .pinning import AssetsLock
from .program import STACK_TAG, fleet_program

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from ..spec import ScaleChange
    from ._preflight import Preflight

__all__ = ["PULUMI_INSTALL", "AwsFleet", "find_orphans", "mlops_home"]

log = logging.getLogger(__name__)

PULUMI_INSTALL = "curl -fsSL https://get.pulumi.com | sh   # or: brew install pulumi/tap/pulumi"
_STACK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def _backend_url() -> str:
    url = os.environ.get("PULUMI_BACKEND_URL")
    if url:
        return url
    path = mlops_home() / "pulumi"
    path.mkdir(parents=True, exist_ok=True)
    return f"file://{path}"


def _passphrase_env() -> dict[str, str]:
    """Env vars that give Pulumi the secrets passphrase; only ever a *file path*, never the secret itself."""
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or os.environ.get(
        "PULUMI_CONFIG_PASSPHRASE_FILE"
    ):
        return {}  # inherited from this process's environment by the CLI
    path = mlops_home() / "passphrase"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            log.info(
                "created the Pulumi secrets passphrase file %s (mode 0600); keep it to read your stacks", path
            )
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def _require_cli() -> None:
    if shutil.which("pulumi") is None:
        raise BackendUnavailable("pulumi", PULUMI_INSTALL, "the AWS backend drives the Pulumi CLI")


def _useful_lines(text: str, limit: int = 30) -> str:
    keep = [
        ln.rstrip()
        for ln in text.splitlines()
        if re.search(r"error|failed|denied|invalid|exception|unauthori[sz]ed|limit", ln, re.I)
        or ln.startswith("    * ")
    ]
    return "\n".join(list(dict.fromkeys(keep))[-limit:])


def _translate(action: str, exc: BaseException) -> Exception:
    """Map a pulumi.automation / OS error to our error tree (caller raises it ``from exc``)."""
    from pulumi.automation import errors as auto_errors

    if isinstance(exc, FileNotFoundError) and "pulumi" in str(exc):
        return BackendUnavailable("pulumi", PULUMI_INSTALL, str(exc))
    if isinstance(exc, auto_errors.ConcurrentUpdateError):
        return ProvisionError(
            f"{action}: another update of this stack is running (or a crashed one left a lock); "
            "wait for it, or run `pulumi cancel` / `pulumi stack export | import`",
            stderr=_useful_lines(str(exc)),
            result=exc,
        )
    if isinstance(exc, auto_errors.StackNotFoundError):
        return ProvisionError(
            f"{action}: the stack does not exist (launch it first)",
            stderr=_useful_lines(str(exc)),
            result=exc,
        )
    if isinstance(exc, auto_errors.CommandError):
        # The CLI's result is only kept as text (" code: ...\n stdout: ...\n stderr: ..."): keep the lines that
        # say what went wrong, or the tail when none match.
        text = str(exc)
        return ProvisionError(f"{action} failed", stderr=_useful_lines(text) or text[-2000:], result=exc)
    if type(exc).__name__ == "ClientError" or type(exc).__module__.startswith("botocore"):
        return provision_error(action, exc)
    return ProvisionError(f"{action} failed: {exc}")


class AwsFleet:
    """A fleet on AWS: ALB + target group + Auto Scaling group of EC2 instances serving the spec's model.

    Example::

        with AwsFleet(FleetSpec(name="demo", region="eu-west-1")) as fleet:
            fleet.launch(on_output=print)
            fleet.url
        # the stack stays; destroy it with fleet.destroy(confirm="demo") or `mlops-lb down fleet.yaml --backend aws --yes`
    """

    def __init__(
        self,
        spec: FleetSpec,
        *,
        stack_name: str | None = None,
        project_name: str = "mlops-lb",
        work_dir: str | os.PathLike[str] | None = None,
        region: str | None = None,
        session: Any = None,
        wheel: str | os.PathLike[str] | None = None,
        wheelhouse: Wheelhouse | None = None,
    ) -> None:
        if not isinstance(spec, FleetSpec):
            raise SpecError("spec", f"must be a FleetSpec (got {type(spec).__name__})")
        self.spec = spec
        self.stack_name = stack_name or spec.name
        if not _STACK_RE.fullmatch(self.stack_name):
            raise SpecError("stack_name", f"must be letters, digits, _ . - (got {self.stack_name!r})")
        if not _STACK_RE.fullmatch(project_name):
            raise SpecError("project_name", f"must be letters, digits, _ . - (got {project_name!r})")
        self.project_name = project_name
        self._session = session
        self.region = (
            region
            or spec.region
            or getattr(session, "region_name", None)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        if not self.region or not _REGION_RE.fullmatch(self.region):
            raise SpecError(
                "region",
                f"must be an AWS region such as us-east-1: set FleetSpec.region, region= or "
                f"AWS_REGION (got {self.region!r})",
            )
        self.work_dir = Path(work_dir) if work_dir else mlops_home() / "stacks" / self.stack_name
        self._wheel = wheel
        self._wheelhouse = wheelhouse
        # What the next update ships: the stack's pinned assets (``pinning``) or, on a first launch and in
        # update_code(), the freshly built ones; the program reads these when Pulumi runs it.
        self._ship_wheel: Path | None = None
        self._ship_house: Wheelhouse | None = None
        self._ship_python: str | None = None
        self._lock: AssetsLock | None = None
        self._resolved: dict[str, Any] | None = None
        self._repin_ami = False
        self._closed = False
        self._stack: Any = None
        self._outputs: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"AwsFleet(stack={self.stack_name!r}, project={self.project_name!r}, region={self.region!r}, "
            f"work_dir={str(self.work_dir)!r})"
        )

    # ------------------------------------------------------------------ workspace
    def env_vars(self) -> dict[str, str]:
        """Environment given to the Pulumi CLI: backend URL, passphrase *file*, region (never a secret value)."""
        env = {
            "PULUMI_BACKEND_URL": _backend_url(),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "AWS_REGION": str(self.region),
            **_passphrase_env(),
        }
        profile = getattr(self._session, "profile_name", None)
        if profile and profile != "default":
            env["AWS_PROFILE"] = profile
        return env

    def stack_config(self) -> dict[str, str]:
        """Stack config derived from the spec (the program reads these; ``scale()`` changes them)."""
        return {
            "aws:region": str(self.region),
            "minSize": str(self.spec.capacity.min),
            "maxSize": str(self.spec.capacity.max),
            "targetRpsPerTarget": repr(self.spec.scaling.target_rps_per_target),
        }

    def workspace_options(self) -> Any:
        """The ``LocalWorkspaceOptions`` of this stack (persistent work dir, env, project settings)."""
        from pulumi import automation as auto

        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = self.env_vars()
        settings = auto.ProjectSettings(
            name=self.project_name,
            runtime="python",
            backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"]),
            description="mlops_lb fleet (inline program)",
        )
        return auto.LocalWorkspaceOptions(
            work_dir=str(self.work_dir), env_vars=env, project_settings=settings
        )

    def _get_stack(self) -> Any:
        if self._stack is not None:
            return self._stack
        _require_cli()  # before any cloud call or wheel build
        from pulumi import automation as auto

        fleet_program(self.spec, wheel=self._wheel)  # a bad model path fails here, before any cloud call

        def program() -> None:  # reads the fleet's state when Pulumi runs it: spec, preflight ids, assets
            fleet_program(
                self.spec,
                wheel=self._ship_wheel or self._wheel,
                resolved=self._resolved,
                wheelhouse=self._ship_house if self._ship_wheel is not None else self._wheelhouse,
                python_version=self._ship_python,
            )()

        try:
            self._stack = auto.create_or_select_stack(
                stack_name=self.stack_name,
                project_name=self.project_name,
                program=program,
                opts=self.workspace_options(),
            )
        except Exception as exc:
            raise _translate(f"selecting stack {self.stack_name}", exc) from exc
        return self._stack

    def _apply_config(self, stack: Any) -> None:
        from pulumi import automation as auto

        from .pinning import CONFIG_KEY

        config = self.stack_config()
        if self._lock is not None:  # the assets this update ships, kept with the stack for the next one
            config[CONFIG_KEY] = self._lock.to_json()
        try:
            stack.set_all_config({k: auto.ConfigValue(value=v) for k, v in config.items()})
        except Exception as exc:
            raise _translate("setting stack config", exc) from exc

    # ------------------------------------------------------------------ preflight
    def preflight(self) -> Preflight:
        """Read-only checks of the account against the spec (``ml.aws.preflight``), AMI pinned to the stack's.

        The AMI stays the one the stack already runs (stack output ``ami_id``) unless the architecture changed,
        the spec pins another, or :meth:`update_ami` asked for the latest: a new AMI release never rolls the
        fleet by itself.
        """
        from ._preflight import preflight

        pf = preflight(self.spec, session=self._session, region=self.region)
        pinned = None if self._repin_ami or self.spec.instance.ami else self._live_outputs().get("ami_id")
        live_arch = self._live_outputs().get("architecture")
        if pinned and pf.resolved.get("ami_id") and live_arch == pf.resolved.get("architecture"):
            pf.resolved["ami_id"] = pinned
            pf.add("ami pinned", True, f"{pinned}: the AMI the stack runs (fleet.update_ami() moves it)")
        return pf

    def _live_outputs(self) -> dict[str, Any]:
        """Outputs of the last update, or {} for a stack never launched (or when they cannot be read)."""
        try:
            return self.outputs()
        except (ProvisionError, BackendUnavailable):
            return {}

    def _ready(self, on_output: OnOutput | None, *, rebuild: bool = False) -> Any:
        """CLI check, preflight (raises listing failures), assets, stack, drift report, config: before any up.

        The assets are the stack's pinned ones (config ``assets``) unless ``rebuild`` (update_code), the stack
        has none yet (first launch), or they no longer fit the spec (another architecture; a wheelhouse needed).
        """
        _require_cli()  # before any cloud call or wheel build
        pf = self.preflight()
        pf.raise_for_failures()
        self._resolved = dict(pf.resolved)
        stack = self._get_stack()
        arch = str(self._resolved.get("architecture", "x86_64"))
        pinned = None if rebuild else self._pinned_lock(arch, on_output)
        if pinned is not None:
            self._use_lock(pinned)
        else:
            self._lock = self._build_assets(arch)
        self._report_drift(stack, on_output)
        self._apply_config(stack)
        return stack

    # ------------------------------------------------------------------ assets pinned in the stack
    def assets_lock(self) -> AssetsLock | None:
        """The assets the stack's instances run (stack config ``assets``), or None for a stack never launched.

        Example::

            fleet.assets_lock().requirements    # ('annotated-types==0.7.0', ..., 'uvicorn==0.30.6')
        """
        from .pinning import CONFIG_KEY

        text = self.live_config().get(CONFIG_KEY)
        return AssetsLock.from_json(text) if text else None

    def _pinned_lock(self, arch: str, on_output: OnOutput | None) -> AssetsLock | None:
        lock = self.assets_lock()
        if lock is None:
            return None
        needs_house = self.spec.server.kind != "command"
        why = None
        if lock.architecture != arch:
            why = f"the instances' architecture changed ({lock.architecture} -> {arch})"
        elif needs_house and lock.wheelhouse_digest is None:
            why = "the spec's server now installs mlops_lb's packages, which the stack's assets lack"
        if why is None:
            return lock
        text = f"stack {self.stack_name}: rebuilding the instances' assets: {why}\n"
        log.warning("%s", text.rstrip())
        if on_output is not None:
            on_output(text)
        return None

    def _use_lock(self, lock: AssetsLock) -> None:
        from .pinning import restore_assets

        wheel, house = restore_assets(lock, fetch=self._fetch_asset)
        self._ship_wheel, self._ship_house, self._ship_python = wheel, house, lock.python
        self._lock = lock

    def _build_assets(self, arch: str) -> AssetsLock:
        """Build the wheel and (for our server) the wheelhouse from this environment, resolved for the instance."""
        from .assets import build_wheel, build_wheelhouse, instance_python, resolve_requirements
        from .pinning import lock_assets

        wheel_arg = self._wheel or os.environ.get("MLOPS_LB_WHEEL")
        wheel = Path(wheel_arg) if wheel_arg else build_wheel()
        house = self._wheelhouse
        # A user's own server (command or image) does not install mlops_lb on the instances: no wheelhouse.
        if house is None and self.spec.server.kind != "command":
            # Resolved for the instance's Python and platform, not copied from this interpreter: numpy/scipy
            # pinned from a 3.13 notebook have no wheels for an older instance Python.
            py = instance_python()
            pins = resolve_requirements(python_version=py, architecture=arch)
            house = build_wheelhouse(pins, architecture=arch, python_version=py)
        python = house.python_version if house is not None else instance_python()
        lock = lock_assets(wheel, house, python=python, architecture=arch)
        self._ship_wheel, self._ship_house, self._ship_python = wheel, house, python
        return lock

    def _fetch_asset(self, key: str, dest: Path) -> None:
        """Download one object of the stack's own bucket (a machine that never built the stack's assets)."""
        bucket = self._live_outputs().get("bucket")
        if not bucket:
            raise ProvisionError(
                f"stack {self.stack_name} records asset {key} but has no bucket output to fetch it from; "
                "run fleet.update_code() to rebuild and ship the assets"
            )
        log.info("fetch s3://%s/%s (an asset the stack pins)", bucket, key)
        try:
            self._client("s3").download_file(str(bucket), key, str(dest))
        except Exception as exc:
            raise provision_error("S3 GetObject (the stack's pinned asset)", exc) from exc

    def live_config(self) -> dict[str, str]:
        """The stack's current config (``minSize``, ``maxSize``, ... without the project prefix); {} when new."""
        try:
            cfg = self._get_stack().get_all_config()
        except Exception as exc:  # a new stack has none; anything else is reported by the update itself
            log.debug("reading stack config: %s", exc)
            return {}
        prefix = f"{self.project_name}:"
        return {(k[len(prefix) :] if k.startswith(prefix) else k): v.value for k, v in cfg.items()}

    def _report_drift(self, stack: Any, on_output: OnOutput | None) -> None:
        """Say, before applying, where the spec differs from the live stack (e.g. after scale()): never silently."""
        live = self.live_config()
        want = self.stack_config()
        diff = {k: (live[k], v) for k, v in want.items() if k in live and live[k] != v}
        if not diff:
            return
        lines = [f"  {k}: {old} (live) -> {new} (spec)" for k, (old, new) in sorted(diff.items())]
        text = (
            f"stack {self.stack_name} differs from the spec; this update applies the spec:\n"
            + "\n".join(lines)
            + "\n(to keep the live values, put them in the spec or call fleet.scale(...) after launch)\n"
        )
        log.warning("%s", text.rstrip())
        if on_output is not None:
            on_output(text)

    # ------------------------------------------------------------------ lifecycle
    def launch(
        self, *, on_output: OnOutput | None = None, on_event: Callable[[Any], Any] | None = None
    ) -> str:
        """Preflight, then ``pulumi up`` the whole fleet; returns the load balancer URL.

        A failed preflight raises ProvisionError listing the failed checks, and nothing is created. Where the
        spec differs from the live stack (say after ``scale()``), the difference goes through ``on_output``
        before the update applies the spec. Output streams through the callbacks.
        """
        stack = self._ready(on_output)
        log.info("pulumi up stack %s in %s", self.stack_name, self.region)
        try:
            result = stack.up(on_output=on_output, on_event=on_event, color="never")
        except Exception as exc:
            raise _translate(f"pulumi up ({self.stack_name})", exc) from exc
        self._outputs = {k: v.value for k, v in result.outputs.items() if not v.secret}
        return str(self._outputs.get("url", ""))

    def preview(
        self, *, on_output: OnOutput | None = None, on_event: Callable[[Any], Any] | None = None
    ) -> dict[str, int]:
        """Preflight, then ``pulumi preview``: what ``launch()`` would change, as {operation: count}."""
        stack = self._ready(on_output)
        try:
            result = stack.preview(on_output=on_output, on_event=on_event, color="never")
        except Exception as exc:
            raise _translate(f"pulumi preview ({self.stack_name})", exc) from exc
        return dict(result.change_summary)

    def update_ami(self, *, on_output: OnOutput | None = None) -> str:
        """Move the fleet to the latest AMI for its architecture (an instance refresh, capacity kept)."""
        self._repin_ami = True
        try:
            return self.launch(on_output=on_output)
        finally:
            self._repin_ami = False

    def update_code(
        self, *, on_output: OnOutput | None = None, on_event: Callable[[Any], Any] | None = None
    ) -> bool:
        """Ship this environment's code and packages to the fleet: the one way they change after ``launch()``.

        Rebuilds the wheel and the wheelhouse (resolved for the instances' Python and platform), says what changes
        against the assets the stack pins (packages, wheel, Python) and what ``pulumi preview`` would change, then
        runs the update: a new launch-template version, which the group rolls out as an instance refresh that keeps
        capacity (MinHealthyPercentage 100, MaxHealthyPercentage 200: each replacement is launched and healthy
        before an old instance is terminated). ``scale()`` and ``launch()`` never do this by themselves. Returns
        False, running nothing, when the rebuilt assets equal the pinned ones.

        Example::

            fleet.update_code(on_output=print)   # 'numpy 2.0.0 -> 2.1.0' ... then the refresh
        """
        from .pinning import diff_locks

        old = self.assets_lock()
        stack = self._ready(on_output, rebuild=True)
        assert self._lock is not None  # _ready(rebuild=True) always builds one
        lines = diff_locks(old, self._lock)
        if not lines:
            text = f"stack {self.stack_name}: the rebuilt assets equal the ones the instances run; nothing to ship\n"
            log.info("%s", text.rstrip())
            if on_output is not None:
                on_output(text)
            return False
        text = (
            f"stack {self.stack_name}: update_code ships to every instance (an instance refresh):\n"
            + "".join(f"  {ln}\n" for ln in lines)
        )
        log.warning("%s", text.rstrip())
        if on_output is not None:
            on_output(text)
        try:
            try:
                summary = stack.preview(on_output=on_output, on_event=on_event, color="never").change_summary
            except Exception as exc:
                raise _translate(f"pulumi preview ({self.stack_name})", exc) from exc
            if on_output is not None:
                on_output(f"preview: {dict(summary)}\n")
            log.info("pulumi up stack %s (update_code)", self.stack_name)
            try:
                result = stack.up(on_output=on_output, on_event=on_event, color="never")
            except Exception as exc:
                raise _translate(f"pulumi up ({self.stack_name})", exc) from exc
        except BaseException:
            # The config already names the new assets (_ready wrote it); the instances still run the old ones, and
            # a later scale() must not ship the new ones behind the user's back: put the old lock back.
            if old is not None:
                self._lock = old
                self._apply_config(stack)
            raise
        self._outputs = {k: v.value for k, v in result.outputs.items() if not v.secret}
        return True

    def refresh(self, *, on_output: OnOutput | None = None) -> None:
        """``pulumi refresh``: read the real resources back into the state."""
        try:
            self._get_stack().refresh(on_output=on_output, color="never")
        except (BackendUnavailable, ProvisionError):
            raise
        except Exception as exc:
            raise _translate(f"pulumi refresh ({self.stack_name})", exc) from exc

    def destroy(self, *, confirm: str, on_output: OnOutput | None = None, remove_stack: bool = True) -> None:
        """Delete every resource of the stack; ``confirm`` must equal the stack name.

        Example::

            fleet.destroy(confirm="demo")
        """
        if confirm != self.stack_name:
            raise SpecError(
                "confirm", f"must equal the stack name {self.stack_name!r} to destroy it (got {confirm!r})"
            )
        stack = self._get_stack()
        log.info("pulumi destroy stack %s", self.stack_name)
        try:
            stack.destroy(on_output=on_output, color="never")
            if remove_stack:
                stack.workspace.remove_stack(self.stack_name)
        except Exception as exc:
            raise _translate(f"pulumi destroy ({self.stack_name})", exc) from exc
        self._outputs = None

    def outputs(self) -> dict[str, Any]:
        """The stack outputs (url, alb_arn, target_group_arn, asg_name, ...), secrets left out."""
        if self._outputs is None:
            try:
                out = self._get_stack().outputs()
            except (BackendUnavailable, ProvisionError):
                raise
            except Exception as exc:
                raise _translate(f"reading outputs of {self.stack_name}", exc) from exc
            self._outputs = {k: v.value for k, v in out.items() if not v.secret}
        return dict(self._outputs)

    def _output(self, key: str) -> str:
        value = self.outputs().get(key)
        if not value:
            raise ProvisionError(f"stack {self.stack_name} has no output {key!r}: launch() it first")
        return str(value)

    @property
    def url(self) -> str:
        """The load balancer's URL (``http://<alb dns>``, or https with a certificate)."""
        return self._output("url")

    # ------------------------------------------------------------------ rollouts (issue 29)
    def rollout_plan(self) -> Any:
        """The two slots' plan from the stack config (:class:`~mlops_lb.aws._rollout.SlotPlan`), or None for a fleet
        that never rolled out."""
        from ._rollout import CONFIG_KEY, SlotPlan

        text = self.live_config().get(CONFIG_KEY)
        return SlotPlan.from_json(text) if text else None

    def _save_plan(self, plan: Any) -> None:
        from pulumi import automation as auto

        from ._rollout import CONFIG_KEY

        try:
            self._get_stack().set_config(CONFIG_KEY, auto.ConfigValue(value=plan.to_json()))
        except Exception as exc:
            raise _translate("saving the rollout plan to the stack config", exc) from exc

    def rollout(
        self,
        new: Any = None,
        *,
        strategy: Any = None,
        guard: Any = None,
        feed: Callable[[], Any] | None = None,
        resume: bool = False,
        rollback: bool = False,
        on_output: OnOutput | None = None,
        on_event: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Shift traffic to the idle slot running ``new`` (a FleetSpec or the parts that change) by ``strategy``
        (:class:`~mlops_lb.rollouts.Canary` by default), guarded by ``guard`` every interval; roll back on a breach.

        ``fleet.update_code()`` replaces code in place on the running instances; ``rollout`` runs the new spec on a
        second Auto Scaling group behind the same ALB and moves a weighted share of requests to it. An interrupted
        rollout continues with ``resume=True`` or goes back with ``rollback=True``. See docs/aws.md "Rollouts".

        Example::

            fleet.rollout({"model": {"source": "v2.onnx"}}, strategy=Canary(percent=10, bake_s=300),
                          guard=Guard(p99_s=0.5, max_error_share=0.01), on_output=print)
        """
        from ..rollouts import Canary, check_guard, new_spec, strategy_from_dict
        from ._rollout import slot_differences
        from ._rollout_run import RolloutSeams, run_rollout

        if self._closed:
            raise SpecError("fleet", "is closed: open the fleet again (ml.open_fleet(spec, backend='aws'))")
        target = None
        if not (resume or rollback):  # every argument is checked before any call
            target = new_spec(self.spec, new)
            slot_differences(self.spec, target)
            strategy = strategy_from_dict(strategy if strategy is not None else Canary())
            guard = check_guard(guard, self.spec, source="client" if feed is not None else "fleet")
        plan = self.rollout_plan()
        fleet = self

        def up(spec: FleetSpec) -> dict[str, Any]:
            fleet.spec = spec
            fleet.launch(on_output=on_output)
            return fleet.outputs()

        seams = RolloutSeams(
            elbv2=self._client("elbv2"),
            cloudwatch=self._client("cloudwatch"),
            autoscaling=self._client("autoscaling"),
            save=self._save_plan,
            up=up,
        )
        result = run_rollout(
            fleet_spec=self.spec,
            plan=plan,
            outputs=self._live_outputs(),
            seams=seams,
            new=target,
            strategy=strategy,
            guard=guard,
            feed=feed,
            resume=resume,
            rollback=rollback,
            on_output=on_output,
            on_event=on_event,
        )
        self.spec = result.spec
        return result

    # ------------------------------------------------------------------ fast paths (boto3)
    def _client(self, service: str) -> Any:
        return client(service, session=self._session, region=self.region)

    def scale(self, **changes: Unpack[ScaleChange]) -> None:
        """Change bounds or the policy (stack config + ``pulumi up``) and/or desired capacity (boto3, immediate).

        The keywords are :class:`~mlops_lb.spec.ScaleChange`'s, checked and clamped by ``FleetSpec.rescaled``
        before any call. ``desired`` alone never runs Pulumi. Bounds and target go through the stack config, so
        the stack keeps them; the update changes only the group and the policy: the assets are the ones the stack
        pins (:meth:`assets_lock`), never rebuilt here, so the launch template stays and no instance is replaced
        (:meth:`update_code` ships new code).

        Example::

            fleet.scale(desired=3)                       # SetDesiredCapacity, HonorCooldown=False
            fleet.scale(min=2, max=10, target_rps_per_target=40)
        """
        previous = self.spec
        # The spec's desired only matters at creation; rescaled() keeps it inside the new bounds.
        self.spec = previous.rescaled(**changes)
        cap, old = self.spec.capacity, previous.capacity
        if (cap.min, cap.max) != (old.min, old.max) or self.spec.scaling != previous.scaling:
            try:
                self.launch()
            except BaseException:
                # The stack still has the old bounds; launch() writes the config from the spec every time, so
                # restoring it keeps the next scale(desired=...) checked against what AWS really has.
                self.spec = previous
                raise
        if changes.get("desired") is not None:
            asg = self._output("asg_name")
            log.info("set desired capacity of %s to %d", asg, cap.desired)
            try:
                self._client("autoscaling").set_desired_capacity(
                    AutoScalingGroupName=asg, DesiredCapacity=cap.desired, HonorCooldown=False
                )
            except Exception as exc:
                raise provision_error("Auto Scaling SetDesiredCapacity", exc) from exc

    def status(self) -> pd.DataFrame:
        """One row per instance: target, address, state, health, launched_at, az, lifecycle, aws_health."""
        import pandas as pd

        from .cloudwatch import read_target_health

        asg_name = self._output("asg_name")
        port = self.spec.target_group.port
        # Two slots after a rollout (issue 29): every instance of both groups, with its slot; one slot: "".
        slots = self.outputs().get("slots") or {}
        slot_of = {str(v["asg_name"]): s for s, v in slots.items()} or {asg_name: ""}
        try:
            groups = self._client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=list(slot_of)
            )
        except Exception as exc:
            raise provision_error("Auto Scaling DescribeAutoScalingGroups", exc) from exc
        instances = [
            {**i, "_slot": slot_of.get(str(g.get("AutoScalingGroupName")), "")}
            for g in groups.get("AutoScalingGroups", [])
            for i in g.get("Instances", [])
        ]
        details: dict[str, dict[str, Any]] = {}
        ids = [i["InstanceId"] for i in instances]
        if ids:
            try:
                for page in self._client("ec2").get_paginator("describe_instances").paginate(InstanceIds=ids):
                    for r in page.get("Reservations", []):
                        for inst in r.get("Instances", []):
                            details[inst["InstanceId"]] = inst
            except Exception as exc:
                raise provision_error("EC2 DescribeInstances", exc) from exc
        # A MetricsError keeps its type, AWS code and hint (it used to become ProvisionError(str(exc))).
        tg_arns = [str(v["target_group_arn"]) for v in slots.values()] or [self._output("target_group_arn")]
        by_target = {
            r.target: r
            for arn in tg_arns
            for r in read_target_health(arn, session=self._session, region=self.region).itertuples()
        }
        rows = []
        for inst in instances:
            iid = inst["InstanceId"]
            life = str(inst.get("LifecycleState", ""))
            th = by_target.get(iid)
            state = _lifecycle_state(life)
            if th is not None:
                h = str(th.health)
                if h == "draining":
                    state = "draining"
            else:
                h = "initial" if state == "pending" else "unused"
            det = details.get(iid, {})
            ip = det.get("PrivateIpAddress", "")
            rows.append(
                {
                    "target": iid,
                    "address": f"{ip}:{port}" if ip else "",
                    "state": state,
                    "health": h,
                    "launched_at": det.get("LaunchTime"),
                    "az": inst.get("AvailabilityZone", ""),
                    "lifecycle": life,
                    "aws_health": str(inst.get("HealthStatus", "")),
                    "slot": inst["_slot"],
                }
            )
        df = pd.DataFrame(rows, columns=[*STATUS_COLUMNS, "az", "lifecycle", "aws_health", "slot"])
        df["launched_at"] = pd.to_datetime(df["launched_at"], utc=True)
        if slots:  # the rollout's state, live slot and weights as the stack config has them now
            p = self.rollout_plan()
            if p is not None:
                df.attrs["rollout"] = {
                    "state": p.state,
                    "live": p.live,
                    "weights": p.weights,
                    "reason": p.reason,
                }
        return df

    def events(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Scaling activities (scale_out/scale_in/launch/terminate) plus the current target health of each target;
        with ``capacity.spot``, each instance's spot agent record too (``spot_notice``/``spot_agent`` rows from its
        console; ``attrs["spot_agent_bad_lines"]`` counts lines skipped as malformed)."""
        from .cloudwatch import read_scaling_activities, read_target_health

        # A failed read stays a MetricsError (its AWS code and hint intact), as everywhere else.
        acts = read_scaling_activities(
            self._output("asg_name"), start=start, end=end, session=self._session, region=self.region
        )
        health = read_target_health(
            self._output("target_group_arn"), session=self._session, region=self.region
        )
        now = datetime.now(timezone.utc)
        kind = {
            "healthy": "healthy",
            "unhealthy": "unhealthy",
            "draining": "draining",
            "initial": "registered",
        }
        rows: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in acts.to_dict("records")]
        spot_rows, bad, unreadable = self._spot_agent_rows(rows, health, start=start, end=end)
        for r in health.to_dict("records"):
            if r["health"] in kind:
                detail = f"target health {r['aws_state']}" + (f": {r['reason']}" if r["reason"] else "")
                rows.append(
                    {
                        "timestamp": now,
                        "kind": kind[str(r["health"])],
                        "target": r["target"],
                        "detail": detail,
                    }
                )
        df = events_frame(rows + spot_rows)
        if self.spec.capacity.spot is not None:
            df.attrs["spot_agent_bad_lines"] = bad  # record lines skipped as malformed (data, never code)
            df.attrs["spot_agent_unreadable"] = unreadable  # instances whose console could not be read
        return df

    def _spot_agent_rows(
        self, acts: list[dict[str, Any]], health: Any, *, start: datetime | None, end: datetime | None
    ) -> tuple[list[dict[str, Any]], int, list[str]]:
        """capacity.spot: each instance's spot agent record (its console) as events, joined with the group's
        activities (aws/_spot_record.py); nothing without spot."""
        if self.spec.capacity.spot is None:
            return [], 0, []
        from ._spot_record import AgentRecordReader, join_activities

        reader = getattr(self, "_spot_reader", None)
        if reader is None:
            reader = self._spot_reader = AgentRecordReader(self._console_text)
        current = health["target"] if "target" in getattr(health, "columns", ()) else ()
        ids = {str(r.get("target") or "") for r in acts} | {str(t) for t in current}
        ids = {i for i in ids if re.fullmatch(r"i-[0-9a-f]{8,17}", i)}
        rows, bad, unreadable = reader.rows(sorted(ids))
        lo = start if start is None or start.tzinfo else start.replace(tzinfo=timezone.utc)
        hi = end if end is None or end.tzinfo else end.replace(tzinfo=timezone.utc)
        rows = [
            r for r in rows if (lo is None or r["timestamp"] >= lo) and (hi is None or r["timestamp"] <= hi)
        ]
        join_activities(rows, acts)
        return rows, bad, unreadable

    @property
    def capacity(self) -> Capacity:
        """The group's live ``Capacity(min, desired, max)`` (one DescribeAutoScalingGroups call)."""
        asg = self._output("asg_name")
        try:
            groups = self._client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
        except Exception as exc:
            raise provision_error("Auto Scaling DescribeAutoScalingGroups", exc) from exc
        found = groups.get("AutoScalingGroups", [])
        if not found:
            raise ProvisionError(f"Auto Scaling group {asg!r} of stack {self.stack_name!r} does not exist")
        g = found[0]
        return Capacity(int(g["MinSize"]), int(g["DesiredCapacity"]), int(g["MaxSize"]))

    def decisions(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """The group's capacity changes from its scaling activities, one row per decision.

        Columns as the local fleet's ``decisions()``; AWS records only decisions that changed capacity (no
        ``none`` rows) and not the metric inputs, so those columns are empty. ``attrs["source"]`` says so.
        """
        import re

        from .cloudwatch import read_scaling_activities

        acts = read_scaling_activities(
            self._output("asg_name"), start=start, end=end, session=self._session, region=self.region
        )
        rows = []
        for r in acts[acts["kind"].isin(["scale_out", "scale_in"])].itertuples():
            m = re.match(r"desired (\d+) -> (\d+): (.*)", str(r.detail), re.S)
            if m:
                rows.append(
                    {
                        "timestamp": r.timestamp,
                        "action": r.kind,
                        "desired_before": int(m[1]),
                        "desired_after": int(m[2]),
                        "reason": m[3],
                    }
                )
        df = decisions_frame(rows)
        df.attrs["source"] = "aws scaling activities (capacity changes only)"
        return df

    def metrics(
        self, start: datetime | None = None, end: datetime | None = None, period_s: float | None = None
    ) -> pd.DataFrame:
        """The fleet's CloudWatch series as a MetricFrame (default: the last hour, period chosen for the window)."""
        from .cloudwatch import read_fleet_metrics

        end = end or datetime.now(timezone.utc)
        start = start or end - timedelta(hours=1)
        out = self.outputs()
        ids: Iterable[str] = ()
        return read_fleet_metrics(
            load_balancer_arn=self._output("alb_arn"),
            target_group_arn=self._output("target_group_arn"),
            asg_name=self._output("asg_name"),
            start=start,
            end=end,
            period_s=period_s,
            instance_ids=ids,
            session=self._session,
            region=out.get("region") or self.region,
        )

    def logs(self, target: str, *, tail: int = 200) -> str:
        """The last ``tail`` lines of an instance's console: the bootstrap log (EC2 GetConsoleOutput).

        The user data tees every step to the console, so this shows where a boot got stuck without SSH.

        Example::

            print(fleet.logs("i-0123456789abcdef0"))
        """
        if not isinstance(target, str) or not re.fullmatch(r"i-[0-9a-f]{8,17}", target):
            raise SpecError("target", f"must be an instance id such as i-0123456789abcdef0 (got {target!r})")
        lines = self._console_text(target).splitlines()
        return "\n".join(lines[-tail:] if tail > 0 else lines)

    def _console_text(self, target: str) -> str:
        """An instance's console output (EC2 GetConsoleOutput, the latest on Nitro instances), decoded."""
        import base64
        import binascii

        try:
            out = self._client("ec2").get_console_output(InstanceId=target, Latest=True)
        except Exception as exc:
            raise provision_error("EC2 GetConsoleOutput", exc) from exc
        raw = out.get("Output") or ""
        try:  # the API returns base64; some SDK layers decode it already
            text = base64.b64decode(raw, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = raw
        return text

    def close(self) -> None:
        """Forget local handles; the stack keeps running (and billing) until destroyed."""
        self._closed = True
        if self._outputs is not None or self._stack is not None:
            log.warning(
                "stack %s keeps running on AWS. Tear it down with fleet.destroy(confirm=%r) or "
                "`mlops-lb down <spec.yaml> --backend aws --yes`",
                self.stack_name,
                self.stack_name,
            )
        self._stack = None

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run: this handle is forgotten (the stack itself may still run on AWS)."""
        return self._closed

    @property
    def metric_period_s(self) -> float:
        """Seconds between two metric datapoints: 60. The ALB publishes its metrics per minute and the group's
        metrics are enabled at ``1Minute`` granularity (DESIGN §4), the finest both have in common."""
        return 60.0

    def __enter__(self) -> AwsFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lifecycle_state(life: str) -> str:
    if life.startswith(("Pending", "Warmed")):
        return "pending"
    if life in ("InService", "Standby", "EnteringStandby"):
        return "in_service"
    if life in ("Terminated", "Detached"):
        return "terminated"
    return "draining"  # Terminating*, Detaching: on the way out


# --------------------------------------------------------------------------- cost guard
def _local_stacks(project: str | None = None) -> set[str] | None:
    url = os.environ.get("PULUMI_BACKEND_URL") or f"file://{mlops_home() / 'pulumi'}"
    if not url.startswith("file://"):
        return None
    root = Path(url[len("file://") :]).expanduser() / ".pulumi" / "stacks"
    if not root.is_dir():
        return set()
    names = set()
    for p in root.rglob("*.json*"):
        in_project = project is None or p.parent.name == project or p.parent == root
        if p.name.endswith((".json", ".json.gz")) and ".bak" not in p.name and in_project:
            names.add(p.name.split(".json")[0])
    return names


def _arn_resource_type(parts: list[str]) -> str:
    """The resource type of a split ARN. ARNs end in resource-type/id, resource-type:id or a bare id
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html); an S3 bucket's is the bare bucket name
    (arn:aws:s3:::name), so its "type" was the bucket's name."""
    if len(parts) <= 5:
        return ""
    if parts[2] == "s3":
        return "object" if "/" in parts[5] else "bucket"
    return parts[5].split("/")[0]


def find_orphans(
    *,
    session: Any = None,
    region: str | None = None,
    stacks: Iterable[str] | None = None,
    project: str | None = None,
) -> pd.DataFrame:
    """Resources tagged ``mlops-lb:stack`` whose stack no longer exists (still billing, nobody owns them).

    ``stacks`` lists the live stack names; by default they are read from the local file backend. Columns:
    arn, service, resource_type, stack, region.

    Example::

        ml.aws.find_orphans(region="us-east-1")
    """
    import pandas as pd

    known = set(stacks) if stacks is not None else _local_stacks(project)
    if known is None:
        raise ProvisionError(
            "find_orphans cannot list stacks of a non-file PULUMI_BACKEND_URL without the CLI; "
            "pass stacks=[...] (e.g. from `pulumi stack ls --json`)"
        )
    tagging = client("resourcegroupstaggingapi", session=session, region=region)
    rows = []
    try:
        for page in tagging.get_paginator("get_resources").paginate(TagFilters=[{"Key": STACK_TAG}]):
            for res in page.get("ResourceTagMappingList", []):
                tags = {t["Key"]: t["Value"] for t in res.get("Tags", [])}
                stack = tags.get(STACK_TAG, "")
                if stack in known:
                    continue
                arn = res["ResourceARN"]
                parts = arn.split(":")
                rows.append(
                    {
                        "arn": arn,
                        "service": parts[2] if len(parts) > 2 else "",
                        "resource_type": _arn_resource_type(parts),
                        "stack": stack,
                        "region": parts[3] if len(parts) > 3 else "",
                    }
                )
    except Exception as exc:
        raise provision_error("Resource Groups Tagging GetResources", exc) from exc
    return pd.DataFrame(rows, columns=["arn", "service", "resource_type", "stack", "region"])
