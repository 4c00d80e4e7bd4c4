"""Averager: keeps tensors in step with every peer averaging under the same key (docs/averaging.md).

The counterpart of hivemind's ``DecentralizedAverager``: ``Averager(model.parameters(), dht=dht,
prefix="run42.dense")``, then ``averager.step()`` now and then replaces every tensor, in place, by
the mean over the peers that took part in the round. A round that fails (a peer died or stalled, this
peer came late) leaves the tensors exactly as they were and says why; training goes on and the next
round forms without the peer that failed. Rounds run in C++ with the GIL released.
"""

from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Union

import torch

from . import _C
from .dht import DHT, _listen_address


class RoundReport(NamedTuple):
    """What one averaging round did."""

    round: int
    ok: bool                 # every tensor now holds the group mean; False: they are unchanged
    backend: str             # "transport" or "nccl" ("" when no group formed)
    members: List[str]       # the members' endpoints, leader first
    bytes_sent: int
    bytes_received: int
    elapsed: float           # seconds
    failure: str             # why the round failed ("" when ok)
    fallbacks: List[str]     # backends tried first in this round and why they failed

    def __bool__(self) -> bool:
        return self.ok


def _report(d: Dict[str, Any]) -> RoundReport:
    return RoundReport(**d)


class RoundFuture:
    """A round started with ``step(wait=False)``; the tensors must not be written until it is done."""

    def __init__(self, pending):
        self._pending = pending

    def done(self) -> bool:
        return self._pending.done()

    def result(self, timeout: Optional[float] = None) -> RoundReport:
        d = self._pending.result(timeout)
        if d is None:
            raise TimeoutError(f"the averaging round did not finish within {timeout} s")
        return _report(d)


class Averager:
    """Averages ``averaged_tensors`` in place with the peers averaging under ``prefix``.

    Membership comes from ``dht`` (every peer declares itself under ``prefix``; a round takes the live
    ones) or, instead, from the launcher: ``launcher={"bootstrap_file": PATH}`` reads the rank and size
    from Slurm/OpenMPI/PMI variables (or ``"rank"``/``"size"`` given), rank 0 leads. Tensors: float32,
    float16 or bfloat16, contiguous, all on one device; CUDA tensors average over NCCL where every
    member has it and its own GPU, else over the project's transport.

    ``min_matchmaking_time``: seconds a leader waits for the others to join a round;
    ``allreduce_timeout``: seconds a whole round may take (``step()`` returns by then);
    ``compression``: ``"block_absmax_u8"`` sends the transport backend's parts as 8-bit codes
    (docs/averaging.md gives the error bound); ``listen_on``: where the averaging methods are served.
    """

    def __init__(self, averaged_tensors: Iterable[torch.Tensor], dht: Optional[DHT] = None, *,
                 prefix: str, start: bool = True, launcher: Optional[Dict[str, Any]] = None,
                 listen_on: str = "127.0.0.1:*", min_matchmaking_time: float = 3.0,
                 allreduce_timeout: float = 30.0, declaration_ttl: float = 60.0,
                 compression: Optional[str] = None):
        if not start:
            raise ValueError("Averager starts when created (start=False is not supported)")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty str: the key peers average under")
        if (dht is None) == (launcher is None):
            raise ValueError("give exactly one of dht= (membership through the DHT) and launcher= "
                             "(membership from Slurm/mpirun)")
        if launcher is not None:
            unknown = set(launcher) - {"rank", "size", "bootstrap_file"}
            if unknown:
                raise ValueError(f"launcher takes rank, size and bootstrap_file; unknown: {sorted(unknown)}")
        self.averaged_tensors = list(averaged_tensors)
        for i, t in enumerate(self.averaged_tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"averaged_tensors[{i}] is a {type(t).__name__}, not a torch.Tensor")
        self.prefix = prefix
        self._handle = _C._Averager(
            [t.detach() for t in self.averaged_tensors], prefix,
            dht._node() if dht is not None else None, launcher, _listen_address(listen_on),
            float(allreduce_timeout), float(min_matchmaking_time), float(declaration_ttl),
            compression or "none")

    @property
    def endpoint(self) -> str:
        """Where this peer's averaging methods are served."""
        return self._handle.endpoint

    @property
    def is_alive(self) -> bool:
        return self._handle.alive

    def step(self, wait: bool = True,
             timeout: Optional[float] = None) -> Union[RoundReport, RoundFuture]:
        """Runs one round. ``wait=True``: returns its RoundReport (falsy when the round failed).
        ``wait=False``: returns a RoundFuture at once; rounds run one at a time, in order."""
        if not wait:
            return RoundFuture(self._handle.step_async())
        if timeout is None:
            return _report(self._handle.step())
        return RoundFuture(self._handle.step_async()).result(timeout)

    def shutdown(self) -> None:
        """Stops serving; rounds not started end with ok=False. Idempotent."""
        self._handle.shutdown()

    def __enter__(self) -> "Averager":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


DecentralizedAverager = Averager  # hivemind's name
