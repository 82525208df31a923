"""systemd's ``EnvironmentFile=`` syntax, for the sandbox's systemctl and for tests that read /etc/mlops-lb.env.

systemd.exec(5), EnvironmentFile= (https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html;
the search tool did not return that paragraph, so it is paraphrased): ``KEY=VALUE`` assignments, lines starting
with ``#`` or ``;`` ignored; a double-quoted value may span lines, with backslash escapes for ``\\"``, ``\\\\``,
``\\$``, ``\\```` and a backslash-newline continuation; a single-quoted value is verbatim up to the next ``'``;
an unquoted value ends at the line's end, surrounding whitespace stripped. No ``$VAR`` or ``%`` expansion.

Example::

    env_file('A="x\\ny"\\nB=plain\\n') == {"A": "x\\ny", "B": "plain"}
"""

from __future__ import annotations

import re

_LINE = re.compile(
    r"""[ \t]*(?P<key>[A-Za-z_]\w*)[ \t]*=[ \t]*
        (?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'|(?P<raw>[^\n]*))[ \t]*(?:\n|$)""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def env_file(text: str) -> dict[str, str]:
    """The variables ``text`` (an EnvironmentFile's content) assigns."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        line_end = len(text) if nl < 0 else nl
        line = text[pos:line_end]
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            pos = line_end + 1
            continue
        m = _LINE.match(text, pos)
        if not m:  # a line without "=": systemd ignores it
            pos = line_end + 1
            continue
        if m.group("dq") is not None:
            out[m.group("key")] = _ESCAPE.sub(
                lambda e: "" if e.group(1) == "\n" else e.group(1)
                if e.group(1) in '"\\$`' else e.group(0), m.group("dq")
            )  # fmt: skip
        elif m.group("sq") is not None:
            out[m.group("key")] = m.group("sq")
        else:
            out[m.group("key")] = m.group("raw").strip()
        pos = m.end()
    return out
