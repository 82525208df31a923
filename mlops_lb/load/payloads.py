"""Request bodies for the load generator: OpenAI chat/completions workloads, and any server's bodies from JSONL.

Every builder returns a ``list[bytes]`` of JSON bodies, what ``run_load(url, profile, payloads=...)`` takes: request
*i* of the schedule sends body ``i % len(bodies)``.

Lengths are in the LLM emulator's tokens (one token per whitespace-separated word, see
:func:`mlops_lb.serving.llm_app.count_tokens`), so a synthetic prompt of ``prompt_tokens=128`` is 128 words and is
counted as 128 prompt tokens by the emulator (a real tokenizer counts roughly 1.3 tokens per English word).
A length is given as:

* an ``int``: every request the same;
* a ``(lo, hi)`` tuple: uniform integers in ``[lo, hi]``;
* a list of ints: an empirical distribution, sampled with replacement;
* ``{"normal": (mean, sd)}`` or ``{"lognormal": (median, sigma)}``: rounded, at least 1.

Draws are seeded (``seed``), so the same call gives the same bodies. A ``prompts`` dataset is a JSONL file (one
object a line, with ``prompt`` or ``messages`` or ShareGPT's ``conversations``) or a ShareGPT-style JSON array; a
ShareGPT record's first human turn is the prompt and the reply that follows sets its output length, as in vLLM's
``benchmark_serving``. A trace with request sizes (:func:`mlops_lb.load.trace` with ``prompt_tokens`` and
``output_tokens`` columns) passed as ``profile=`` fixes each request's lengths, in schedule order.

Example::

    from mlops_lb import load
    bodies = load.openai_chat(model="m", prompt_tokens=(64, 256), max_tokens=128, n=500, seed=1)
    load.run_load("http://127.0.0.1:8000/v1/chat/completions", load.constant(10, 60), payloads=bodies)

    replay = load.trace("recorded.csv")      # timestamp, prompt_tokens, output_tokens
    load.run_load(url, replay, payloads=load.openai_completions(model="m", profile=replay))
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .._validate import check_bool, check_int, check_num, check_str, fail, show
from ..errors import SpecError
from .profiles import LoadProfile, TraceProfile

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Unpack

__all__ = ["BodyOptions", "Length", "openai_chat", "openai_completions", "payloads_from_jsonl"]

Length = int | tuple[int, int] | Sequence[int] | Mapping[str, tuple[float, float]]
"""A length in tokens: fixed, ``(lo, hi)`` uniform, an empirical list, or ``{"normal"|"lognormal": (a, b)}``."""

DEFAULT_N = 1000
MAX_N = 10_000_000
MAX_TOKENS_LIMIT = 1_000_000
# Prompt words: short lower-case English words, so a prompt is readable and each word is one emulator token.
_WORDS = (
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state",
    "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company",
    "system", "program", "question", "work", "number", "night", "point", "home", "water", "room", "mother",
    "area", "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business",
    "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line",
)  # fmt: skip


class BodyOptions(TypedDict, total=False):
    """The keywords :func:`openai_chat` and :func:`openai_completions` share, all optional (defaults after the
    colon in :func:`openai_chat`'s docstring).

    Example::

        opts: BodyOptions = {"prompt_tokens": (64, 256), "max_tokens": 128, "n": 500}
        openai_chat(model="m", **opts) and openai_completions(model="m", **opts)
    """

    prompts: str | os.PathLike[str] | Sequence[str] | None
    prompt_tokens: Length
    max_tokens: Length | None
    n: int | None
    profile: LoadProfile | None
    stream: bool
    seed: int
    extra: Mapping[str, Any] | None


def openai_chat(*, model: str, system: str | None = None, **options: Unpack[BodyOptions]) -> list[bytes]:
    """Bodies for ``POST /v1/chat/completions``: one user message each (after ``system``, if given).

    ``prompts``: texts (cycled) or a dataset file; without it, synthetic prompts of ``prompt_tokens`` words
    (128). ``max_tokens``: the output length (default 64, or the dataset's reply lengths). ``n`` bodies (default
    1000, the dataset's size, or one per request of a ``profile`` trace that carries sizes). ``stream`` (True):
    streaming bodies ask for the usage chunk (``stream_options: {"include_usage": true}``), from which the engine
    counts tokens. ``seed`` (0) fixes the draws. ``extra`` keys are added to every body (``temperature``,
    ``ignore_eos`` …).

    Example::

        openai_chat(model="llama", prompt_tokens={"lognormal": (200, 0.6)}, max_tokens=(32, 256), n=2000)
    """
    head = [] if system is None else [{"role": "system", "content": check_str("system", system)}]
    return _build(model, lambda text: {"messages": [*head, {"role": "user", "content": text}]}, **options)


def openai_completions(*, model: str, **options: Unpack[BodyOptions]) -> list[bytes]:
    """Bodies for ``POST /v1/completions`` (``prompt`` a string); the arguments are :func:`openai_chat`'s.

    Example::

        openai_completions(model="m", prompts="sharegpt.json", n=1000, stream=False)
    """
    return _build(model, lambda text: {"prompt": text}, **options)


def payloads_from_jsonl(path: str | os.PathLike[str]) -> list[bytes]:
    """Request bodies from a JSONL file, one JSON value a line (blank lines skipped), for any server.

    Each line is checked to be JSON and sent as written (without its line ending).

    Example::

        run_load(url, constant(50, 30), payloads=payloads_from_jsonl("bodies.jsonl"))
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError("payloads", f"cannot read {p}: {exc}") from exc
    out: list[bytes] = []
    for no, line in enumerate(raw.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            fail(
                "payloads", f"{p} line {no} is not JSON ({exc}): {show(line[:60].decode('utf-8', 'replace'))}"
            )
        out.append(line)
    if not out:
        fail("payloads", f"{p} has no request bodies (one JSON value a line)")
    return out


# --------------------------------------------------------------------------- internals
def _build(
    model: str,
    prompt_field: Callable[[str], dict[str, Any]],
    *,
    prompts: Any = None,
    prompt_tokens: Length = 128,
    max_tokens: Length | None = None,
    n: int | None = None,
    profile: LoadProfile | None = None,
    stream: bool = True,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> list[bytes]:
    import numpy as np

    check_str("model", model)
    check_bool("stream", stream)
    check_int("seed", seed, 0)
    if n is not None:
        check_int("n", n, 1, MAX_N)
    if extra is not None and not isinstance(extra, Mapping):
        fail("extra", f"must be a mapping of extra body fields (got {show(extra)})")
    rng = np.random.default_rng(seed)
    texts: list[str] | None = None
    outs: np.ndarray | None = None
    sized = isinstance(profile, TraceProfile) and profile.has_sizes
    if profile is not None and not isinstance(profile, LoadProfile):
        fail("profile", f"must be a LoadProfile (got {show(profile)})")
    if sized:
        assert isinstance(profile, TraceProfile)
        if prompts is not None:
            fail("prompts", "must be left out: the trace's prompt_tokens set every prompt's length")
        count = len(profile.offsets)
        if n is not None and n != count:
            fail("n", f"must be left out or equal the trace's {count} requests (got {n})")
        lengths = np.asarray(profile.prompt_tokens, dtype=np.int64)
        outs = np.asarray(profile.output_tokens, dtype=np.int64)
    elif prompts is not None:
        if isinstance(prompts, (str, os.PathLike)) and (
            isinstance(prompts, os.PathLike) or _looks_like_path(prompts)
        ):
            texts, dataset_outs = _read_dataset(Path(prompts))
            if max_tokens is None and dataset_outs is not None:
                outs = np.asarray(dataset_outs, dtype=np.int64)
        elif isinstance(prompts, Sequence) and not isinstance(prompts, (str, bytes)) and prompts:
            texts = [check_str(f"prompts[{i}]", t) for i, t in enumerate(prompts)]
        else:
            fail("prompts", f"must be a list of texts or a JSONL/JSON dataset path (got {show(prompts)})")
        count = n or len(texts)
        lengths = np.zeros(count, dtype=np.int64)
    else:
        count = n or DEFAULT_N
        lengths = _draw("prompt_tokens", prompt_tokens, count, rng)
    if outs is None:
        outs = _draw("max_tokens", 64 if max_tokens is None else max_tokens, count, rng)
    elif len(outs) != count:
        outs = outs[np.arange(count) % len(outs)]
    words = np.asarray(_WORDS, dtype=object)
    base: dict[str, Any] = {"model": model}
    if stream:
        base.update(stream=True, stream_options={"include_usage": True})
    else:
        base["stream"] = False
    if extra:
        base.update(extra)
    bodies: list[bytes] = []
    for i in range(count):
        if texts is not None:
            text = texts[i % len(texts)]
        else:
            text = " ".join(words[rng.integers(0, len(words), size=int(lengths[i]))])
        body = {**base, **prompt_field(text)}
        body["max_tokens"] = int(outs[i])
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def _looks_like_path(text: str) -> bool:
    return text.endswith((".json", ".jsonl")) or os.sep in text or Path(text).is_file()


def _draw(name: str, spec: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` seeded lengths (>= 1) from a :data:`Length` spec."""
    import numpy as np

    if isinstance(spec, bool):
        fail(name, f"must be a length in tokens (got {show(spec)})")
    if isinstance(spec, int) or (hasattr(spec, "__index__") and not isinstance(spec, (str, bytes))):
        v = check_int(name, spec, 1, MAX_TOKENS_LIMIT)
        return np.full(n, v, dtype=np.int64)
    if isinstance(spec, tuple) and len(spec) == 2:
        lo = check_int(f"{name}[0]", spec[0], 1, MAX_TOKENS_LIMIT)
        hi = check_int(f"{name}[1]", spec[1], lo, MAX_TOKENS_LIMIT)
        return rng.integers(lo, hi + 1, size=n).astype(np.int64)
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((dist, args),) = spec.items()
        if dist not in ("normal", "lognormal") or not isinstance(args, (tuple, list)) or len(args) != 2:
            fail(
                name,
                f"must be {{'normal': (mean, sd)}} or {{'lognormal': (median, sigma)}} (got {show(spec)})",
            )
        a = check_num(f"{name}.{dist}[0]", args[0], 0, MAX_TOKENS_LIMIT, lo_open=True)
        b = check_num(f"{name}.{dist}[1]", args[1], 0, MAX_TOKENS_LIMIT)
        x = rng.normal(a, b, size=n) if dist == "normal" else rng.lognormal(np.log(a), b, size=n)
        return np.clip(np.rint(x), 1, MAX_TOKENS_LIMIT).astype(np.int64)
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)) and spec:
        values = np.asarray([check_int(f"{name}[{i}]", v, 1, MAX_TOKENS_LIMIT) for i, v in enumerate(spec)])
        return rng.choice(values, size=n).astype(np.int64)
    fail(
        name,
        "must be an int, a (lo, hi) tuple, a list of ints or {'normal'|'lognormal': (a, b)} "
        f"(got {show(spec)})",
    )


def _read_dataset(path: Path) -> tuple[list[str], list[int] | None]:
    """(prompt texts, output lengths or None) of a JSONL file or a ShareGPT-style JSON array."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("prompts", f"cannot read {path}: {exc}") from exc
    stripped = text.lstrip()
    records: list[tuple[int, Any]]
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError("prompts", f"{path} is not valid JSON ({exc})") from None
        records = list(enumerate(data, start=1))
    else:
        records = []
        for no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((no, json.loads(line)))
                except ValueError as exc:
                    raise SpecError("prompts", f"{path} line {no} is not JSON ({exc})") from None
    prompts: list[str] = []
    outs: list[int] = []
    for no, rec in records:
        where = f"{path} record {no}"
        prompt, out = _record(rec, where)
        if prompt is None:
            continue  # ShareGPT has conversations without a human turn followed by a reply: vLLM skips them too
        prompts.append(prompt)
        if out is not None:
            outs.append(out)
    if not prompts:
        fail(
            "prompts", f"{path} has no usable prompts (records need 'prompt', 'messages' or 'conversations')"
        )
    return prompts, (outs if len(outs) == len(prompts) else None)


def _record(rec: Any, where: str) -> tuple[str | None, int | None]:
    if isinstance(rec, str):
        return rec, None
    if not isinstance(rec, dict):
        fail("prompts", f"{where} must be an object or a string (got {show(rec)})")
    out = next((rec[k] for k in ("output_tokens", "max_tokens", "output_len") if k in rec), None)
    if out is not None:
        out = check_int(f"prompts ({where}).output_tokens", out, 1, MAX_TOKENS_LIMIT)
    if isinstance(rec.get("prompt"), str):
        return rec["prompt"], out
    if isinstance(rec.get("messages"), list):
        users = [m.get("content") for m in rec["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[0], str):
            return users[0], out
        fail("prompts", f"{where} has messages but no user message with text content")
    convo = rec.get("conversations")
    if isinstance(convo, list):
        for turn, reply in itertools.pairwise(convo):
            if (
                isinstance(turn, dict)
                and isinstance(reply, dict)
                and turn.get("from") in ("human", "user")
                and isinstance(turn.get("value"), str)
                and isinstance(reply.get("value"), str)
            ):
                return turn["value"], out if out is not None else max(1, len(reply["value"].split()))
        return None, None
    fail("prompts", f"{where} needs 'prompt', 'messages' or 'conversations' (got keys {sorted(rec)})")
