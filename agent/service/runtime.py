"""What the service's routes share for the life of the process (on `app.state.runtime`).

Each feature adds the parts it owns as fields here; routes reach it with `runtime_of(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from agent.service.issuers import IssuerRegistry
from agent.service.note_proposals import ProposalStore
from agent.service.record_reuse import RecordReuse
from agent.service.sessions import LaunchStore, SessionStore
from agent.settings import Settings

if TYPE_CHECKING:
    from agent.service.agui import ChatService


@dataclass
class ServiceRuntime:
    settings: Settings
    # The service's own base URL as browsers and the EHR reach it (the SMART redirect URI and the
    # CDS card links are built from it).
    public_url: str
    # The FHIR server and PACS of the service's own (system) work, resolved at start by
    # `chartagent serve` (settings, else the embedded stack).
    fhir_url: str
    dicomweb_url: str | None
    # SMART app sessions, launches in flight and trusted issuers' keys (agent.service.authz).
    sessions: SessionStore = field(default_factory=SessionStore)
    launches: LaunchStore = field(default_factory=LaunchStore)
    issuers: IssuerRegistry = field(default_factory=IssuerRegistry)
    # The chat (agent.service.agui): checkpointer, graph and planner, opened on first use and
    # closed at shutdown; the busy-thread registry. Set by agui.install.
    chat: ChatService | None = None
    # Patients' records kept between runs of the chat and MCP's tools (agent.service.record_reuse).
    records: RecordReuse = field(init=False)
    # Notes proposed over MCP, waiting for a person (agent.service.proposal_api opens it in the
    # app's lifespan; None before it, or without one).
    proposals: ProposalStore | None = None

    def __post_init__(self) -> None:
        self.records = RecordReuse(margin=timedelta(seconds=self.settings.change_check_margin_s))


def runtime_of(conn: HTTPConnection) -> ServiceRuntime:
    runtime: ServiceRuntime = conn.app.state.runtime
    return runtime
