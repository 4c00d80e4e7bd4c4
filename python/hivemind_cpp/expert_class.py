"""Your own expert classes: a Python ``nn.Module`` hosted by the C++ server as TorchScript.

hivemind hosts a custom expert by importing its Python class into the server
(``register_expert_class`` + ``--custom_module_path``). The C++ server runs no Python: the module is
compiled to TorchScript (``torch.jit.script``, or ``torch.jit.trace`` on its sample input when
scripting fails) and saved with a description of its inputs; the server's ``torchscript`` class
loads that file with LibTorch and trains a deep copy per expert. This module does the Python half:

* ``@register_expert_class(name, sample_input)`` over an ``nn.Module`` class, as in hivemind, so
  ``Server.create(expert_cls=name, ...)`` hosts it;
* ``save_expert_module(module, sample_input, path)`` writes the ``.pt`` file ``hivemind-server
  --expert_cls torchscript --module_path`` reads (``python3 -m hivemind_cpp.export_expert`` does the
  same from the command line);
* ``add_custom_models_from_file(path)`` imports a file of such classes (hivemind's
  ``custom_module_path``).

File format (docs/experts.md): a TorchScript archive whose extra file ``hivemind_expert.json`` is
``{"format": 1, "inputs": [{"shape": [...], "dtype": "float32"}, ...]}``, one entry per input of
``forward``, shapes without the batch dimension. Inputs and outputs may be of any dtype the wire
carries (:data:`WIRE_DTYPES`): floating ones are differentiable and compressed as the server says,
the others (token ids, masks) travel raw and get no gradient.
"""

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple, Type, Union

import torch
from torch import nn

from . import _C

SampleInput = Callable[[int, int], Union[torch.Tensor, Sequence[torch.Tensor]]]

METADATA_FILE = "hivemind_expert.json"
METADATA_FORMAT = 1
# The tensor types an expert's inputs and outputs may have, by their names on the wire.
WIRE_DTYPES: Dict[torch.dtype, str] = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.uint8: "uint8", torch.bool: "bool",
}
# The batch size of the sample a registered class's sample_input is asked for when it is exported:
# two rows, so that a module which drops or broadcasts the batch dimension is caught.
_EXPORT_BATCH_SIZE = 2


class ExpertClass(NamedTuple):
    module_cls: Type[nn.Module]
    sample_input: SampleInput


_registered: Dict[str, ExpertClass] = {}


def register_expert_class(name: str, sample_input: SampleInput):
    """Registers an ``nn.Module`` class as an expert class named ``name`` (hivemind's decorator).

    ``sample_input(batch_size, hidden_dim)`` returns a tensor (or a tuple of tensors) of the shapes
    ``forward`` takes; the class is built as ``module_cls(hidden_dim)``. ``Server.create(expert_cls=
    name, hidden_dim=...)`` then hosts it in the C++ runtime, each expert re-initialized from the
    server's seed and its uid (``reinit``). ``name`` must not be a class the C++ side already has
    (``ffn``, ``ffn_v08``, ``transformer``, ``nop``, ``torchscript`` or a C++-registered one) nor one
    registered here before.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_expert_class: the name must be a non-empty str, got {name!r}")
    if name in _C._expert_classes():
        raise ValueError(f"register_expert_class: {name!r} is a built-in expert class; pick "
                         f"another name (taken: {', '.join(_C._expert_classes())})")
    if name in _registered:
        raise ValueError(f"register_expert_class: {name!r} is already registered "
                         f"(by {_registered[name].module_cls.__qualname__})")
    if not callable(sample_input):
        raise TypeError("register_expert_class: sample_input must be a function "
                        "(batch_size, hidden_dim) -> tensor or tuple of tensors")

    def register(module_cls):
        if not (isinstance(module_cls, type) and issubclass(module_cls, nn.Module)):
            raise TypeError(f"register_expert_class({name!r}) decorates an nn.Module subclass, "
                            f"not {module_cls!r}")
        _registered[name] = ExpertClass(module_cls, sample_input)
        return module_cls

    return register


def registered_expert_classes() -> List[str]:
    """The names registered with :func:`register_expert_class` in this process."""
    return list(_registered)


def is_registered(name: str) -> bool:
    return name in _registered


def _as_tensor_tuple(sample, what: str) -> Tuple[torch.Tensor, ...]:
    tensors = (sample,) if isinstance(sample, torch.Tensor) else tuple(sample)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{what} must be a tensor or a non-empty tuple of tensors, got {sample!r}")
    return tensors


def _check_sample(tensors: Tuple[torch.Tensor, ...]) -> None:
    batch = tensors[0].shape[0] if tensors[0].dim() >= 1 else None
    for i, t in enumerate(tensors):
        if t.dtype not in WIRE_DTYPES:
            raise ValueError(f"sample input {i} is {t.dtype}: experts take "
                             f"{', '.join(map(str, WIRE_DTYPES))} tensors")
        if t.dim() < 1:
            raise ValueError(f"sample input {i} has shape {list(t.shape)}: an expert input is "
                             "[batch, ...], batch first")
        if t.shape[0] != batch or batch < 1:
            raise ValueError("sample inputs must share one batch size >= 1, got "
                             f"{[list(x.shape) for x in tensors]}")


def _compile(module: nn.Module, sample: Tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """torch.jit.script, else torch.jit.trace on the sample (which freezes control flow on it)."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        return torch.jit.script(module)
    except Exception as script_error:  # TorchScript's frontend raises several types
        try:
            return torch.jit.trace(module, sample, check_trace=True)
        except Exception as trace_error:
            raise ValueError(
                f"{type(module).__name__} can be neither scripted nor traced, so the C++ server "
                f"cannot run it.\n  torch.jit.script: {script_error}\n  torch.jit.trace: "
                f"{trace_error}\nSee docs/experts.md (what TorchScript cannot express).") from None


def metadata(sample: Tuple[torch.Tensor, ...]) -> str:
    """The ``hivemind_expert.json`` text describing ``forward``'s inputs (per-sample shapes and
    dtypes)."""
    return json.dumps({"format": METADATA_FORMAT,
                       "inputs": [{"shape": list(t.shape[1:]), "dtype": WIRE_DTYPES[t.dtype]}
                                  for t in sample]})


def save_expert_module(module: nn.Module, sample_input, path: Union[str, os.PathLike]) -> Path:
    """Compiles ``module`` to TorchScript and writes it, with its input description, to ``path``.

    ``sample_input`` is a tensor or tuple of tensors ``forward`` accepts, batch first, each of a
    dtype in :data:`WIRE_DTYPES` (their dtypes are the expert's). The file is checked by the C++
    loader the server uses (forward on a zero batch of the sample's dtypes and shapes, outputs of
    those dtypes with the batch dimension) before it replaces ``path``, so a file this returns
    is one ``hivemind-server --expert_cls torchscript --module_path`` accepts. Raises ValueError
    naming the problem otherwise.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"save_expert_module takes an nn.Module, not {type(module).__name__}")
    sample = _as_tensor_tuple(sample_input, "sample_input")
    _check_sample(sample)
    sample = tuple(t.detach().cpu() for t in sample)
    module = module.cpu()
    scripted = _compile(module, sample)
    path = Path(path)
    # Written next to the target and renamed over it: a reader never sees half a file, and a
    # refused module leaves an existing file as it was.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        torch.jit.save(scripted, tmp, _extra_files={METADATA_FILE: metadata(sample)})
        _C._check_torchscript_expert(tmp)  # the server's own checks; raises with its message
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_expert_class(name: str, hidden_dim: int, path: Union[str, os.PathLike]) -> Path:
    """Builds ``module_cls(hidden_dim)`` of a registered class and saves it with
    :func:`save_expert_module`, its sample input from ``sample_input(2, hidden_dim)``."""
    if name not in _registered:
        known = ", ".join(_registered) or "none"
        raise ValueError(f"expert class {name!r} is not registered with "
                         f"hivemind_cpp.register_expert_class (registered: {known})")
    entry = _registered[name]
    module = entry.module_cls(hidden_dim)
    sample = entry.sample_input(_EXPORT_BATCH_SIZE, hidden_dim)
    return save_expert_module(module, sample, path)


def add_custom_models_from_file(path: Union[str, os.PathLike]) -> None:
    """Imports a Python file whose ``@register_expert_class`` decorators register expert classes
    (hivemind's ``custom_module_path``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"custom module file {str(path)!r} does not exist")
    module_name = f"hivemind_cpp_custom_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{str(path)!r} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
