"""`seed_cohort`: write a generated cohort to a FHIR server, one transaction per patient.

On the wire: `POST {base}` with a transaction Bundle of `PUT Type/id` entries per patient.
Ids are deterministic, so seeding the same cohort again updates in place and creates nothing.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from agent.testbed.cohort.bundles import WriteTally, put_transaction
from agent.testbed.cohort.generate import Cohort
from fhir_adapters import FhirClient

__all__ = ["SeedReport", "seed_cohort"]


class SeedReport(BaseModel):
    patients: int
    bundles: int
    resources_by_type: dict[str, int]
    created: int  # entries the server answered 201 (new resources)
    updated: int  # entries answered 200 (already there: a reseed)
    elapsed_s: float

    @property
    def resources(self) -> int:
        return sum(self.resources_by_type.values())


async def seed_cohort(client: FhirClient, cohort: Cohort) -> SeedReport:
    """Seed patient by patient; a failed transaction raises (that patient is rolled back by the
    server, earlier patients stay)."""
    started = time.perf_counter()
    tally = WriteTally()
    for patient in cohort.patients:
        bundle = put_transaction(patient.resources)
        tally.add(bundle, await client.transaction(bundle))
    return SeedReport(
        patients=len(cohort.patients),
        bundles=len(cohort.patients),
        resources_by_type=dict(sorted(tally.by_type.items())),
        created=tally.created,
        updated=tally.updated,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
