"""``--help`` is read in a terminal: no reST markup (````x````, ``:func:``) may reach it,
for either command or any of their subcommands (issue 13, item 10)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from governor_core.allocation.cli import main as allocation_main
from governor_core.cli import governor_main

MARKUP = re.compile(r"``|:(func|class|mod|meth|data|attr):`")


def help_text(main: Callable[[Sequence[str]], int], argv: list[str],
              capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def subcommands(text: str) -> list[str]:
    """The ``{a,b,c}`` choice list of a top-level usage line."""
    match = re.search(r"\{([a-z,-]+)\}", text)
    assert match, text
    return match.group(1).split(",")


@pytest.mark.parametrize("main", [governor_main, allocation_main],
                         ids=["quantum-governor", "quantum-allocation"])
def test_help_has_no_markup(main: Callable[[Sequence[str]], int],
                            capsys: pytest.CaptureFixture[str]) -> None:
    top = help_text(main, [], capsys)
    assert not MARKUP.search(top), top
    names = subcommands(top)
    assert "check-config" in names
    for name in names:
        text = help_text(main, [name], capsys)
        assert not MARKUP.search(text), f"{name} --help:\n{text}"
