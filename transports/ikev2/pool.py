"""The virtual IP pool of the IKEv2 responder (RFC 7296 §3.15.4).

Addresses of ``[ikev2] pool`` are leased to peer identities, as
strongSwan's in-memory pools do: an identity that comes back gets the
address it had before (its lease stays, offline, after its IKE SA is
gone), a peer may ask for a specific address and gets it when it is free or
already its own, and when no address was ever unused the oldest offline
lease is handed to someone else.  The network and broadcast addresses of an
IPv4 pool are never leased (10.10.0.0/24 gives 10.10.0.1 … 10.10.0.254).

An identity may hold one address online several times (two IKE SAs with
the same identity, or an IKE SA rekeyed into a new one); the lease goes
offline when the last of them releases it.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

__all__ = ["PoolExhausted", "VirtualIpPool"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PoolExhausted(Exception):
    """Every address of the pool is online (INTERNAL_ADDRESS_FAILURE)."""


class VirtualIpPool:
    """Leases of one network, keyed by peer identity."""

    __slots__ = ("network", "name", "_first", "_size", "_next", "_by_identity", "_by_address", "_online",
                 "_offline")

    def __init__(self, network: str | Network, name: str = "pool") -> None:
        self.network = ipaddress.ip_network(network, strict=False)
        self.name = name
        first = int(self.network.network_address)
        size = self.network.num_addresses
        if self.network.version == 4 and self.network.prefixlen < 31:
            first += 1
            size -= 2
        elif self.network.version == 6 and self.network.prefixlen < 127:
            first += 1  # the subnet-router anycast address is not a host's
            size -= 1
        if size < 1:
            raise ValueError(f"pool {self.network} holds no address to lease")
        self._first = first
        self._size = size
        self._next = 0
        self._by_identity: dict[str, Address] = {}
        self._by_address: dict[Address, str] = {}
        self._online: dict[Address, int] = {}
        # offline leases, oldest first
        self._offline: OrderedDict[Address, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"VirtualIpPool({self.network}, online={self.online}, offline={len(self._offline)})"

    @property
    def size(self) -> int:
        return self._size

    @property
    def online(self) -> int:
        """Addresses leased to an identity with an IKE SA up."""
        return len(self._online)

    def contains(self, address: Address) -> bool:
        value = int(address)
        return address.version == self.network.version and self._first <= value < self._first + self._size

    def lease_of(self, identity: str) -> Address | None:
        """The address ``identity`` holds (online or offline), None without one."""
        return self._by_identity.get(identity)

    def acquire(self, identity: str, requested: Address | None = None) -> Address:
        """Lease an address to ``identity`` and count it online;
        ``PoolExhausted`` when every address is online."""
        address = self._choose(identity, requested)
        self._online[address] = self._online.get(address, 0) + 1
        self._offline.pop(address, None)
        return address

    def release(self, address: Address) -> None:
        """One holder of ``address`` is gone; the lease goes offline (kept for
        its identity) when it was the last."""
        count = self._online.get(address)
        if count is None:
            return
        if count > 1:
            self._online[address] = count - 1
            return
        del self._online[address]
        self._offline[address] = None

    def _choose(self, identity: str, requested: Address | None) -> Address:
        own = self._by_identity.get(identity)
        if own is not None and own in self._online:
            return own  # the same identity again: one address per identity
        if (requested is not None and requested != own and self.contains(requested)
                and requested not in self._by_address):
            # a free address the peer asks for; someone else's lease, even an
            # offline one, is only reused when nothing else is left
            self._move(identity, requested)
            return requested
        if own is not None:
            return own
        if self._next < self._size:
            address = ipaddress.ip_address(self._first + self._next)
            self._next += 1
            while address in self._by_address and self._next < self._size:
                # taken by a specific request earlier
                address = ipaddress.ip_address(self._first + self._next)
                self._next += 1
            if address not in self._by_address:
                self._move(identity, address)
                return address
        if self._offline:
            address = next(iter(self._offline))
            self._move(identity, address)
            return address
        raise PoolExhausted(f"all {self._size} addresses of {self.network} are online")

    def _move(self, identity: str, address: Address) -> None:
        previous = self._by_address.get(address)
        if previous is not None:
            del self._by_identity[previous]
        old = self._by_identity.get(identity)
        if old is not None and old != address:
            del self._by_address[old]
            self._offline.pop(old, None)
        self._by_identity[identity] = address
        self._by_address[address] = identity
