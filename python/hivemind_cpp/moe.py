"""Mixture-of-experts layers whose experts live on remote servers (hivemind's
``RemoteMixtureOfExperts`` and ``RemoteSwitchMixtureOfExperts``, same keyword arguments).

The gating network (``proj``) and the Switch layer's utilization buffer are ordinary parameters
and buffers of these modules, so optimizers, ``state_dict`` and ``.to()`` treat them as usual. Each
forward hands them to the C++ layer, which runs the beam search over the DHT, sends every chosen
expert one request with all the samples routed to it, waits by the k_min rules with the GIL
released, masks experts that failed or were late, and builds the autograd graph (gradients of
failed experts are treated as constants, as hivemind does).
"""

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _C
from .dht import DHT


def _grid(grid_size) -> list:
    try:
        grid = [int(g) for g in grid_size]
    except TypeError:
        raise TypeError(f"grid_size must be a sequence of ints, got {grid_size!r}") from None
    if not grid or any(g <= 0 for g in grid):
        raise ValueError(f"grid_size must be non-empty and positive, got {tuple(grid_size)}")
    return grid


def _timeout(name: str, value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value}")
    return value


# The keyword arguments both layers take and hand to _MoEBase (each layer lists them in its own
# signature, with its own defaults, as hivemind does).
_SHARED_ARGUMENTS = ("in_features", "grid_size", "dht", "k_best", "k_min", "forward_timeout",
                     "timeout_after_k_min", "backward_k_min", "backward_timeout", "uid_prefix",
                     "allow_broadcasting", "detect_anomalies", "allow_zero_outputs", "output_shape")


class _MoEBase(nn.Module):
    def __init__(self, *, in_features, grid_size, dht, k_best, k_min, forward_timeout,
                 timeout_after_k_min, backward_k_min, backward_timeout, uid_prefix,
                 allow_broadcasting, detect_anomalies, allow_zero_outputs, output_shape):
        super().__init__()
        if not isinstance(dht, DHT):
            raise TypeError(f"dht must be a hivemind_cpp.DHT, got {type(dht).__name__}")
        in_features = int(in_features)
        if in_features <= 0:
            raise ValueError(f"in_features must be positive, got {in_features}")
        grid = _grid(grid_size)
        k_best, k_min, backward_k_min = int(k_best), int(k_min), int(backward_k_min)
        if k_best <= 0:
            raise ValueError(f"k_best must be positive, got {k_best}")
        if not 0 <= k_min <= k_best:
            raise ValueError(f"k_min must be in [0, k_best={k_best}], got {k_min}")
        if not 0 <= backward_k_min <= k_best:
            raise ValueError(f"backward_k_min must be in [0, k_best={k_best}], got {backward_k_min}")
        if not isinstance(uid_prefix, str):
            raise TypeError(f"uid_prefix must be a str, got {uid_prefix!r}")
        if not uid_prefix.rstrip("."):
            raise ValueError("uid_prefix names the experts' grid, e.g. 'expert.' for uids "
                             "'expert.0.3': it cannot be empty")
        self.dht, self.grid_size, self.uid_prefix = dht, tuple(grid), uid_prefix
        self.k_best, self.k_min, self.backward_k_min = k_best, k_min, backward_k_min
        self.forward_timeout = _timeout("forward_timeout", forward_timeout)
        self.timeout_after_k_min = _timeout("timeout_after_k_min", timeout_after_k_min)
        self.backward_timeout = _timeout("backward_timeout", backward_timeout)
        self.allow_broadcasting = bool(allow_broadcasting)
        self.detect_anomalies = bool(detect_anomalies)
        self.allow_zero_outputs = bool(allow_zero_outputs)
        self.proj = nn.Linear(in_features, sum(grid))  # the gating network, hivemind's name
        self._options = _C._MoEOptions(
            in_features=in_features, grid_size=grid, uid_prefix=uid_prefix, k_best=k_best,
            k_min=k_min, forward_timeout=self.forward_timeout,
            timeout_after_k_min=self.timeout_after_k_min, backward_k_min=backward_k_min,
            backward_timeout=self.backward_timeout, detect_anomalies=self.detect_anomalies,
            allow_zero_outputs=self.allow_zero_outputs,
            output_shape=None if output_shape is None else [int(d) for d in output_shape])

    def _check_input(self, input, args, kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward takes the experts' inputs positionally; "
                            f"got keyword argument(s) {sorted(kwargs)}")
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(input).__name__}")
        if input.dim() < 2 or input.shape[-1] != self.proj.in_features:
            raise ValueError(f"{type(self).__name__}: input must be [batch, ..., "
                             f"{self.proj.in_features}], got {list(input.shape)}")
        for i, arg in enumerate(args, start=1):
            if not isinstance(arg, torch.Tensor):
                raise TypeError(f"{type(self).__name__}.forward: input {i} is a "
                                f"{type(arg).__name__}, expected a torch.Tensor")

    def _flatten(self, input, args=()):
        """The gated input and the experts' other inputs as [batch, ...] tensors. hivemind's
        allow_broadcasting: every position of [*, in_features] is routed on its own, so every other
        input must have the same leading dimensions, flattened alike."""
        if not (self.allow_broadcasting and input.dim() > 2):
            return [input, *args], None
        leading = input.shape[:-1]
        flat = [input.reshape(-1, input.shape[-1])]
        for i, arg in enumerate(args, start=1):
            if arg.shape[:len(leading)] != leading:
                raise ValueError(f"{type(self).__name__}: input {i} has shape {list(arg.shape)}; "
                                 f"it must start with the gated input's leading dimensions "
                                 f"{list(leading)}")
            flat.append(arg.reshape(-1, *arg.shape[len(leading):]))
        return flat, leading

    @staticmethod
    def _unflatten(output, leading):
        return output if leading is None else output.reshape(*leading, *output.shape[1:])

    def last_routing(self) -> Tuple[list, torch.Tensor]:
        """The last forward's routing: per sample the chosen uids (best first), and a
        ``[batch, k]`` bool mask of which of them answered."""
        return self._impl.routing()

    def extra_repr(self) -> str:
        return (f"grid_size={self.grid_size}, uid_prefix={self.uid_prefix!r}, "
                f"k_best={self.k_best}, k_min={self.k_min}")


class RemoteMixtureOfExperts(_MoEBase):
    """hivemind's ``RemoteMixtureOfExperts``: a gating ``Linear(in_features, sum(grid_size))``
    scores the grid; beam search over the DHT picks each sample's ``k_best`` live experts among
    ``uid_prefix + "i.j..."``; the output is the softmax-weighted average of the experts that
    answered. Waits until every sample has ``k_min`` answers, then at most ``timeout_after_k_min``
    more, never past ``forward_timeout`` (``None``: 60 s, as every wait has a deadline); the backward
    likewise with ``backward_k_min`` and ``backward_timeout``. A sample short of ``k_min`` raises
    (``HivemindTimeoutError`` when experts were late) unless ``allow_zero_outputs``."""

    def __init__(self, *, in_features: int, grid_size: Sequence[int], dht: DHT, k_best: int,
                 k_min: int = 1, forward_timeout: Optional[float] = None,
                 timeout_after_k_min: Optional[float] = None, backward_k_min: int = 1,
                 backward_timeout: Optional[float] = None, uid_prefix: str = "",
                 allow_broadcasting: bool = True, detect_anomalies: bool = False,
                 allow_zero_outputs: bool = False, output_shape: Optional[Sequence[int]] = None):
        arguments = locals()
        super().__init__(**{name: arguments[name] for name in _SHARED_ARGUMENTS})
        # The C++ layer builds a gate of its own that is never used: keep it off torch's global RNG,
        # so that seeding gives the same gate (proj) as hivemind-cpp's C++ layer and as hivemind.
        with torch.random.fork_rng(devices=[]):
            self._impl = _C._MixtureOfExperts(dht._handle, self._options)

    def forward(self, input: torch.Tensor, *args: torch.Tensor, **kwargs):
        """``input`` [batch, ..., in_features] is gated; the chosen experts get it and ``args``
        (their other inputs, each with ``input``'s leading dimensions), in this order. Returns the
        averaged output, or a tuple of them for experts of several outputs."""
        self._check_input(input, args, kwargs)
        flat, leading = self._flatten(input, args)
        outputs = [self._unflatten(output, leading)
                   for output in self._impl.forward(flat, self.proj.weight, self.proj.bias)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class RemoteSwitchMixtureOfExperts(_MoEBase):
    """hivemind's ``RemoteSwitchMixtureOfExperts`` (Switch-Transformer routing): multiplicative
    jitter and grid dropout in training mode, per-dimension softmax, output = probability-weighted
    expert outputs plus the input (residual). ``forward`` returns ``(output, balancing_loss)``; add
    the loss (scaled) to the training loss to keep the experts evenly used. For experts of several
    outputs, ``output`` is a tuple of them, each averaged alike, the input added to the first (as
    hivemind's switch does)."""

    def __init__(self, *, in_features: int, grid_size: Sequence[int], dht: DHT,
                 utilization_alpha: float = 0.9, grid_dropout: float = 1.0,
                 jitter_eps: float = 1e-2, k_best: int = 1, k_min: int = 0,
                 backward_k_min: int = 0, allow_zero_outputs: bool = True,
                 forward_timeout: Optional[float] = None,
                 timeout_after_k_min: Optional[float] = None,
                 backward_timeout: Optional[float] = None, uid_prefix: str = "",
                 allow_broadcasting: bool = True, detect_anomalies: bool = False,
                 output_shape: Optional[Sequence[int]] = None):
        arguments = locals()
        super().__init__(**{name: arguments[name] for name in _SHARED_ARGUMENTS})
        if not 0 < float(grid_dropout) <= 1:
            raise ValueError(f"grid_dropout is a keep-probability in (0, 1], got {grid_dropout}")
        if not 0 <= float(utilization_alpha) < 1:
            raise ValueError(f"utilization_alpha must be in [0, 1), got {utilization_alpha}")
        if float(jitter_eps) < 0:
            raise ValueError(f"jitter_eps must be >= 0, got {jitter_eps}")
        with torch.random.fork_rng(devices=[]):  # as in RemoteMixtureOfExperts
            self._impl = _C._SwitchMixtureOfExperts(
                dht._handle, self._options, utilization_alpha=float(utilization_alpha),
                grid_dropout=float(grid_dropout), jitter_eps=float(jitter_eps))
        self.register_buffer("grid_utilization", self._impl.initial_grid_utilization())

    def forward(self, input: torch.Tensor, *args: torch.Tensor,
                **kwargs) -> Tuple[Union[torch.Tensor, Tuple[torch.Tensor, ...]], torch.Tensor]:
        """As :meth:`RemoteMixtureOfExperts.forward`; the residual is ``input``, added to the
        (first) output."""
        self._check_input(input, args, kwargs)
        flat, leading = self._flatten(input, args)
        outputs, loss = self._impl.forward(flat, self.proj.weight, self.proj.bias,
                                           self.grid_utilization, self.training)
        outputs = [self._unflatten(output, leading) for output in outputs]
        return (outputs[0] if len(outputs) == 1 else tuple(outputs)), loss
