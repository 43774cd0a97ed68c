"""``governor_core.envfile``: env files read by systemd's ``EnvironmentFile=`` rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from governor_core.envfile import parse_env_text, read_env_file

CASES = [
    # (label, file text, expected assignments)
    ("plain", "A=1\nB=two words\n", {"A": "1", "B": "two words"}),
    ("dollars kept literally", "REDIS_URL=redis://:pa$$w0rd@h:6379/0\n",
     {"REDIS_URL": "redis://:pa$$w0rd@h:6379/0"}),
    ("no expansion of $VAR or ${VAR}", "A=$HOME/${USER}\n", {"A": "$HOME/${USER}"}),
    ("semicolon in a value", "A=x;y\n", {"A": "x;y"}),
    ("hash in a value", "A=x # not a comment\n", {"A": "x # not a comment"}),
    ("comments", "# c\n; c\n  # indented c\nA=1\n", {"A": "1"}),
    ("blanks around key and =", "  A  =  1  \n", {"A": "1"}),
    ("inner blanks kept", "A=a   b\t\n", {"A": "a   b"}),
    ("single quotes verbatim", "A='pa$$ \\n \"x\"'\n", {"A": 'pa$$ \\n "x"'}),
    ("double quotes, escapes", 'A="a\\"b\\\\c\\$d\\qe"\n', {"A": 'a"b\\c$d\\qe'}),
    ("blanks outside quotes dropped", "A=  'x y'  \n", {"A": "x y"}),
    ("quotes after the first character kept", "A=x'y'\"z\"\n", {"A": "x'y'\"z\""}),
    ("text after a closing quote appended", "A='x' y\n", {"A": "xy"}),
    ("quoted value over two lines", "A='one\ntwo'\nB=3\n", {"A": "one\ntwo", "B": "3"}),
    ("backslash continuation", "A=one\\\ntwo\nB=3\n", {"A": "onetwo", "B": "3"}),
    ("double-quoted continuation", 'A="one\\\ntwo"\n', {"A": "onetwo"}),
    ("backslash escapes a character", "A=a\\ b\\\\c\n", {"A": "a b\\c"}),
    ("escaped trailing blank kept", "A=a\\ \n", {"A": "a "}),
    ("empty value", "A=\nB=  \n", {"A": "", "B": ""}),
    ("line without = ignored", "JUNK\nA=1\n", {"A": "1"}),
    ("later assignment wins", "A=1\nA=2\n", {"A": "2"}),
    ("no final newline", "A=1", {"A": "1"}),
    ("CRLF line ends", "A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
    ("comment with trailing backslash does not swallow the next line",
     "# c \\\nA=1\n", {"A": "1"}),
    ("= inside the value", "A=b=c\n", {"A": "b=c"}),
    ("project env file line", "#P29_CLUSTER_MAP_FILE=\nP29_MODE=shadow\n", {"P29_MODE": "shadow"}),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_parse_env_text(text: str, expected: dict[str, str]) -> None:
    parsed = parse_env_text(text)
    assert parsed.values == expected
    assert parsed.warnings == ()


def test_an_invalid_name_is_ignored_with_a_warning() -> None:
    parsed = parse_env_text("1A=x\nMY VAR=y\nB-C=z\nOK=1\n")
    assert parsed.values == {"OK": "1"}
    assert len(parsed.warnings) == 3
    assert "line 1" in parsed.warnings[0] and "'1A'" in parsed.warnings[0]


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "governor.env"
    path.write_text("# the password\nREDIS_URL=redis://:pa$$w0rd;x@h/0\n", encoding="utf-8")
    assert read_env_file(path).values == {"REDIS_URL": "redis://:pa$$w0rd;x@h/0"}


def test_the_shipped_env_files_parse_as_the_deploy_test_reads_them() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "deploy" / "env").glob("*.env")):
        expected = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                expected[name] = value
        assert read_env_file(path).values == expected, path.name
