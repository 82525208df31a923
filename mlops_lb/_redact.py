"""Keep secret values out of every repr, log line, error message, bundle and report.

One small, dependency-free module at the bottom layer (beside ``errors``) so that every layer can call it: the spec's
``repr``/``to_yaml``/``spec.json``, ``LoadSettings``' repr, ``load.json``, the report and the error messages.

The rules (one place, so the spec, the load generator and the report agree):

* a *name* looks secret when it contains TOKEN, KEY, SECRET, PASSWORD/PASSWD, CREDENTIAL or AUTH (any case), or is a
  header that carries credentials by definition: ``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``Set-Cookie`` (RFC 9110 §11.6.2 and §11.7.2, RFC 6265 §4). Over-redacting a harmless ``MONKEY_COUNT`` costs a
  ``***`` in a report; under-redacting leaks a token into a file "meant to be mailed";
* a *URL* keeps its scheme, host, port and path; the userinfo's password (or a lone user name, often a token, as in
  ``https://TOKEN@host``) and the values of query parameters whose names look secret become ``***``;
* :func:`scrub` removes known secret values from any text (an exception message, a log line), including the value
  with its surrounding whitespace stripped, since a key read from a file usually ends in a newline.

Example::

    from mlops_lb._redact import redact_env, redact_headers, redact_url, is_secret_name, scrub
    redact_env({"HF_TOKEN": "hf_abc", "LOG_LEVEL": "info"})   # {'HF_TOKEN': '***', 'LOG_LEVEL': 'info'}
    redact_headers({"Authorization": "Bearer x"})             # {'Authorization': '***'}
    redact_url("http://u:pw@h:8080/p?api_key=k&n=1")          # 'http://u:***@h:8080/p?api_key=***&n=1'
    scrub("bad value 'hf_abc\\n'", ["hf_abc\\n"])             # "bad value '***'"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "is_secret_name",
    "redact_env",
    "redact_headers",
    "redact_url",
    "scrub",
    "secret_values",
]

REDACTED = "***"

# Substrings that make an env var, header or query-parameter name secret-looking (matched case-insensitively).
_SECRET_PARTS = re.compile(r"token|key|secret|passw|credential|auth|cookie|session[-_]?id|signature", re.I)
# A value shorter than this is not scrubbed from free text: replacing every "1" in a message helps nobody, and a
# real credential is longer. Structured redaction (by name) has no such floor.
_MIN_SCRUB_LEN = 4

V = TypeVar("V")


def is_secret_name(name: object) -> bool:
    """True when ``name`` (an env var, header or query-parameter name) looks like it holds a secret.

    Example::

        is_secret_name("HF_TOKEN"), is_secret_name("x-api-key"), is_secret_name("LOG_LEVEL")   # True True False
    """
    return isinstance(name, str) and bool(_SECRET_PARTS.search(name))


def redact_env(mapping: Mapping[str, V] | None) -> dict[str, V | str]:
    """A copy of ``mapping`` with the values of secret-looking names replaced by ``REDACTED``.

    Example::

        redact_env({"OPENAI_API_KEY": "sk-1", "PORT": "80"})     # {'OPENAI_API_KEY': '***', 'PORT': '80'}
    """
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in (mapping or {}).items()}


def redact_headers(mapping: Mapping[str, V] | None) -> dict[str, V | str]:
    """A copy of HTTP headers with credential-bearing values (Authorization, Cookie, ``*key*``, ``*token*``…)
    replaced by ``REDACTED``.

    Example::

        redact_headers({"Authorization": "Bearer t", "Accept": "*/*"})   # {'Authorization': '***', 'Accept': '*/*'}
    """
    return redact_env(mapping)


def redact_url(url: Any) -> Any:
    """``url`` without its credentials: the userinfo's password (or a lone user name) and secret-looking query
    values become ``REDACTED``. Anything that is not a string, or does not parse, is returned as it came.

    Example::

        redact_url("http://alice:s3cret@10.0.0.1/predict?api_key=k")   # 'http://alice:***@10.0.0.1/predict?api_key=***'
    """
    if not isinstance(url, str) or ("@" not in url and "?" not in url):
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hostport = netloc.rsplit("@", 1)
            user, sep, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{hostport}" if sep else f"{REDACTED}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(is_secret_name(k) for k, _ in pairs):
                query = "&".join(
                    f"{quote(k, safe='')}={REDACTED if is_secret_name(k) else quote(v, safe='')}"
                    for k, v in pairs
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # a URL urlsplit refuses (bad IPv6 bracket): say nothing about it rather than leak it
        return REDACTED


def secret_values(
    *,
    env: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
    url: Any = None,
) -> list[str]:
    """The secret values found in ``env``/``headers`` (by name) and in ``url`` (userinfo, secret query values):
    what :func:`scrub` should remove from free text.

    Example::

        secret_values(env={"HF_TOKEN": "hf_1"}, url="http://u:pw@h/")      # ['hf_1', 'pw']
    """
    found: list[str] = []
    for mapping in (env, headers):
        for k, v in (mapping or {}).items():
            if is_secret_name(k) and isinstance(v, str):
                found.append(v)
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
            if "@" in parts.netloc:
                userinfo = parts.netloc.rsplit("@", 1)[0]
                user, sep, password = userinfo.partition(":")
                found.append(password if sep else user)
            found.extend(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k))
        except ValueError:
            pass
    return found


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value (also its ``repr`` form, and stripped of surrounding
    whitespace) replaced by ``REDACTED``.

    Example::

        scrub("headers['X-Key'] must not contain CR (got 'k-123\\n')", ["k-123\\n"])
        # "headers['X-Key'] must not contain CR (got '***')"
    """
    forms: set[str] = set()
    for v in values:
        if not isinstance(v, str):
            continue
        for form in (v, v.strip(), repr(v)[1:-1], repr(v.strip())[1:-1]):
            if len(form) >= _MIN_SCRUB_LEN:
                forms.add(form)
    # Longest first, so a value's repr form (with its escapes) goes before the bare value inside it.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text
