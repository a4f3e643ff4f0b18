"""What other federation code needs of the outbound sender.

Inbound processing (joins, invites, ...) hands events it wants other servers
to have to :meth:`FederationSender.send_pdu`; handlers of ephemeral data hand
EDUs to :meth:`FederationSender.send_edu`.  Both return at once: delivery is
queued per destination, batched into transactions and retried with backoff
(``matrixd.federation.sender``).  Local events persisted through the
``EventPersister`` are sent without anyone calling ``send_pdu``.
"""

from __future__ import annotations

from typing import Collection, Optional, Protocol

from matrixd.events.event import Event
from matrixd.types import JsonDict


class FederationSender(Protocol):
    def send_pdu(self, event: Event, destinations: Collection[str]) -> None:
        """Queue ``event`` for every server in ``destinations`` (our own name is ignored)."""
        ...

    def send_edu(self, destination: str, edu_type: str, content: JsonDict, key: Optional[str] = None) -> None:
        """Queue one EDU; a later EDU with the same ``(edu_type, key)`` replaces one not yet sent."""
        ...
