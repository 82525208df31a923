"""The redaction rules every repr, log line, error, bundle and report goes through (mlops_lb._redact)."""

from __future__ import annotations

import pytest

from mlops_lb._redact import (
    REDACTED,
    is_secret_name,
    redact_env,
    redact_headers,
    redact_url,
    scrub,
    secret_values,
)


class TestNames:
    @pytest.mark.parametrize(
        "name",
        ["HF_TOKEN", "openai_api_key", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "GOOGLE_CREDENTIALS",
         "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "x-auth-token"],
    )  # fmt: skip
    def test_secret_looking_names(self, name: str) -> None:
        """Names the brief lists (TOKEN, KEY, SECRET, PASSWORD, CREDENTIAL, Authorization, Cookie) are secret."""
        assert is_secret_name(name)

    @pytest.mark.parametrize("name", ["LOG_LEVEL", "PORT", "Content-Type", "Accept", "MODEL_PATH", "n"])
    def test_plain_names(self, name: str) -> None:
        """Ordinary configuration names stay readable."""
        assert not is_secret_name(name)


class TestRedact:
    def test_env_and_headers(self) -> None:
        """Values of secret names become *** and others are kept, without touching the input."""
        env = {"HF_TOKEN": "hf_1", "LOG_LEVEL": "info"}
        assert redact_env(env) == {"HF_TOKEN": REDACTED, "LOG_LEVEL": "info"}
        assert env["HF_TOKEN"] == "hf_1"
        assert redact_headers({"Authorization": "Bearer x", "Accept": "*/*"}) == {
            "Authorization": REDACTED,
            "Accept": "*/*",
        }
        assert redact_env(None) == {}

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("http://u:pw@h:8080/p?api_key=k&n=1", "http://u:***@h:8080/p?api_key=***&n=1"),
            ("http://tok@h/p", "http://***@h/p"),
            ("http://h/p?n=1&m=2", "http://h/p?n=1&m=2"),
            ("http://h/p", "http://h/p"),
        ],
    )
    def test_url(self, url: str, shown: str) -> None:
        """Userinfo and secret query values go; host, port, path and plain parameters stay."""
        assert redact_url(url) == shown

    def test_url_that_does_not_parse_says_nothing(self) -> None:
        """A URL urlsplit refuses is not echoed (it may hold the secret)."""
        assert redact_url("http://[::1@x/?token=SECRET") == REDACTED
        assert redact_url(42) == 42


class TestScrub:
    def test_value_with_trailing_newline(self) -> None:
        """A key read from a file with its newline is removed in its raw, repr and stripped forms."""
        key = "sk-abcdef123\n"
        msg = f"headers['X-Key'] must not contain CR, LF or NUL (got {key!r}); also sk-abcdef123 alone"
        out = scrub(msg, [key])
        assert "sk-abcdef123" not in out and out.count(REDACTED) == 2

    def test_short_values_are_left(self) -> None:
        """A 1-3 character 'secret' would blank out the whole message: it is not scrubbed from free text."""
        assert scrub("port 1 and 12", ["1"]) == "port 1 and 12"

    def test_secret_values(self) -> None:
        """Secrets are collected by name from env and headers, and from a URL's userinfo and query."""
        got = secret_values(
            env={"HF_TOKEN": "hf_1", "PORT": "80"},
            headers={"Authorization": "Bearer b"},
            url="http://u:pw@h/?api_key=kk&n=1",
        )
        assert got == ["hf_1", "Bearer b", "pw", "kk"]
