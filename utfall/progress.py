"""Progress of long steps: a bar on a terminal, the same plain lines everywhere else.

Long commands (`run`, `demo`, `simulate`, `design`) report each finished step as one line
starting with its count, ``[3/10] validate roster: ...``. Through :class:`Progress` those
lines are printed as they are (logs, CI and pipes get exactly these lines) and, only when
the stream is a terminal, a bar below them shows how far the command has come and for how
long it has run; it is redrawn in place and erased at the end. No dependency is needed.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TextIO

COUNTED = re.compile(r"^\[(\d+)/(\d+)\]")
WIDTH = 30


class Progress:
    """Feed it a command's progress lines; on a terminal it also draws a bar."""

    def __init__(self, label: str, stream: TextIO | None = None, tty: bool | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self.done, self.total = 0, 0
        self.started = time.monotonic()
        self._drawn = False

    def __call__(self, message: str) -> None:
        """Print one progress line; `[i/n]` at its start moves the bar to step i of n."""
        m = COUNTED.match(message)
        if m:
            self.done, self.total = int(m.group(1)), int(m.group(2))
        self._erase()
        print(message, file=self.stream, flush=True)
        self._draw()

    def bar(self) -> str:
        """The bar as text, e.g. ``run [#########.....] 6/10 12 s``."""
        seconds = time.monotonic() - self.started
        if not self.total:
            return f"{self.label} ... {seconds:.0f} s"
        filled = round(WIDTH * min(self.done, self.total) / self.total)
        return (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{self.done}/{self.total} {seconds:.0f} s"
        )

    def _draw(self) -> None:
        if self.tty:
            self.stream.write(self.bar())
            self.stream.flush()
            self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def close(self) -> None:
        """Erase the bar (the lines stay)."""
        self._erase()
        self.stream.flush()

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
