"""A store object's committed events, told to its listeners in commit order.

Transactions on a pool commit concurrently, and the coroutine of an earlier
commit may resume after a later one's. Their seqs say the commit order (see
:mod:`gatewayd.store.pgevents`): a transaction takes its seqs only once every
transaction that took lower ones has committed or rolled back. So a
transaction's seqs are noted as taken before its COMMIT is sent, and a
commit's events wait until no lower seq of this store object is still taken.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from gatewayd.store.values import Envelope


class CommitOrder:
    """Holds back each commit's events until every earlier commit's are told."""

    def __init__(self, tell: Callable[[Sequence[Envelope]], None]) -> None:
        self._tell = tell
        self._taken: set[int] = set()  # the first seqs of transactions not yet settled
        self._ready: list[tuple[int, Sequence[Envelope]]] = []

    def taken(self, envelopes: Sequence[Envelope]) -> None:
        """A transaction took these seqs, and is about to commit."""
        if envelopes:
            self._taken.add(envelopes[0]["seq"])

    def committed(self, envelopes: Sequence[Envelope]) -> None:
        """The transaction that took these seqs committed: tell them, in their turn."""
        if not envelopes:
            return
        self._taken.discard(envelopes[0]["seq"])
        heapq.heappush(self._ready, (envelopes[0]["seq"], envelopes))
        self._flush()

    def undone(self, envelopes: Sequence[Envelope]) -> None:
        """The transaction that took these seqs rolled back: they will never be told."""
        if envelopes:
            self._taken.discard(envelopes[0]["seq"])
            self._flush()

    def _flush(self) -> None:
        lowest = min(self._taken, default=None)
        while self._ready and (lowest is None or self._ready[0][0] < lowest):
            self._tell(heapq.heappop(self._ready)[1])
