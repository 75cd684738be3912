"""What the launcher and the picker read from the FHIR server behind the proxy (as the EHR itself,
unrestricted), and the demo clinician every launch acts as."""

from __future__ import annotations

from typing import Any

from agent.testbed.ehr.config import DEMO_PRACTITIONER_ID
from agent.testbed.ehr.state import EhrState

DEMO_PRACTITIONER = f"Practitioner/{DEMO_PRACTITIONER_ID}"


async def patient_list(ehr: EhrState, *, limit: int = 200) -> list[tuple[str, str]]:
    """(id, display name) of the patients on the server, by name."""
    response = await ehr.upstream.get(
        f"{ehr.config.upstream_fhir_url}/Patient", params={"_count": str(limit), "_elements": "name"}
    )
    response.raise_for_status()
    rows = [
        (str(e["resource"]["id"]), display_name(e["resource"]))
        for e in response.json().get("entry") or []
        if isinstance(e.get("resource"), dict) and "id" in e["resource"]
    ]
    return sorted(rows, key=lambda row: (row[1], row[0]))


def display_name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
        if text:
            return str(text)
    return f"Patient {patient.get('id', '?')}"


async def ensure_demo_practitioner(ehr: EhrState) -> str:
    """`Practitioner/chartagent-demo-clinician`, created on the FHIR server when missing."""
    if not ehr.demo_practitioner_ready:
        url = f"{ehr.config.upstream_fhir_url}/{DEMO_PRACTITIONER}"
        if (await ehr.upstream.get(url)).status_code == 404:
            practitioner = {
                "resourceType": "Practitioner",
                "id": DEMO_PRACTITIONER_ID,
                "active": True,
                "name": [{"use": "official", "family": "Clinician", "given": ["Demo"], "prefix": ["Dr."]}],
            }
            response = await ehr.upstream.put(
                url, json=practitioner, headers={"Content-Type": "application/fhir+json"}
            )
            response.raise_for_status()
        ehr.demo_practitioner_ready = True
    return DEMO_PRACTITIONER
