"""The house rule for bad input, in one place: one line on stderr starting `error: `, exit code 2, no traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, Type

BAD_INPUT = (ValueError, FileNotFoundError)


def one_line_errors(*errors: Type[BaseException]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's main: the given exceptions (default BAD_INPUT) become `error: <message>` and 2."""
    caught = errors or BAD_INPUT

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except caught as err:
                print(f"error: {err}", file=sys.stderr)
                return 2

        return guarded

    return wrap
