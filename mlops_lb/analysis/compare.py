"""Confidence intervals for a run's headline figures and the comparison of two runs (or two sets of runs).

**Within one run** requests are not independent: a queue that builds up makes neighbouring requests slow together,
so resampling single requests would give intervals far too narrow. We use a **moving-block bootstrap** (Künsch
1989): cut the run into 1 s bins by intended send time, resample blocks of ``block_s`` (≥ 10 s) consecutive bins
with replacement, recompute the figure on the pooled requests of the drawn blocks, ``n_boot`` times; the interval is
the interval is ``estimate ± t × (bootstrap standard deviation)`` with Student's t on (blocks − 1) degrees of
freedom (percentile intervals of high quantiles from a dozen blocks are too narrow: the A/A calibration in
``bench/bench_compare.py`` measured it). A run needs several blocks for this to mean anything: with fewer than
``MIN_BLOCKS`` blocks the interval is marked ``too_short``.

**Across runs** (``repeats`` ≥ 5 per side) each run gives one value per figure and the interval is the mean ± t
× its standard error over runs (n − 1 degrees of freedom), which also captures run-to-run variation the within-run
method cannot see (a different process start, another seed). Every table says which method made it.

**Comparison** (``compare(a, b)``): per figure, the difference ``b - a`` with its interval (the two sides
resampled independently, Welch–Satterthwaite degrees of freedom); the verdict is ``better`` / ``worse`` when the interval excludes 0 (direction from the
figure: lower is better for latencies and cost, higher for goodput and tokens/s), else ``no significant
difference``. With several figures the chance that at least one flags by luck grows, so intervals are
Bonferroni-adjusted (each at ``1 - (1 - confidence) / m``) unless ``adjust=False``; the overall verdict is
"significant" when any figure is. ``bench/bench_compare.py`` measures the false-positive rate on A/A pairs.

Example::

    from mlops_lb.analysis.compare import compare, run_intervals
    run_intervals(result, slo={"ttft_s": 1.0}, usd_per_hour=1.006)      # figure, estimate, lo, hi, method
    c = compare(run_a, run_b, slo={"ttft_s": 1.0, "tpot_s": 0.1}, usd_per_hour=1.006)
    c.verdict, c.table
    c.to_html("compare.html")
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError

__all__ = ["FIGURES", "MIN_BLOCKS", "Comparison", "RunSample", "compare", "run_intervals", "run_sample"]

MIN_BLOCKS = 5

# figure -> (label, +1 if higher is better / -1 if lower is better)
FIGURES: dict[str, tuple[str, int]] = {
    "ttft_p50_s": ("TTFT p50 (s)", -1),
    "ttft_p99_s": ("TTFT p99 (s)", -1),
    "tpot_p50_s": ("TPOT p50 (s)", -1),
    "tpot_p99_s": ("TPOT p99 (s)", -1),
    "latency_p99_s": ("E2E latency p99 (s)", -1),
    "good_fraction": ("goodput / offered", +1),
    "output_tokens_per_s": ("output tokens/s", +1),
    "usd_per_million_good_tokens": ("$ / 1M good output tokens", -1),
}
_PCT = {"ttft_p50_s": ("ttft_s", 50), "ttft_p99_s": ("ttft_s", 99), "tpot_p50_s": ("tpot_s", 50),
        "tpot_p99_s": ("tpot_s", 99), "latency_p99_s": ("latency_s", 99)}  # fmt: skip
_SLO_KEYS = ("ttft_s", "tpot_s", "latency_s")


@dataclass(frozen=True, kw_only=True)
class RunSample:
    """One run's requests binned by intended send time: what the bootstrap resamples.

    Example::

        s = run_sample(result, slo={"ttft_s": 1.0}, usd_per_hour=1.006)
        s.n_bins, s.point()
    """

    name: str
    bin_s: float
    bins: np.ndarray  # bin index per request (sorted)
    n_bins: int
    values: Mapping[str, np.ndarray]  # per-request columns (ttft_s, tpot_s, latency_s), sorted by bin
    good: np.ndarray  # per request: met every SLO bound (and succeeded)
    tokens: np.ndarray  # per request output tokens (0 for failures)
    good_tokens: np.ndarray
    usd_per_hour: float | None

    def _figures(self, idx: np.ndarray, n_bins: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for fig, (col, q) in _PCT.items():
            v = self.values.get(col)
            if v is None:
                out[fig] = math.nan
                continue
            v = v[idx]
            v = v[~np.isnan(v)]
            out[fig] = float(np.percentile(v, q)) if v.size else math.nan
        n = idx.size
        dur = n_bins * self.bin_s
        out["good_fraction"] = float(self.good[idx].sum() / n) if n else math.nan
        out["output_tokens_per_s"] = float(self.tokens[idx].sum() / dur) if dur else math.nan
        gt = float(self.good_tokens[idx].sum())
        if self.usd_per_hour is not None and gt > 0:
            out["usd_per_million_good_tokens"] = self.usd_per_hour * dur / 3600.0 / gt * 1e6
        else:
            out["usd_per_million_good_tokens"] = math.nan
        return out

    def point(self) -> dict[str, float]:
        """Every figure on the whole run."""
        return self._figures(np.arange(self.bins.size), self.n_bins)

    def bootstrap(self, *, block_s: float = 10.0, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """``n_boot`` moving-block resamples of every figure (blocks of ``block_s`` seconds of bins)."""
        rng = np.random.default_rng(seed)
        L = max(1, round(block_s / self.bin_s))
        L = min(L, self.n_bins)
        k = math.ceil(self.n_bins / L)
        starts_max = self.n_bins - L + 1
        # request index ranges per bin
        edges = np.searchsorted(self.bins, np.arange(self.n_bins + 1))
        counts = np.diff(edges)
        out: dict[str, list[float]] = {f: [] for f in FIGURES}
        for _ in range(n_boot):
            starts = rng.integers(0, starts_max, size=k)
            chosen = (starts[:, None] + np.arange(L)[None, :]).ravel()
            lens = counts[chosen]
            offs = np.cumsum(lens) - lens  # where each chosen bin's requests start in the resample
            idx = np.arange(lens.sum()) - np.repeat(offs, lens) + np.repeat(edges[chosen], lens)
            for f, v in self._figures(idx, chosen.size).items():
                out[f].append(v)
        return {f: np.asarray(v) for f, v in out.items()}


def _frame_of(run: Any) -> tuple[Any, dict[str, Any], str]:
    from ..bundle import LoadedBundle

    if isinstance(run, (str, Path)) and not Path(run).is_dir():
        raise SpecError("run", f"is not a run bundle folder: {run} (give a LoadResult or a runs/<id> folder)")
    b = LoadedBundle.coerce(run)
    name = str(b.path.name) if b.path is not None else getattr(run, "name", None) or "run"
    req = b.requests
    if req is None or len(req) == 0:
        raise SpecError("run", f"{name} has no requests to compare (an empty or unfinished bundle?)")
    return req, dict(b.summary or {}), name


def run_sample(
    run: Any,
    *,
    slo: Mapping[str, float] | None = None,
    usd_per_hour: float | None = None,
    bin_s: float = 1.0,
    warmup_s: float = 0.0,
    name: str | None = None,
) -> RunSample:
    """Bin a run (LoadResult, bundle folder or LoadedBundle) for the bootstrap. ``slo`` defaults to the run's own;
    ``usd_per_hour`` is the fleet's hourly price (instances × price) for the cost figure; ``warmup_s`` drops the
    first seconds (a cold start is not the steady state being compared).

    Example::

        run_sample("runs/20261206T120000Z-a", usd_per_hour=2 * 1.006).point()
    """
    req, summary, nm = _frame_of(run)
    slo = dict(slo if slo is not None else summary.get("slo") or {})
    for k in slo:
        if k not in _SLO_KEYS:
            raise SpecError("slo", f"has unknown key {k!r} (known: {', '.join(_SLO_KEYS)})")
    import pandas as pd

    t = pd.to_datetime(req["intended_at"], utc=True)
    sec = (t - t.min()).dt.total_seconds().to_numpy()
    keep = sec >= warmup_s
    req, sec = req.loc[keep], sec[keep] - warmup_s
    order = np.argsort(sec, kind="stable")
    req, sec = req.iloc[order], sec[order]
    bins = np.floor(sec / bin_s).astype(np.int64)
    n_bins = int(bins.max()) + 1 if bins.size else 0
    err = req["error"].astype(str).to_numpy() if "error" in req.columns else np.full(len(req), "")
    ok = np.isin(err, ["", "None", "nan"])
    values = {c: req[c].to_numpy(dtype=float) for c in ("ttft_s", "tpot_s", "latency_s") if c in req.columns}
    good = ok.copy()
    for k, bound in slo.items():
        good &= values.get(k, np.full(len(req), np.nan)) <= float(bound)
    tokens = (req["output_tokens"].to_numpy() if "output_tokens" in req.columns else np.zeros(len(req))) * ok
    return RunSample(
        name=name or nm,
        bin_s=bin_s,
        bins=bins,
        n_bins=n_bins,
        values=values,
        good=good,
        tokens=tokens.astype(float),
        good_tokens=(tokens * good).astype(float),
        usd_per_hour=usd_per_hour,
    )


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal (accurate to ~1e-3 for df >= 3).

    Example::

        t_quantile(0.975, 11)   # 2.201
    """
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    if not math.isfinite(df) or df > 1e6:
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def _nanmean(v: Any, axis: int | None = None) -> Any:
    """Mean ignoring NaN, NaN (without a warning) where everything is NaN."""
    v = np.asarray(v, dtype=float)
    ok = ~np.isnan(v)
    n = ok.sum(axis=axis)
    tot = np.where(ok, v, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, tot / np.maximum(n, 1), np.nan)


def _method(n_runs: int, block_s: float, n_blocks: int) -> str:
    if n_runs >= 5:
        return f"across {n_runs} runs (mean ± t x standard error over runs)"
    short = " — too_short: fewer than 5 blocks, treat as indicative" if n_blocks < MIN_BLOCKS else ""
    return f"moving-block bootstrap within the run (blocks of {block_s:g} s, {n_blocks} blocks){short}"


def _samples(runs: Any, **kw: Any) -> list[RunSample]:
    if isinstance(runs, (list, tuple)):
        if not runs:
            raise SpecError("runs", "is empty")
        return [run_sample(r, **kw) for r in runs]
    return [run_sample(runs, **kw)]


def _dist(
    samples: Sequence[RunSample], block_s: float, n_boot: int, seed: int
) -> tuple[dict[str, np.ndarray], float]:
    """Resampled values of every figure and the degrees of freedom of their spread."""
    if len(samples) >= 5:
        rng = np.random.default_rng(seed)
        points = {f: np.array([s.point()[f] for s in samples]) for f in FIGURES}
        picks = rng.integers(0, len(samples), size=(n_boot, len(samples)))
        return {f: _nanmean(v[picks], axis=1) for f, v in points.items()}, float(len(samples) - 1)
    per = [s.bootstrap(block_s=block_s, n_boot=n_boot, seed=seed + i) for i, s in enumerate(samples)]
    df = float(sum(max(1, s.n_bins // max(1, round(block_s / s.bin_s))) - 1 for s in samples))
    if len(per) == 1:
        return per[0], max(df, 1.0)
    # 2-4 runs: each run weighted equally
    return {f: _nanmean(np.vstack([p[f] for p in per]), axis=0) for f in FIGURES}, max(df, 1.0)


def _sd(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(np.std(v, ddof=1)) if v.size > 1 else math.nan


def _point(samples: Sequence[RunSample]) -> dict[str, float]:
    pts = [s.point() for s in samples]
    return {f: float(_nanmean([p[f] for p in pts])) for f in FIGURES}


def run_intervals(
    runs: Any,
    *,
    slo: Mapping[str, float] | None = None,
    usd_per_hour: float | None = None,
    confidence: float = 0.95,
    block_s: float = 10.0,
    n_boot: int = 1000,
    seed: int = 0,
    warmup_s: float = 0.0,
) -> Any:
    """A frame of every headline figure with its interval: figure, label, estimate, lo, hi, method.

    ``runs`` is one run or a list of repeats (≥ 5 switches to the across-runs method).

    Example::

        run_intervals([r1, r2, r3, r4, r5], slo={"ttft_s": 1.0}).set_index("figure").loc["ttft_p99_s"]
    """
    import pandas as pd

    if not (0 < confidence < 1):
        raise SpecError("confidence", f"must be in (0, 1) (got {confidence!r})")
    if block_s < 10:
        raise SpecError(
            "block_s", f"must be >= 10 s: intervals are autocorrelated over seconds (got {block_s!r})"
        )
    samples = _samples(runs, slo=slo, usd_per_hour=usd_per_hour, warmup_s=warmup_s)
    dist, df = _dist(samples, block_s, n_boot, seed)
    est = _point(samples)
    t = t_quantile(1 - (1 - confidence) / 2, df)
    n_blocks = min(s.n_bins for s in samples) // max(1, int(block_s))
    method = _method(len(samples), block_s, n_blocks)
    rows = []
    for f, (label, _) in FIGURES.items():
        half = t * _sd(dist[f])
        rows.append({"figure": f, "label": label, "estimate": est[f], "lo": est[f] - half, "hi": est[f] + half,
                     "se": _sd(dist[f]), "df": df, "method": method})  # fmt: skip
    return pd.DataFrame(rows)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Run B against run A: per figure the difference ``b - a``, its interval and a verdict; overall verdict.

    Example::

        c = compare("runs/a", "runs/b", slo={"ttft_s": 1.0})
        c.verdict                     # 'significant difference' or 'no significant difference'
        c.table[["label", "a", "b", "diff", "diff_lo", "diff_hi", "verdict"]]
    """

    name_a: str
    name_b: str
    table: Any
    confidence: float
    adjusted: bool
    method: str
    samples_a: tuple[RunSample, ...] = field(repr=False)
    samples_b: tuple[RunSample, ...] = field(repr=False)

    @property
    def verdict(self) -> str:
        """'significant difference' when any figure's interval excludes 0, else 'no significant difference'."""
        sig = self.table["verdict"].isin(["better", "worse"]).any()
        return "significant difference" if sig else "no significant difference"

    def __repr__(self) -> str:
        lines = [f"Comparison({self.name_b} vs {self.name_a}: {self.verdict}; {self.method})"]
        for _, r in self.table.iterrows():
            lines.append(
                f"  {r['label']}: {r['a']:.4g} -> {r['b']:.4g}  diff {r['diff']:+.4g} "
                f"[{r['diff_lo']:+.4g}, {r['diff_hi']:+.4g}]  {r['verdict']}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cols = ["label", "a", "b", "diff", "diff_lo", "diff_hi", "verdict"]
        head = f"<b>{html.escape(self.name_b)} vs {html.escape(self.name_a)}: {html.escape(self.verdict)}</b>"
        return f"<div>{head}<br><small>{html.escape(self.method)}</small>{self.table[cols].to_html(index=False)}</div>"

    def plot(self) -> Any:
        """Overlaid per-second TTFT p99 / goodput fraction / tokens per second of both sides (matplotlib)."""
        import matplotlib

        matplotlib.use(matplotlib.get_backend())
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 7))
        axes = fig.subplots(3, 1, sharex=True)
        for samples, label, color in (
            (self.samples_a, self.name_a, "tab:blue"),
            (self.samples_b, self.name_b, "tab:orange"),
        ):
            for i, s in enumerate(samples):
                edges = np.searchsorted(s.bins, np.arange(s.n_bins + 1))
                x = np.arange(s.n_bins) * s.bin_s
                ttft = s.values.get("ttft_s", s.values.get("latency_s"))
                p99 = [np.nanpercentile(ttft[edges[b]:edges[b + 1]], 99) if edges[b + 1] > edges[b] and ttft is not None else np.nan for b in range(s.n_bins)]  # fmt: skip
                good = [s.good[edges[b]:edges[b + 1]].mean() if edges[b + 1] > edges[b] else np.nan for b in range(s.n_bins)]  # fmt: skip
                tok = [s.tokens[edges[b] : edges[b + 1]].sum() / s.bin_s for b in range(s.n_bins)]
                kw = {"color": color, "alpha": 0.8 if i == 0 else 0.4, "label": label if i == 0 else None}
                axes[0].plot(x, p99, **kw)
                axes[1].plot(x, good, **kw)
                axes[2].plot(x, tok, **kw)
        axes[0].set_ylabel("TTFT p99 (s) per s")
        axes[1].set_ylabel("goodput fraction")
        axes[2].set_ylabel("output tokens/s")
        axes[2].set_xlabel("seconds since the run's first intended send")
        axes[0].legend()
        fig.suptitle(f"{self.name_b} vs {self.name_a}: {self.verdict}")
        return fig

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML comparison report (table with intervals + overlaid plots as an inline PNG)."""
        import base64
        import io

        out = Path(path)
        buf = io.BytesIO()
        self.plot().savefig(buf, format="png", dpi=90, bbox_inches="tight")
        img = base64.b64encode(buf.getvalue()).decode()
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    r["label"],
                    f"{r['a']:.4g}",
                    f"{r['b']:.4g}",
                    f"{r['diff']:+.4g}",
                    f"[{r['diff_lo']:+.4g}, {r['diff_hi']:+.4g}]",
                    r["verdict"],
                )
            )
            + "</tr>"
            for _, r in self.table.iterrows()
        )
        level = f"{self.confidence:.0%}" + (" Bonferroni-adjusted per figure" if self.adjusted else "")
        doc = (
            "<!doctype html><meta charset='utf-8'><title>mlops-lb comparison</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            f"<h1>{html.escape(self.name_b)} vs {html.escape(self.name_a)}: {html.escape(self.verdict)}</h1>"
            f"<p>Intervals: {html.escape(level)}; method: {html.escape(self.method)}. A difference is b − a; "
            "'better'/'worse' when its interval excludes 0.</p>"
            "<table><tr><th>figure</th><th>a</th><th>b</th><th>b − a</th><th>interval</th><th>verdict</th></tr>"
            f"{rows}</table><img src='data:image/png;base64,{img}' style='max-width:100%'>"
        )
        out.write_text(doc)
        return out


def compare(
    a: Any,
    b: Any,
    *,
    slo: Mapping[str, float] | None = None,
    usd_per_hour: float | tuple[float, float] | None = None,
    confidence: float = 0.95,
    adjust: bool = True,
    block_s: float = 10.0,
    n_boot: int = 1000,
    seed: int = 0,
    warmup_s: float = 0.0,
    figures: Sequence[str] | None = None,
    names: tuple[str, str] | None = None,
) -> Comparison:
    """Compare run(s) ``b`` against run(s) ``a`` (each a LoadResult, a bundle folder, or a list of repeats).

    ``usd_per_hour`` prices both sides (or a pair ``(a, b)`` when their fleets differ); ``names`` labels them
    (default: the bundle folders' names). See the module docstring
    for the method and the verdict rule.

    Example::

        compare("runs/a", "runs/b", slo={"ttft_s": 1.0, "tpot_s": 0.1}, usd_per_hour=1.006).verdict
    """
    import pandas as pd

    if not (0 < confidence < 1):
        raise SpecError("confidence", f"must be in (0, 1) (got {confidence!r})")
    if block_s < 10:
        raise SpecError(
            "block_s", f"must be >= 10 s: intervals are autocorrelated over seconds (got {block_s!r})"
        )
    figs = list(figures or FIGURES)
    bad = [f for f in figs if f not in FIGURES]
    if bad:
        raise SpecError("figures", f"has unknown {bad} (known: {', '.join(FIGURES)})")
    ua, ub = usd_per_hour if isinstance(usd_per_hour, tuple) else (usd_per_hour, usd_per_hour)
    sa = _samples(a, slo=slo, usd_per_hour=ua, warmup_s=warmup_s)
    sb = _samples(b, slo=slo, usd_per_hour=ub, warmup_s=warmup_s)
    (da, dfa), (db, dfb) = _dist(sa, block_s, n_boot, seed), _dist(sb, block_s, n_boot, seed + 7919)
    pa, pb = _point(sa), _point(sb)
    alpha = (1 - confidence) / (len(figs) if adjust else 1)
    rows = []
    for f in figs:
        label, sign = FIGURES[f]
        va, vb = _sd(da[f]) ** 2, _sd(db[f]) ** 2
        diff = pb[f] - pa[f]
        if math.isnan(diff) or math.isnan(va + vb):
            lo = hi = math.nan
            verdict = "not measured"
        else:
            # Welch-Satterthwaite degrees of freedom for the difference of two independent estimates
            den = (va**2 / dfa if va else 0.0) + (vb**2 / dfb if vb else 0.0)
            dfw = (va + vb) ** 2 / den if den > 0 else min(dfa, dfb)
            half = t_quantile(1 - alpha / 2, dfw) * math.sqrt(va + vb)
            lo, hi = diff - half, diff + half
            if lo > 0 or hi < 0:
                verdict = "better" if (diff > 0) == (sign > 0) else "worse"
            else:
                verdict = "no significant difference"
        rel = diff / pa[f] if pa[f] else math.nan
        rows.append({"figure": f, "label": label, "a": pa[f], "b": pb[f], "diff": diff, "diff_lo": lo,
                     "diff_hi": hi, "rel_diff": rel, "verdict": verdict})  # fmt: skip
    n_blocks = min(s.n_bins for s in (*sa, *sb)) // max(1, int(block_s))
    method = _method(min(len(sa), len(sb)), block_s, n_blocks)
    name_a = sa[0].name if len(sa) == 1 else f"{sa[0].name} (+{len(sa) - 1})"
    name_b = sb[0].name if len(sb) == 1 else f"{sb[0].name} (+{len(sb) - 1})"
    if names is not None:
        name_a, name_b = names
    return Comparison(
        name_a=name_a,
        name_b=name_b,
        table=pd.DataFrame(rows),
        confidence=confidence,
        adjusted=adjust,
        method=method,
        samples_a=tuple(sa),
        samples_b=tuple(sb),
    )
