"""Server: the C++ expert server, run in this process (hivemind's ``Server.create``)."""

import atexit
import functools
import inspect
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from . import _C
from . import expert_class as _expert_class
from .dht import DHT, _listen_address, _peer_address

# Servers still running at interpreter exit are shut down by atexit, not by a destructor during
# interpreter teardown.
_live_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _shutdown_live_servers():
    for server in list(_live_servers):
        try:
            server.shutdown()
        except Exception:
            pass


# The optimizers the C++ server implements, and the hyperparameters it takes from them.
_OPTIMIZERS = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}
_TAKEN = {"sgd": {"lr", "momentum", "weight_decay"},
          "adam": {"lr", "weight_decay", "betas", "eps"},
          "adamw": {"lr", "weight_decay", "betas", "eps"}}


def _optimizer_options(optim_cls) -> dict:
    """torch.optim.SGD / Adam / AdamW (or a functools.partial of one) -> the C++ optimizer's
    name and hyperparameters; the class's own defaults fill what the partial does not set."""
    if optim_cls is None:
        return {"optimizer": "none"}
    kwargs = {}
    cls = optim_cls
    if isinstance(optim_cls, functools.partial):
        if optim_cls.args:
            raise ValueError("optim_cls: give a partial's hyperparameters by keyword, e.g. "
                             "functools.partial(torch.optim.SGD, lr=0.1)")
        cls, kwargs = optim_cls.func, dict(optim_cls.keywords)
    name = _OPTIMIZERS.get(cls)
    if name is None:
        raise ValueError(f"optim_cls {optim_cls!r} is not supported by the C++ server: use "
                         "torch.optim.SGD, torch.optim.Adam or torch.optim.AdamW (or a "
                         "functools.partial of one), or None")
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise ValueError(f"optim_cls: {cls.__name__} has no argument(s) {sorted(unknown)}")
    values = dict(defaults, **kwargs)
    # Anything the C++ optimizer cannot honour must still be at its default.
    for key, value in values.items():
        if key not in _TAKEN[name] and key in kwargs and value != defaults[key]:
            raise ValueError(f"optim_cls: {cls.__name__}({key}={value!r}) is not supported by the "
                             f"C++ server (it takes {sorted(_TAKEN[name])})")
    lr = values["lr"]
    if not isinstance(lr, (int, float)):
        raise ValueError(f"optim_cls: lr must be a number, got {lr!r}")
    options = {"optimizer": name, "lr": float(lr),
               "weight_decay": float(values.get("weight_decay", 0.0))}
    if name == "sgd":
        options["momentum"] = float(values.get("momentum", 0.0))
        if values.get("nesterov") or values.get("dampening", 0):
            raise ValueError("optim_cls: SGD with nesterov or dampening is not supported by the "
                             "C++ server")
    else:
        betas, eps = values.get("betas", (0.9, 0.999)), values.get("eps", 1e-8)
        try:
            beta1, beta2 = (float(b) for b in betas)
            eps = float(eps)
        except (TypeError, ValueError):
            raise ValueError(f"optim_cls: {cls.__name__} needs betas as two numbers and eps as a "
                             f"number, got betas={betas!r}, eps={eps!r}") from None
        options.update(beta1=beta1, beta2=beta2, eps=eps)  # the C++ server checks their ranges
    return options


def _sample_inputs(value, dtypes) -> str:
    """(512,) or [(16, 512), (16,), ()], with a dtype for all or one per input, -> the C++
    server's --sample_input_shape text, "float32:16,512;int64:16;bool:" (() is one value per
    sample)."""
    shapes = list(value)
    if shapes and all(isinstance(d, int) and not isinstance(d, bool) for d in shapes):
        shapes = [shapes]  # one input
    result = []
    for shape in shapes:
        dims = list(shape) if isinstance(shape, (list, tuple, torch.Size)) else None
        if dims is None or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                   for d in dims):
            raise ValueError("sample_input_shape must be a shape of positive ints (without the "
                             "batch dimension) or a list of such shapes, got " + repr(value))
        result.append(dims)
    if dtypes is None:
        dtypes = [torch.float32] * len(result)
    elif isinstance(dtypes, torch.dtype):
        dtypes = [dtypes] * len(result)
    else:
        dtypes = list(dtypes)
    if len(dtypes) != len(result) or not all(d in _expert_class.WIRE_DTYPES for d in dtypes):
        raise ValueError(f"sample_input_dtype must be one of "
                         f"{', '.join(map(str, _expert_class.WIRE_DTYPES))} or a list of "
                         f"{len(result)} of them (one per input), got {dtypes!r}")
    return ";".join(f"{_expert_class.WIRE_DTYPES[d]}:{','.join(map(str, dims))}"
                    for d, dims in zip(dtypes, result))


def _positive_int(name, value, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Server:
    """A running C++ expert server hosting experts in this process, on its own threads.

    Create it with :meth:`Server.create`. ``endpoint`` is where trainers call it (give it to
    :class:`RemoteExpert`), ``dht`` a handle on its DHT node (its address is what other peers give
    as ``initial_peers``). ``shutdown()`` drains it: queued requests finish, new ones are refused,
    experts are checkpointed when ``checkpoint_dir`` is set, every thread is joined. Use it as a
    context manager to shut it down on exit.
    """

    def __init__(self, handle, grace_period: float):
        self._handle = handle
        self._grace_period = grace_period
        self._dht = None
        _live_servers.add(self)

    @classmethod
    def create(cls, listen_on: str = "0.0.0.0:*", num_experts: Optional[int] = None,
               expert_uids: Optional[Sequence[str]] = None, expert_pattern: Optional[str] = None,
               expert_cls: str = "ffn", hidden_dim: int = 1024, optim_cls=torch.optim.Adam,
               scheduler: str = "none", num_warmup_steps: Optional[int] = None,
               num_training_steps: Optional[int] = None, clip_grad_norm: Optional[float] = None,
               num_handlers: Optional[int] = None, min_batch_size: int = 1,
               max_batch_size: int = 4096, device: Optional[str] = None,
               initial_peers: Sequence[str] = (), checkpoint_dir: Optional[str] = None,
               compression: str = "none", update_period: float = 30,
               expiration: Optional[float] = None, stats_report_interval: Optional[float] = None,
               *, start: bool, seed: Optional[int] = None, batch_timeout: float = 0.0,
               grace_period: float = 30.0, cpu_bind: str = "auto",
               intra_op_threads: int = 1, detect_anomalies: bool = False,
               seq_len: int = 128, swarm_key_file: Optional[str] = None,
               custom_module_path: Optional[str] = None, module_path: Optional[str] = None,
               reinit: Optional[bool] = None, sample_input_shape=None,
               sample_input_dtype=None) -> "Server":
        """hivemind's ``Server.create`` keywords, mapped onto the C++ server's options:

        * experts: ``expert_uids``, or ``expert_pattern`` (``"ffn.[0:4].[0:8]"``) with
          ``num_experts`` of its uids; ``expert_cls`` one of ffn, ffn_v08, transformer, nop, a
          class registered with :func:`register_expert_class` (in this process, or in the file
          ``custom_module_path`` names, as in hivemind), or ``torchscript`` with ``module_path``
          (a file from :func:`save_expert_module`), ``reinit`` (re-initialize each expert from
          ``seed`` and its uid instead of the file's weights; default: on for registered classes,
          off for ``torchscript``) and ``sample_input_shape`` (the per-sample input shape(s),
          overriding the file's, with ``sample_input_dtype``: a torch.dtype for every input or
          one per input, default float32);
        * ``optim_cls``: torch.optim.SGD / Adam / AdamW or a functools.partial of one (lr,
          weight_decay, SGD's momentum, Adam's and AdamW's betas and eps); None: no optimizer;
        * ``scheduler``: ``"none"`` or ``"linear"`` (warm-up over ``num_warmup_steps``, linear
          decay to 0 at ``num_training_steps``);
        * ``compression``: wire compression of activations and gradients (none, float16,
          bfloat16, block_absmax_u8, ...);
        * ``listen_on``: ``"host:port"`` (``*``: any port) or ``"<tcp|ucx|auto>://host:port"``;
        * ``num_handlers`` is accepted for hivemind's signature: the C++ server answers on one I/O
          thread, so it has no handler processes to size;
        * project extras: ``seed`` (initial weights), ``batch_timeout`` (seconds a batch waits for
          ``min_batch_size``), ``grace_period``, ``cpu_bind``, ``intra_op_threads``,
          ``detect_anomalies``, ``seq_len`` (the sequence length of ``transformer`` experts).

        Unknown keywords are a TypeError; bad values a ValueError naming the option.
        """
        o = _C._ServerOptions()
        if expert_uids is not None:
            if isinstance(expert_uids, str):
                raise TypeError("expert_uids must be a sequence of str, not one str")
            o.expert_uids = [str(u) for u in expert_uids]
        if expert_pattern is not None:
            o.expert_pattern = str(expert_pattern)
        o.num_experts = _positive_int("num_experts", num_experts) or 0
        o.hidden_dim = _positive_int("hidden_dim", hidden_dim, allow_none=False)
        if custom_module_path is not None:
            _expert_class.add_custom_models_from_file(custom_module_path)
        module_dir = None  # where a registered class is exported for the C++ server to load
        if _expert_class.is_registered(str(expert_cls)):
            if module_path is not None:
                raise ValueError(f"module_path: expert_cls {expert_cls!r} is a registered class; "
                                 "give module_path only with expert_cls='torchscript'")
            module_dir = tempfile.mkdtemp(prefix="hivemind_cpp-expert-")
            try:
                module_path = str(_expert_class.export_expert_class(
                    str(expert_cls), o.hidden_dim, Path(module_dir) / f"{expert_cls}.pt"))
            except BaseException:
                shutil.rmtree(module_dir, ignore_errors=True)
                raise
            expert_cls, reinit = "torchscript", True if reinit is None else reinit
        o.expert_cls = str(expert_cls)
        if module_path is not None:
            o.module_path = str(module_path)
        o.reinit = bool(reinit)
        if sample_input_shape is not None:
            o.sample_inputs = _sample_inputs(sample_input_shape, sample_input_dtype)
        elif sample_input_dtype is not None:
            raise ValueError("sample_input_dtype is given without sample_input_shape")
        o.seq_len = _positive_int("seq_len", seq_len, allow_none=False)
        for key, value in _optimizer_options(optim_cls).items():
            setattr(o, key, value)
        if scheduler == "linear":
            if num_training_steps is None:
                raise ValueError("scheduler='linear' needs num_training_steps")
            o.warmup_steps = _positive_int("num_warmup_steps", num_warmup_steps) or 0
            o.total_steps = _positive_int("num_training_steps", num_training_steps)
        elif scheduler not in ("none", None):
            raise ValueError(f"scheduler {scheduler!r} is unknown: use 'none' or 'linear'")
        if clip_grad_norm is not None:
            if not float(clip_grad_norm) > 0:
                raise ValueError(f"clip_grad_norm must be positive or None, got {clip_grad_norm}")
            o.clip_grad_norm = float(clip_grad_norm)
        _positive_int("num_handlers", num_handlers)
        o.min_batch_size = _positive_int("min_batch_size", min_batch_size, allow_none=False)
        o.max_batch_size = _positive_int("max_batch_size", max_batch_size, allow_none=False)
        if batch_timeout < 0:
            raise ValueError(f"batch_timeout must be >= 0 seconds, got {batch_timeout}")
        o.batch_timeout_ms = int(round(float(batch_timeout) * 1000))
        o.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(initial_peers, str):
            initial_peers = [initial_peers]
        o.initial_peers = [_peer_address(p) for p in initial_peers]
        o.checkpoint_dir = "" if checkpoint_dir is None else str(checkpoint_dir)
        if swarm_key_file is not None:  # the server's listener and DHT, and this process's clients
            _C._use_swarm_key_file(str(swarm_key_file))
            o.swarm_key_file = str(swarm_key_file)
        o.compression = getattr(compression, "name", compression).lower()
        o.update_period = float(update_period)
        o.expiration = 0.0 if expiration is None else float(expiration)
        o.stats_report_interval = 0.0 if stats_report_interval is None else float(stats_report_interval)
        address = _listen_address(listen_on)
        scheme, rest = address.split("://", 1)
        host, port = rest.rsplit(":", 1)
        if not port.isdigit():
            raise ValueError(f"listen_on {listen_on!r}: the port must be a number or *")
        o.transport, o.host, o.port = scheme, host, int(port)
        if seed is not None:
            o.seed = int(seed)
        o.grace_period = float(grace_period)
        o.cpu_bind = str(cpu_bind)
        o.intra_op_threads = _positive_int("intra_op_threads", intra_op_threads, allow_none=False)
        o.detect_anomalies = bool(detect_anomalies)
        try:
            o.validate()  # every problem at once, each naming the option
            server = cls(_C._Server(o), o.grace_period)
        finally:
            # The C++ server loaded its experts (one deep copy each) when it was built, so the
            # exported file is not needed any more, whether that worked or not.
            if module_dir is not None:
                shutil.rmtree(module_dir, ignore_errors=True)
        if start:
            server.run_in_background()
        return server

    def run_in_background(self, await_ready: bool = True, timeout: Optional[float] = None) -> None:
        """Starts serving and declares the experts in the DHT (once, before returning)."""
        self._live().start()

    def _live(self):
        if self._handle is None or not self._handle.alive:
            raise RuntimeError("this server was shut down")
        return self._handle

    @property
    def endpoint(self) -> str:
        """Where trainers call, e.g. ``"tcp://10.0.0.5:41234"``."""
        return self._handle.endpoint

    @property
    def dht(self) -> Optional[DHT]:
        """A handle on this server's DHT node (it shares the server's port)."""
        if self._dht is None:
            handle = self._live().dht()
            self._dht = None if handle is None else DHT._attach(handle)
        return self._dht

    @property
    def expert_uids(self) -> List[str]:
        return self._live().expert_uids()

    @property
    def is_alive(self) -> bool:
        return self._handle is not None and self._handle.alive

    def stats(self) -> list:
        """Per expert: batches and samples served forward and backward, tasks queued now."""
        return self._live().stats()

    def metrics_text(self) -> str:
        """The server's metrics in Prometheus text format."""
        return self._live().metrics_text()

    def shutdown(self, grace_period: Optional[float] = None) -> None:
        """Drains (finishing queued requests), checkpoints, and joins every thread. Idempotent."""
        if self._dht is not None:
            self._dht.shutdown()
            self._dht = None
        if self._handle is not None and self._handle.alive:
            self._handle.shutdown(self._grace_period if grace_period is None else float(grace_period))
        _live_servers.discard(self)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "running" if self.is_alive else "shut down"
        return f"Server({self._handle.endpoint!r}, {state})"
