"""Synthetic demographics: names, sex, birth date and MRN.

Own name lists instead of Faker: Faker's output changes between its releases, and the
cohort must stay byte-identical for a seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["Demographics", "cohort_rng", "draw_demographics", "mrn_for"]

_FEMALE = (
    "Alice", "Beatriz", "Carmen", "Diana", "Elena", "Fatima", "Grace", "Hannah", "Ingrid", "Joan",
    "Keiko", "Linda", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tamara", "Ursula",
    "Valerie", "Wendy", "Ximena", "Yara", "Zoe", "Agnes", "Brenda", "Claire", "Dolores", "Esther",
)  # fmt: skip
_MALE = (
    "Aaron", "Bruno", "Carlos", "David", "Emil", "Farid", "George", "Henry", "Ivan", "James",
    "Kenji", "Luis", "Marcus", "Nikhil", "Oscar", "Pedro", "Quentin", "Rafael", "Samuel", "Tomas",
    "Umar", "Victor", "Walter", "Xavier", "Yusuf", "Zane", "Arthur", "Bernard", "Curtis", "Dennis",
)  # fmt: skip
_FAMILY = (
    "Abbott", "Bianchi", "Castillo", "Delgado", "Eriksen", "Fischer", "Gallagher", "Haddad",
    "Ishikawa", "Jansen", "Kowalski", "Lindqvist", "Moreno", "Nakamura", "Okafor", "Petrov",
    "Quinn", "Rahman", "Santos", "Thompson", "Ueda", "Varga", "Whitaker", "Xu", "Yilmaz",
    "Zimmerman", "Adeyemi", "Brennan", "Chowdhury", "Dubois", "Esposito", "Ferreira", "Gupta",
    "Horvat", "Iqbal", "Jovanovic", "Kim", "Larsen", "Mendoza", "Novak",
)  # fmt: skip


@dataclass(frozen=True)
class Demographics:
    given: str
    family: str
    female: bool
    birth_date: date
    height_m: float

    def age_at(self, when: date) -> float:
        return (when - self.birth_date).days / 365.25


def mrn_for(seed: int, index: int) -> str:
    """A stable 10-digit MRN: 5 digits from the seed, then the patient index, so MRNs never
    collide within a cohort (up to 100,000 patients) and rarely across seeds."""
    digest = hashlib.sha256(f"chartagent-cohort:{seed}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**5:05d}{index:05d}"


def cohort_rng(seed: int, index: int) -> random.Random:
    """The random stream of patient ``index`` of cohort ``seed``; its first draws are the
    demographics (``draw_demographics``). A string seed goes through SHA-512: stable across
    processes and Python versions."""
    return random.Random(f"chartagent-cohort:{seed}:{index}")


def draw_demographics(rng: random.Random, reference_date: date) -> Demographics:
    female = rng.random() < 0.5
    given = rng.choice(_FEMALE if female else _MALE)
    family = rng.choice(_FAMILY)
    age_days = rng.randint(45 * 365, 85 * 365)
    height = rng.gauss(1.63 if female else 1.76, 0.07)
    return Demographics(
        given=given,
        family=family,
        female=female,
        birth_date=reference_date - timedelta(days=age_days),
        height_m=round(height, 2),
    )
