"""Turns taken in the order producers arrived (a ticket queue).

A plain lock lets one producer in at a time but in any order: threads started for two
clients that connected a moment apart reach it in either order. Here a producer takes a
ticket when it arrives (the socket acceptor takes it when it accepts) and waits for that
ticket's turn; a ticket given back unused (a refused client) passes its turn on.
"""
from __future__ import annotations

import threading


class ArrivalTurns:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._released: set[int] = set()

    def take(self) -> int:
        """A ticket: its turn comes after every ticket taken before it is released."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            return ticket

    def wait(self, ticket: int, timeout_s: float) -> bool:
        """True once it is the ticket's turn; False if timeout_s passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._serving == ticket, timeout_s)

    def release(self, ticket: int) -> None:
        """Done with its turn, or never to use it: later tickets go on as their turn comes.
        Releasing a ticket again does nothing."""
        with self._changed:
            if ticket < self._serving:
                return
            self._released.add(ticket)
            while self._serving in self._released:
                self._released.discard(self._serving)
                self._serving += 1
            self._changed.notify_all()
