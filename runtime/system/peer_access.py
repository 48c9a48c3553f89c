"""May this unix-socket peer talk to us? The kernel's word on the peer (SO_PEERCRED uid and
gid) and the group database decide, never the peer's /proc entry: the shipped unit's
ProtectProc=invisible hides it, and a user added with `usermod -aG edgemate USER` got 403.
Both the control socket and the speech socket ask."""
from __future__ import annotations

import grp
import os
import pwd
import socket
import struct


def peer_credentials(connection: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a unix socket's peer, or None where there is none (TCP, macOS)."""
    if connection.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def peer_allowed(connection: socket.socket) -> tuple[bool, str]:
    """(allowed, who) from the peer's credentials; no SO_PEERCRED (macOS): file mode only.

    Allowed: root, our user, a peer whose primary group is ours, or a user the group
    database lists as a member of our group (`usermod -aG edgemate USER`). The kernel
    vouches for uid and gid (SO_PEERCRED); the group database is read, not the peer's
    /proc entry, which the shipped unit's ProtectProc=invisible hides."""
    creds = peer_credentials(connection)
    if creds is None:
        return True, "peer"
    pid, uid, gid = creds
    who = f"pid {pid} uid {uid}"
    ours = os.getegid()
    if uid in (0, os.geteuid()) or gid == ours:
        return True, who
    try:
        user = pwd.getpwuid(uid)
        if user.pw_gid == ours or user.pw_name in grp.getgrgid(ours).gr_mem:
            return True, who
    except KeyError:  # a uid or group without an entry: not a member of anything
        pass
    return False, who
