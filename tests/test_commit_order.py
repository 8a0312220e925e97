"""A store object's commits reach its listeners in commit order (I10)."""

from __future__ import annotations

from collections.abc import Sequence

from gatewayd.store.commitorder import CommitOrder
from gatewayd.store.values import Envelope


def _events(*seqs: int) -> list[Envelope]:
    return [{"seq": seq} for seq in seqs]


class TestCommitOrder:
    """Events are told in seq order, whichever commit's coroutine resumes first."""

    def _order(self) -> tuple[CommitOrder, list[int]]:
        told: list[int] = []

        def tell(envelopes: Sequence[Envelope]) -> None:
            told.extend(e["seq"] for e in envelopes)

        return CommitOrder(tell), told

    def test_a_later_commit_waits_for_an_earlier_one(self) -> None:
        """I10: seqs 3-4, committed first, are told only after 1-2 are."""
        order, told = self._order()
        first, second = _events(1, 2), _events(3, 4)
        order.taken(first)
        order.taken(second)
        order.committed(second)
        assert told == []
        order.committed(first)
        assert told == [1, 2, 3, 4]

    def test_a_rolled_back_transaction_holds_nothing_back(self) -> None:
        """I10: seqs taken by a transaction that rolled back never block the others."""
        order, told = self._order()
        undone, kept = _events(1), _events(2)
        order.taken(undone)
        order.taken(kept)
        order.committed(kept)
        assert told == []
        order.undone(undone)
        assert told == [2]

    def test_other_instances_seqs_are_no_gap(self) -> None:
        """I10: seqs this store object never took (another instance's) hold nothing back."""
        order, told = self._order()
        mine = _events(7)
        order.taken(mine)
        order.committed(mine)
        assert told == [7]
