"""A watch on the consumer's group membership, for a join kafka-python sent and then dropped.

kafka-python 3.0.12 drives a join (JoinGroup, then SyncGroup) as a task that ``poll()`` awaits
while the client says it must rejoin. A group leader whose first assignment was made before
its metadata listed the topics' partitions joins a second time; assigning in that join brings
its metadata snapshot up to date, the client no longer "needs" to rejoin, and nothing awaits
the task any more. The broker's answer arrives and is never applied: the member stays in its
rebalancing state with heartbeats switched off, the assignor hears of no answer, the group
evicts the member after its session timeout, and every offset commit from then on fails with
``RebalanceInProgressError`` while the process goes on judging events it cannot commit. Seen
at start-up against topics the process had just created, in about half of the starts.

Whether the member is still rebalancing is public (``group_metadata().state``); asking the
client to rejoin is not, so the watch uses the coordinator's ``request_rejoin`` where the
client has one and otherwise only reports.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.structs import MemberState

log = logging.getLogger(__name__)

# How long a member may stay rebalancing with no join under way before the watch steps in. A
# join the client is still driving does not count, however long the group takes to answer it;
# one it is not driving is lost already (its answer is never applied), so a SyncGroup round
# trip, milliseconds, is all this has to outlast.
STUCK_JOIN_S = 2.0


class JoinWatch:
    """Notices a consumer left rebalancing by a join nothing drives any more, and rejoins."""

    def __init__(self, consumer: Any, stuck_after_s: float = STUCK_JOIN_S) -> None:
        self.consumer = consumer
        self.stuck_after_s = stuck_after_s
        self._since: float | None = None  # monotonic time it was first seen stuck

    def check(self) -> bool:
        """Call once per poll loop; True when it asked the client to join again."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        rebalancing = self.consumer.group_metadata().state == MemberState.REBALANCING
        # Asked only while rebalancing: a settled member's loop pays one attribute read.
        if not rebalancing or (coordinator is not None and coordinator.need_rejoin()):
            self._since = None
            return False
        now = time.monotonic()
        if self._since is None:
            self._since = now
            return False
        if now - self._since < self.stuck_after_s:
            return False
        self._since = None
        if coordinator is None or not hasattr(coordinator, "request_rejoin"):
            log.warning("this member has been rebalancing for %.0f s with no join under way", self.stuck_after_s)
            return False
        log.warning(
            "this member has been rebalancing for %.0f s with no join under way (a join the client"
            " dropped); joining the group again",
            self.stuck_after_s,
        )
        coordinator.request_rejoin()
        return True
