"""RemoteExpert: one expert on a remote server, called like a local torch module."""

from typing import Optional

import torch
from torch import nn

from . import _C


class RemoteExpert(nn.Module):
    """A module that runs a remote expert's forward and backward (hivemind's ``RemoteExpert``).

    ``RemoteExpert(uid, endpoint)``: ``endpoint`` is ``"host:port"`` (hivemind's form, dialed over
    TCP, as :class:`Server` listens by default) or the project's ``"tcp://host:port"`` /
    ``"ucx://host:port"`` / ``"auto://host:port"``, e.g. a server's ``.endpoint``. The forward sends the whole batch in one request; the backward sends the
    inputs with the output gradient, so the server applies its optimizer step. Both wait at most
    their timeout, with the GIL released, and raise :class:`hivemind_cpp.HivemindError` subclasses
    (``HivemindTimeoutError`` is a ``TimeoutError``) naming the expert and the reason.
    """

    def __init__(self, uid: str, endpoint: str, *, forward_timeout: float = 30.0,
                 backward_timeout: float = 30.0, detect_anomalies: bool = False):
        super().__init__()
        if not isinstance(uid, str) or not uid:
            raise TypeError(f"RemoteExpert: uid must be a non-empty str, got {uid!r}")
        if not isinstance(endpoint, str):
            raise TypeError(f"RemoteExpert: endpoint must be a str, got {endpoint!r}")
        if "://" not in endpoint:
            endpoint = "tcp://" + endpoint
        self._impl = _C._RemoteExpert(uid, endpoint, float(forward_timeout),
                                      float(backward_timeout), bool(detect_anomalies))
        self._info: Optional[dict] = None

    @property
    def uid(self) -> str:
        return self._impl.uid

    @property
    def endpoint(self) -> str:
        return self._impl.endpoint

    @property
    def info(self) -> dict:
        """The expert's description, fetched from its server once: ``uid``, ``expert_cls``,
        ``forward_schema`` and ``outputs_schema`` (per tensor: per-sample ``shape``, ``dtype``,
        wire ``compression``), ``max_batch_size``."""
        if self._info is None:
            self._info = self._impl.info(10.0)
        return self._info

    def forward(self, *args: torch.Tensor, **kwargs):
        """``forward(x)``, or ``forward(x, mask, ...)`` for an expert of several inputs: batch-first
        tensors with one batch size, in the order of the expert's ``forward_schema``.
        Differentiable with respect to every floating input (ids and masks get no gradient).
        Returns the output, or a tuple of outputs for an expert of several, shaped as the expert's
        ``outputs_schema`` (read from ``info`` before the first call): floating outputs in the
        dtype of the first floating input, integer ones in their own."""
        if kwargs or not args:
            raise TypeError("RemoteExpert.forward takes the expert's inputs as batch-first tensors, "
                            f"positionally; got {len(args)} positional and {len(kwargs)} keyword "
                            "argument(s)")
        for i, x in enumerate(args):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"RemoteExpert.forward: input {i} is a {type(x).__name__}, "
                                "expected a torch.Tensor")
        outputs = self._impl.forward(list(args))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def extra_repr(self) -> str:
        return f"uid={self.uid!r}, endpoint={self.endpoint!r}"
