"""hivemind_cpp: hivemind's decentralized mixture-of-experts, on a C++ engine.

Trainer code written for hivemind runs after ``import hivemind_cpp as hivemind``: ``DHT``,
``RemoteExpert``, ``RemoteMixtureOfExperts``, ``RemoteSwitchMixtureOfExperts`` and
``Server.create`` take hivemind's arguments. The work happens in C++ threads with the GIL
released; see docs/python.md.
"""

import atexit as _atexit
import threading as _threading

import torch as _torch  # loads LibTorch (and libtorch_python) before the extension

from . import _C
from .errors import *  # noqa: F401,F403  (the exception classes)
from .errors import HivemindError, HivemindTimeoutError
from .averaging import Averager, DecentralizedAverager, RoundReport
from .dht import DHT, ValueWithExpiration, get_dht_time
from .expert import RemoteExpert
from .expert_class import (add_custom_models_from_file, register_expert_class,
                           save_expert_module)
from .moe import RemoteMixtureOfExperts, RemoteSwitchMixtureOfExperts
from .server import Server

__version__ = _C.__version__


def use_swarm_key_file(path: str) -> None:
    """Makes this process a member of a keyed swarm (docs/security.md): every connection it makes or
    accepts from now on proves the key in ``path`` (a 0600 file from ``hivemind-info
    --new-swarm-key``), the trainer side's ``RemoteExpert`` and MoE layers included. The same as
    setting ``HIVEMIND_SWARM_KEY_FILE`` before the first connection; ``DHT(swarm_key_file=...)`` and
    ``Server.create(swarm_key_file=...)`` call it."""
    _C._use_swarm_key_file(str(path))


# Ctrl-C interrupts a wait on the network within 50 ms; at exit the hook goes first, then the
# client transport's thread.
_C._install_interrupt_hook(_threading.main_thread().ident)
_atexit.register(_C._shutdown)

__all__ = ["DHT", "RemoteExpert", "RemoteMixtureOfExperts", "RemoteSwitchMixtureOfExperts",
           "Server", "ValueWithExpiration", "get_dht_time", "HivemindError",
           "HivemindTimeoutError", "use_swarm_key_file", "register_expert_class",
           "save_expert_module", "add_custom_models_from_file", "Averager", "DecentralizedAverager",
           "RoundReport"]
