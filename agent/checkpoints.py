"""Where graph runs keep their checkpoints: SQLite in the state dir by default, Postgres by setting.

The same database holds a LangGraph store (`open_store`): the change marks of complete runs
(`open_change_marks`, `agent.planning.change_marks`) and the outcomes of a checkpointed batch's
finished patients (`agent.jobs.summarize.Checkpointing`).

`CHARTAGENT_CHECKPOINT_URL`: unset -> `<state dir>/checkpoints.sqlite`; `sqlite:///<path>`; or
`postgresql://...` (needs the `postgres` extra: langgraph-checkpoint-postgres).

Checkpoints are read back with an explicit allow-list of our own types (`checkpoint_types`):
every pydantic model and enum the graphs' state can hold, found from the state's annotations,
so that nothing else is ever constructed from a checkpoint.
"""

from __future__ import annotations

import asyncio
import enum
import fcntl
import types
import typing
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore
from pydantic import BaseModel

from agent.settings import Settings, SettingsError

if typing.TYPE_CHECKING:
    from agent.planning.change_marks import ChangeMarks

__all__ = ["checkpoint_serde", "checkpoint_types", "open_change_marks", "open_checkpointer", "open_store"]

SQLITE_FILE: Final = "checkpoints.sqlite"


def _reachable(roots: Iterable[Any]) -> set[type]:
    """Pydantic models and enums reachable from `roots` through annotations and generic args."""
    found: set[type] = set()
    todo = list(roots)
    seen: set[int] = set()
    while todo:
        tp = todo.pop()
        if id(tp) in seen:
            continue
        seen.add(id(tp))
        todo += typing.get_args(tp)
        if isinstance(tp, types.UnionType):
            continue
        origin = typing.get_origin(tp)
        if origin is not None:
            todo.append(origin)
            continue
        if not isinstance(tp, type):
            continue
        if issubclass(tp, enum.Enum):
            found.add(tp)
        elif issubclass(tp, BaseModel):
            if tp.__module__.startswith("fhir.resources"):
                continue  # dumped as plain JSON inside our models; never a checkpoint value itself
            found.add(tp)
            todo += [f.annotation for f in tp.model_fields.values()]
        elif typing.is_typeddict(tp):
            todo += list(typing.get_type_hints(tp).values())
    return found


def checkpoint_types() -> set[type]:
    """Every type of ours a checkpoint of the summarization or chat graph may hold."""
    from agent.chat.state import ChatState
    from agent.nodes.plan_work import ComparisonTask, DocumentTask
    from agent.nodes.read_study import StudyTask
    from agent.state import SummarizeState

    return _reachable([SummarizeState, DocumentTask, ComparisonTask, StudyTask, ChatState])


def checkpoint_serde() -> JsonPlusSerializer:
    allowed = sorted((t.__module__, t.__name__) for t in checkpoint_types())
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def _database(settings: Settings) -> Path | str:
    """Where checkpoints and change marks live: a SQLite file (its folder made), or a Postgres URL."""
    url = settings.checkpoint_url
    if url is None or url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")) if url else settings.state_dir / SQLITE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise SettingsError(("CHARTAGENT_CHECKPOINT_URL: use sqlite:///<path> or postgresql://...",))


@asynccontextmanager
async def _one_setup_at_a_time(database: Path) -> AsyncIterator[None]:
    """The SQLite store's migrations (ALTER TABLE) are not safe when two processes run them at once
    (two job workers starting together: "duplicate column name"); a file lock beside the database
    serializes them."""
    with (database.parent / f"{database.name}.setup-lock").open("a") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


_NO_POSTGRES: Final = (
    "CHARTAGENT_CHECKPOINT_URL: Postgres needs the postgres extra (langgraph-checkpoint-postgres)",
)


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    database = _database(settings)
    serde = checkpoint_serde()
    if isinstance(database, Path):
        from agent.checkpoint_blobs import SqliteBlobSaver

        async with SqliteBlobSaver.from_conn_string(str(database)) as saver:
            saver.serde = serde
            yield saver
        return
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        raise SettingsError(_NO_POSTGRES) from None
    async with AsyncPostgresSaver.from_conn_string(database, serde=serde) as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[BaseStore]:
    """The LangGraph store in the checkpointer's database, set up: the change marks of complete
    runs, and the outcomes of a checkpointed batch's finished patients."""
    database = _database(settings)
    if isinstance(database, Path):
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        async with AsyncSqliteStore.from_conn_string(str(database)) as store:
            async with _one_setup_at_a_time(database):
                await store.setup()
            yield store
        return
    try:
        from langgraph.store.postgres.aio import AsyncPostgresStore
    except ImportError:
        raise SettingsError(_NO_POSTGRES) from None
    async with AsyncPostgresStore.from_conn_string(database) as store:
        await store.setup()
        yield store


@asynccontextmanager
async def open_change_marks(settings: Settings, fhir_base_url: str) -> AsyncIterator[ChangeMarks]:
    """The change marks of `fhir_base_url`'s patients, in the checkpointer's database."""
    from agent.planning.change_marks import ChangeMarks

    async with open_store(settings) as store:
        yield ChangeMarks(store, fhir_base_url)
