"""A live progress line for ``progress=True`` (rich), silent otherwise."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text
from torch import Tensor

from taylorch.solve.methods.base import State
from taylorch.solve.result import Status

__all__ = ["ProgressLine"]


class ProgressLine:
    """Shows iteration, f and ||g|| (for a batch: how many problems have stopped)."""

    def __init__(self, *, enabled: bool, name: str, batch_size: int):
        self.enabled = enabled
        self.name = name
        self.batch_size = batch_size
        self._live: Live | None = None

    def __enter__(self) -> ProgressLine:
        if self.enabled:
            self._live = Live(Text(f"{self.name}: starting"), console=Console(stderr=True))
            self._live.__enter__()
        return self

    def update(self, nit: Tensor, state: State, status: Tensor) -> None:
        if self._live is None:
            return
        gnorm = state.g.abs().amax(dim=-1) if state.g is not None else None
        if self.batch_size == 1:
            line = f"{self.name}  iter {int(nit[0])}  f = {float(state.f[0]):.6e}"
            if gnorm is not None:
                line += f"  |g| = {float(gnorm[0]):.3e}"
        else:
            done = int((status != Status.RUNNING).sum())
            converged = int(((status == Status.CONVERGED) | (status == Status.SMALL_STEP)).sum())
            line = (
                f"{self.name}  iter {int(nit.max())}  stopped {done}/{self.batch_size}"
                f"  converged {converged}  max f = {float(state.f.max()):.3e}"
            )
        self._live.update(Text(line))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
