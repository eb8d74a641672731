"""Connecting this process to Ray, for the ray backend (:mod:`.ray_backend`) and
``serbench doctor --backend ray`` (:mod:`.nodes`): which address is in force
(``local``, ``auto`` or ``HOST:PORT``; the job's or the command line's, else
``$SERBENCH_RAY_ADDRESS``, else ``local``), and a ``ray.init`` that fails in seconds with
one line -- ``auto`` is resolved and a ``HOST:PORT`` reached over TCP first, since
``ray.init`` retries an address nothing answers at for ever.

``ray`` is imported only inside functions.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from typing import Any
import socket

from serbench import env
from serbench.errors import UserError

CONNECT_TIMEOUT_S = 10.0  # a HOST:PORT that accepts no TCP connection in this long is unreachable
ADDRESS_PATTERN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})$")


def checked_address(address: str) -> str:
    """``address`` stripped when it is ``local``, ``auto`` or ``HOST:PORT``; else ValueError."""
    address = address.strip()
    if address in ("local", "auto"):
        return address
    match = ADDRESS_PATTERN.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{address!r} is not local, auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    return address


def address_in_force(given: str | None, source: str = "--ray-address") -> str:
    """``given`` (named ``source`` in messages), else ``$SERBENCH_RAY_ADDRESS``, else
    ``local``; ``UserError`` unless it is ``local``, ``auto`` or ``HOST:PORT``."""
    if given is None:
        given, source = env.get(env.RAY_ADDRESS), f"${env.RAY_ADDRESS}"
    if given is None:
        return "local"
    try:
        return checked_address(given)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None


def connect(address: str) -> None:
    """``ray.init`` for ``address`` (``local``: a private instance sized to the CPUs this
    process may use; ``auto``: resolved first; ``HOST:PORT``: reached over TCP first),
    quietly; one ``UserError`` naming the address when it fails."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address == "local":
        from serbench.execution.limits import cpu_limit

        try:
            ray.init(address="local", num_cpus=max(1, math.floor(cpu_limit().cpus)), **quiet)
        except Exception as exc:
            shutdown_quietly()
            raise UserError(f"ray: cannot start a local Ray instance: {first_line(exc)}") from None
        return
    target = resolve_auto() if address == "auto" else address
    host, _, port = target.rpartition(":")
    reachable_or_die(host.strip("[]"), int(port), address if target == address else f"{target} (auto)")
    try:
        ray.init(address=target, **quiet)
    except Exception as exc:
        shutdown_quietly()
        where = f"the Ray cluster at {target}" + (" (auto)" if address == "auto" else "")
        raise UserError(f"ray: cannot connect to {where}: {first_line(exc)}") from None


def resolve_auto() -> str:
    """The HOST:PORT ``auto`` names, as Ray finds it (``$RAY_ADDRESS``, the cluster ``ray
    start`` joined here last, or a GCS process running on this machine). Resolved first so
    an address nothing answers at fails at once: ``ray.init`` would retry it for ever."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except Exception as exc:
        raise UserError(
            f"ray: auto finds no Ray cluster ({first_line(exc)}); start one with `ray start --head`, "
            "or name its head with --ray-address HOST:PORT"
        ) from None


def reachable_or_die(host: str, port: int, address: str) -> None:
    """A TCP connection to the head's port, so a wrong address fails in seconds, not after
    Ray's retries. Ray replaces a loopback host by this machine's address: that is tried too."""
    hosts = [host]
    if host in ("127.0.0.1", "localhost", "::1"):
        import ray

        hosts.append(ray.util.get_node_ip_address())
    failure: OSError | None = None
    for candidate in hosts:
        try:
            socket.create_connection((candidate, port), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            failure = exc
    reason = failure.strerror or str(failure) if failure else "unreachable"
    raise UserError(
        f"ray: cannot reach a Ray cluster at {address} ({reason}); start its head there "
        f"(ray start --head --port {port}) or check the address"
    )


def shutdown_quietly() -> None:
    """Undo what a failed ``ray.init`` may have set up."""
    import ray

    try:
        ray.shutdown()
    except Exception:
        pass


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Ray's run to many)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


@functools.cache
def remote_class(cls: type) -> Any:
    """``ray.remote(cls)``, made on first use and kept (importing ray is not cheap)."""
    import ray

    return ray.remote(cls)
