"""DHT: a handle on a C++ Kademlia node (hivemind's ``DHT``), and DHT time."""

import json
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from . import _C

DHTExpiration = float


def get_dht_time() -> DHTExpiration:
    """DHT time: wall-clock seconds since the Unix epoch, shared by every node (as hivemind's)."""
    return time.time()


class ValueWithExpiration(NamedTuple):
    value: Any
    expiration_time: DHTExpiration


# Values travel as bytes. bytes are stored as they are; anything else JSON can encode is stored as
# JSON behind a one-byte tag, so get() gives back what store() was given.
_RAW, _JSON = b"\x00", b"\x01"


def _encode(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _RAW + bytes(value)
    try:
        return _JSON + json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"DHT values are bytes or JSON-encodable, got {type(value).__name__}: {e}") from None


def _decode(data: bytes):
    if data[:1] == _RAW:
        return data[1:]
    if data[:1] == _JSON:
        try:
            return json.loads(data[1:].decode())
        except ValueError:
            return data
    return data  # stored by something else (the expert registry, C++ tools): the raw bytes


def _check_key(key) -> None:
    if not isinstance(key, str):
        raise TypeError(f"DHT keys are str, got {type(key).__name__}")
    if not key or len(key.encode()) > _C._max_dht_key_bytes:
        raise ValueError(f"DHT keys are 1 to {_C._max_dht_key_bytes} bytes, got "
                         f"{len(key.encode())}: {key[:40]!r}...")


def _peer_address(peer: str) -> str:
    """hivemind writes peers as host:port; this DHT listens on TCP unless told otherwise."""
    if not isinstance(peer, str) or not peer:
        raise TypeError(f"a DHT peer address must be a non-empty str, got {peer!r}")
    return peer if "://" in peer else "tcp://" + peer


def _listen_address(listen_on: str) -> str:
    address = _peer_address(listen_on)
    return address[:-2] + ":0" if address.endswith(":*") else address


class DHT:
    """A DHT node running on its own thread (hivemind's ``DHT``).

    ``DHT(initial_peers=["10.0.0.5:31337"], start=True)`` joins the swarm through any of the peers
    (none: starts a new one). ``listen_on`` is ``"host:port"`` (``*`` for any free port) or a
    transport address such as ``"ucx://0.0.0.0:0"``; ``0.0.0.0`` announces a routable address of
    this host. ``client_mode=True`` makes a node that asks but stores nothing for others (trainers).
    Every call blocks with the GIL released, until its ``timeout``.
    """

    def __init__(self, initial_peers: Sequence[str] = (), *, start: bool = True,
                 listen_on: str = "0.0.0.0:*", client_mode: bool = False,
                 expiration: float = 300.0, bootstrap_timeout: float = 30.0,
                 bootstrap_file: str = "", request_timeout: float = 10.0,
                 swarm_key_file: Optional[str] = None):
        if swarm_key_file is not None:  # before the node's transport exists (docs/security.md)
            _C._use_swarm_key_file(str(swarm_key_file))
        if isinstance(initial_peers, str):
            initial_peers = [initial_peers]
        self.initial_peers = [_peer_address(p) for p in initial_peers]
        self.listen_on = _listen_address(listen_on)
        self.client_mode = bool(client_mode)
        self.expiration = float(expiration)
        if not self.expiration > 0:
            raise ValueError(f"expiration must be positive seconds, got {expiration}")
        self.bootstrap_timeout = float(bootstrap_timeout)
        self.bootstrap_file = str(bootstrap_file)
        self.request_timeout = float(request_timeout)
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive seconds, got {request_timeout}")
        self._handle = None
        self._owned = True
        if start:
            self.run_in_background()

    @classmethod
    def _attach(cls, handle, request_timeout: float = 10.0) -> "DHT":
        """A handle on a node someone else runs (an in-process Server's)."""
        dht = cls.__new__(cls)
        dht.initial_peers, dht.listen_on, dht.client_mode = [], "", False
        dht.expiration, dht.bootstrap_timeout, dht.bootstrap_file = 300.0, 30.0, ""
        dht.request_timeout = request_timeout
        dht._handle, dht._owned = handle, False
        return dht

    def run_in_background(self, await_ready: bool = True, timeout: Optional[float] = None) -> None:
        """Starts the node (when ``start=False`` was given) and joins ``initial_peers``."""
        if self._handle is not None:
            raise RuntimeError("this DHT is already running")
        self._handle = _C._DHT(self.initial_peers, self.listen_on, self.client_mode,
                               self.bootstrap_timeout if timeout is None else float(timeout),
                               self.bootstrap_file)

    def _node(self):
        if self._handle is None:
            raise RuntimeError("this DHT is not running: give start=True or call run_in_background()")
        return self._handle

    @property
    def is_alive(self) -> bool:
        return self._handle is not None and self._handle.alive

    @property
    def endpoint(self) -> str:
        """The address other nodes give as ``initial_peers``, e.g. ``"tcp://10.0.0.5:31337"``."""
        return self._node().address

    def get_visible_address(self) -> str:
        return self.endpoint

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def node_id(self) -> str:
        return self._node().node_id

    def peers(self) -> List[str]:
        """Addresses in this node's routing table."""
        return self._node().peers()

    def store(self, key: str, value: Any, expiration_time: DHTExpiration,
              subkey: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        """Stores ``value`` under ``key`` (or ``key``'s ``subkey``) until ``expiration_time``
        (DHT time, see :func:`get_dht_time`). True when at least one replica accepted it; a newer
        value already stored wins, as in hivemind."""
        _check_key(key)
        if subkey is not None and not isinstance(subkey, str):
            raise TypeError(f"DHT subkeys are str, got {type(subkey).__name__}")
        return self._node().store(key, _encode(value), float(expiration_time), subkey,
                                  timeout or self.request_timeout)

    def get(self, key: str, latest: bool = False,
            timeout: Optional[float] = None) -> Optional[ValueWithExpiration]:
        """The live value under ``key`` with its expiration, or None. A dictionary key gives a
        dict ``{subkey: ValueWithExpiration}``. ``latest`` is accepted for hivemind's signature:
        every get already asks the nodes nearest the key and keeps the newest value."""
        _check_key(key)
        found = self._node().get(key, timeout or self.request_timeout)
        if found is None:
            return None
        value, expiration = found
        if isinstance(value, dict):
            value = {k: ValueWithExpiration(_decode(v), e) for k, (v, e) in value.items()}
        else:
            value = _decode(value)
        return ValueWithExpiration(value, expiration)

    def declare_experts(self, uids: Sequence[str], endpoint: str,
                        expiration_time: Optional[DHTExpiration] = None,
                        timeout: Optional[float] = None) -> Dict[str, bool]:
        """Makes ``uids`` findable at ``endpoint`` until ``expiration_time`` (default: now plus this
        DHT's ``expiration``). Raises when an expert's record was stored nowhere."""
        uids = [uids] if isinstance(uids, str) else list(uids)
        if expiration_time is None:
            expiration_time = get_dht_time() + self.expiration
        self._node().declare_experts(uids, endpoint, float(expiration_time),
                                     timeout or self.request_timeout)
        return {uid: True for uid in uids}

    def get_experts(self, uids: Sequence[str], timeout: Optional[float] = None) -> list:
        """For each uid, a :class:`RemoteExpert` for the live expert, or None."""
        from .expert import RemoteExpert
        uids = [uids] if isinstance(uids, str) else list(uids)
        found = self._node().get_experts(uids, timeout or self.request_timeout)
        return [None if f is None else RemoteExpert(f[0], f[1]) for f in found]

    def shutdown(self) -> None:
        """Stops the node (a handle on a Server's node only lets go of it)."""
        handle, self._handle = self._handle, None
        if handle is not None and self._owned:
            handle.shutdown()

    def __enter__(self) -> "DHT":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __del__(self):
        try:
            self.shutdown()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"DHT({self.endpoint!r})" if self.is_alive else "DHT(not running)"
