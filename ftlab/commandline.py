"""Command-line plumbing every command shares (layer 0: any module may import it): one-line argument errors, `--help` that formats, nearest names.

House style: a bad input ends with ONE `error: ...` line on stderr naming the input and the fix, exit 2.
argparse instead prints the whole usage (150 lines for train.py) before its error, %-formats help strings
(a literal "10%" crashes `--help`) and reads a negative value (`--learning_rate -1e-3`) as an option.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import re
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Type

# a value that argparse would take for an option: -1, -1e-3, -.5 (its own test accepts neither -1e-3 nor -1.)
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
# argparse's message when an option's value was read as an option
EXPECTED_ONE = "expected one argument"


class UsageError(ValueError):
    """A bad command line; the scripts' `except ValueError` prints it as the one `error:` line."""


def one_line(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser (and its sub-parsers) with argparse's usage dump replaced by a one-line UsageError that points
    at --help, and help strings safe to %-format (a literal % is escaped; %(default)s and friends are kept)."""
    prog = parser.prog

    def error(message: str):
        raise UsageError(f"{message} (see {prog} --help)")

    parser.error = error
    for action in parser._actions:
        if action.help and "%" in action.help:
            action.help = re.sub(r"%(?!\()", "%%", action.help.replace("%%", "%"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                one_line(sub)
    return parser


def join_negative_values(argv: Sequence[str]) -> List[str]:
    """`--flag -1e-3` -> `--flag=-1e-3`: the value reaches the flag's own check instead of argparse's
    "expected one argument" (a negative number is then refused by the dataclass with its reason)."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE_NUMBER.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def parse_dataclasses(parser, argv: Optional[Sequence[str]] = None, **kwargs):
    """HfArgumentParser.parse_args_into_dataclasses (argv None: the command line) with one-line errors: unknown
    flags name the nearest valid ones instead of HF's "Some specified arguments are not used by ..."."""
    argv = sys.argv[1:] if argv is None else argv
    one_line(parser)
    try:
        return parser.parse_args_into_dataclasses(args=join_negative_values(argv), look_for_args_file=False, **kwargs)
    except UsageError:
        raise
    except ValueError as e:
        if "not used by the HfArgumentParser" not in str(e):
            raise
        _, extra = parser.parse_known_args(join_negative_values(argv))
        raise UsageError(unknown_arguments(extra, option_names(parser), parser.prog)) from None


def option_names(parser: argparse.ArgumentParser) -> List[str]:
    """Each flag's first long spelling (HfArgumentParser adds --a-b beside --a_b: one is enough in a hint)."""
    longs = ([s for s in action.option_strings if s.startswith("--")] for action in parser._actions)
    return [names[0] for names in longs if names]


def unknown_arguments(extra: Sequence[str], valid: Iterable[str], prog: str) -> str:
    first = next((a for a in extra if a.startswith("-")), extra[0])
    flag = first.split("=", 1)[0]
    hint = nearest(flag, valid) if first.startswith("-") else ""
    return f"unrecognized argument(s) {' '.join(extra)[:120]}{hint} (see {prog} --help)"


def nearest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """'; did you mean a, b?' with the closest valid names (difflib), or '' when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_choice(what: str, name: str, choices: Sequence[str], listed: int = 8) -> str:
    """The message for a name not in a registry: the nearest names, or the first few when none is close."""
    hint = nearest(name, choices)
    if hint:
        return f"unknown {what} {name!r}{hint}"
    shown = ", ".join(list(choices)[:listed]) + (", ..." if len(choices) > listed else "")
    return f"unknown {what} {name!r}; valid: {shown}"


def first_line(message: object, limit: int = 300) -> str:
    """One line of at most `limit` characters: the point of a long library message."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def fail(message: object) -> int:
    """Print the one `error:` line; the exit code for bad input (2)."""
    print(f"error: {first_line(message)}", file=sys.stderr)
    return 2


def require(ok: bool, message: str) -> None:
    """Raise the one-line ValueError of a bad value (dataclass __post_init__ checks)."""
    if not ok:
        raise ValueError(message)


def positive(value: Optional[float], flag: str, fix: str = "", allow_none: bool = True) -> None:
    require((allow_none and value is None) or (value is not None and value > 0),
            f"{flag} {value}: must be > 0{'; ' + fix if fix else ''}")


BAD_INPUT = (ValueError, FileNotFoundError)


def one_line_errors(*errors: Type[BaseException]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's main: the given exceptions (default BAD_INPUT) become the one `error:` line and 2."""
    caught = errors or BAD_INPUT

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except caught as err:
                return fail(err)

        return guarded

    return wrap
