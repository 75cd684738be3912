"""MedAgentBench (Stanford, MIT): load the snapshot's 500 Patients and answer tasks 1 and 2.

`fhir_snapshot.jsonl` holds recorded responses of the benchmark's HAPI server; its Patient
searchsets carry the 500 patients the tasks name. They are PUT at their own ids (the MRN), so
loading twice creates nothing. Task 1 asks for the MRN of a name + birth date ("Patient not
found" when absent); task 2 for the age in whole years of the patient with an MRN, at the
task clock given in the task's context.

On the wire: `POST {base}` transactions of `PUT Patient/<id>` (100 per bundle); answering
uses `tools.patient_lookup` (Patient searches by name+birthdate, and by identifier).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.testbed.cohort.bundles import WriteTally, put_transaction
from agent.testbed.datasets.paths import shared_data_dir
from agent.testbed.datasets.report import LoadReport
from fhir_adapters import FhirClient
from tools.patient_lookup import find_patient_by_mrn, find_patient_mrn, patient_age

__all__ = [
    "MEDAGENTBENCH_SUBDIR",
    "NOT_FOUND",
    "TASK_CLOCK",
    "AgeQuery",
    "MabTask",
    "MrnQuery",
    "answer_task",
    "load_medagentbench_patients",
    "load_tasks",
    "medagentbench_dir",
    "parse_age_query",
    "parse_mrn_query",
    "snapshot_patients",
    "task_clock",
]

MEDAGENTBENCH_SUBDIR = "medagentbench"
NOT_FOUND = "Patient not found"
# The benchmark's "now" (README); tasks restate it in their context.
TASK_CLOCK = datetime(2023, 11, 13, 10, 15, tzinfo=UTC)
_CHUNK = 100


def medagentbench_dir(directory: Path | None = None) -> Path:
    return directory if directory is not None else shared_data_dir() / MEDAGENTBENCH_SUBDIR


class MabTask(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    instruction: str
    context: str = ""
    # Task 2 ships without `sol`: its answer is computed (README: task2 answers are ages).
    sol: list[str | int] | None = None
    eval_mrn: str | None = Field(default=None, alias="eval_MRN")

    @property
    def kind(self) -> str:
        """`task1`, `task2`, ... from the id `task1_7`."""
        return self.id.split("_", 1)[0]


class MrnQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    given: str
    family: str
    birthdate: date


class AgeQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    mrn: str
    at: datetime


def load_tasks(directory: Path | None = None, kinds: Iterable[str] = ("task1", "task2")) -> list[MabTask]:
    raw = json.loads((medagentbench_dir(directory) / "test_data_v2.json").read_bytes())
    wanted = set(kinds)
    return [t for t in (MabTask.model_validate(item) for item in raw) if t.kind in wanted]


def snapshot_patients(directory: Path | None = None) -> list[dict[str, Any]]:
    """The distinct Patient resources of the snapshot's searchsets, in first-seen order, with
    the recording server's versioning metadata dropped (ours assigns its own)."""
    patients: dict[str, dict[str, Any]] = {}
    with (medagentbench_dir(directory) / "fhir_snapshot.jsonl").open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            data = record.get("data") or {}
            if record.get("status_code") != 200 or data.get("resourceType") != "Bundle":
                continue
            for entry in data.get("entry") or []:
                res = entry.get("resource") or {}
                if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
                    res = {k: v for k, v in res.items() if k != "meta"}
                    patients.setdefault(res["id"], res)
    return list(patients.values())


async def load_medagentbench_patients(client: FhirClient, directory: Path | None = None) -> LoadReport:
    started = time.perf_counter()
    patients = snapshot_patients(directory)
    tally = WriteTally()
    report = LoadReport()
    for i in range(0, len(patients), _CHUNK):
        bundle = put_transaction(patients[i : i + _CHUNK])
        tally.add(bundle, await client.transaction(bundle))
        report.bundles += 1
    report.resources_by_type = dict(sorted(tally.by_type.items()))
    report.created, report.updated = tally.created, tally.updated
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report


_NAME_DOB = re.compile(r"name (?P<name>.+?) and DOB of (?P<dob>\d{4}-\d{2}-\d{2})")
_MRN = re.compile(r"MRN of (?P<mrn>[A-Za-z0-9\-.]+)")
_CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def parse_mrn_query(instruction: str) -> MrnQuery:
    """Task 1: "... name Peter Stafford and DOB of 1932-12-29?" -> given, family, birth date.

    The family name is the last word, the given name(s) all before it.
    """
    match = _NAME_DOB.search(instruction)
    if match is None:
        raise ValueError("no 'name ... and DOB of YYYY-MM-DD' in the instruction")
    *given, family = match["name"].split()
    if not given:
        raise ValueError("the instruction names no given name")
    return MrnQuery(given=" ".join(given), family=family, birthdate=date.fromisoformat(match["dob"]))


def task_clock(context: str) -> datetime:
    """The "now" stated in a task's context ("It's 2023-11-13T10:15:00+00:00 now"), else the
    benchmark's clock."""
    match = _CLOCK.search(context)
    return datetime.fromisoformat(match.group(0)) if match else TASK_CLOCK


def parse_age_query(instruction: str, context: str = "") -> AgeQuery:
    """Task 2: "What's the age of the patient with MRN of S2874099?" at the context's clock."""
    match = _MRN.search(instruction)
    if match is None:
        raise ValueError("no 'MRN of ...' in the instruction")
    return AgeQuery(mrn=match["mrn"], at=task_clock(context))


async def answer_task(client: FhirClient, task: MabTask) -> list[str | int]:
    """The answer in the benchmark's shape: `[mrn]` / `["Patient not found"]`, or `[age]`."""
    if task.kind == "task1":
        q = parse_mrn_query(task.instruction)
        mrn = await find_patient_mrn(client, q.given, q.family, q.birthdate)
        return [mrn if mrn is not None else NOT_FOUND]
    if task.kind == "task2":
        a = parse_age_query(task.instruction, task.context)
        patient = await find_patient_by_mrn(client, a.mrn)
        if patient is None:
            return [NOT_FOUND]
        return [patient_age(patient, a.at)]
    raise ValueError(f"{task.kind} is not answerable from Patient data")
