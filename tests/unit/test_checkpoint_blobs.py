"""The SQLite checkpointer that stores each channel's value once per version
(`agent.checkpoint_blobs.SqliteBlobSaver`), against LangGraph's in-memory saver as the reference."""

from __future__ import annotations

import contextlib
import operator
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from agent.checkpoint_blobs import SqliteBlobSaver

BIG = "x" * 200_000  # a record-sized value (a long string is stored apart too), set once


class State(TypedDict, total=False):
    big: str
    record: dict[str, Any]
    n: int
    log: Annotated[list[str], operator.add]


class Failing(Exception):
    pass


def graph(fail_at: int | None = None, calls: list[str] | None = None) -> StateGraph[State]:
    builder = StateGraph(State)

    def read(state: State) -> State:
        (calls if calls is not None else []).append("read")
        return {"big": BIG, "record": {"id": "p1", "items": list(range(1000))}, "n": 0, "log": ["read"]}

    def step(i: int) -> Any:
        def run(state: State) -> State:
            (calls if calls is not None else []).append(f"step{i}")
            if fail_at == i:
                raise Failing(i)
            update: State = {"n": state["n"] + 1, "log": [f"step{i}"]}
            if i == 3:  # the record changes once, midway (the transcribed values joining it)
                update["record"] = {**state["record"], "joined": True}
            return update

        return run

    builder.add_node("read", read)
    builder.add_edge(START, "read")
    previous = "read"
    for i in range(1, 6):
        builder.add_node(f"step{i}", step(i))
        builder.add_edge(previous, f"step{i}")
        previous = f"step{i}"
    builder.add_edge(previous, END)
    return builder


def config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}}


def blob_rows(database: Path, channel: str) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(
            db.execute("SELECT COUNT(*) FROM checkpoint_blobs WHERE channel = ?", (channel,)).fetchone()[0]
        )


def checkpoint_bytes(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT COALESCE(SUM(LENGTH(checkpoint)), 0) FROM checkpoints").fetchone()[0])


async def history(
    saver: BaseCheckpointSaver[Any], thread: str
) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    app = graph().compile(checkpointer=saver)
    return [(dict(s.values), s.next) async for s in app.aget_state_history(config(thread))]


async def test_a_value_is_stored_once_per_version_and_every_step_reads_back_as_in_memory(
    tmp_path: Path,
) -> None:
    database = tmp_path / "c.sqlite"
    reference = InMemorySaver()
    expected = await graph().compile(checkpointer=reference).ainvoke({}, config("t"))
    async with SqliteBlobSaver.from_conn_string(str(database)) as saver:
        final = await graph().compile(checkpointer=saver).ainvoke({}, config("t"))
        assert final == expected
        steps = await history(saver, "t")
        assert steps == await history(reference, "t")
        assert len(steps) == 8  # the input, START, read and the five steps
    assert blob_rows(database, "big") == 1
    assert blob_rows(database, "record") == 2  # read, and once more when it changed
    assert checkpoint_bytes(database) < len(BIG)  # no checkpoint holds the big value


async def test_langgraphs_own_sqlite_saver_writes_the_value_at_every_step(tmp_path: Path) -> None:
    """What the saver above avoids (and so what its size check would catch)."""
    database = tmp_path / "c.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(database)) as saver:
        await graph().compile(checkpointer=saver).ainvoke({}, config("t"))
    assert checkpoint_bytes(database) > 5 * len(BIG)


@pytest.mark.parametrize("first", [SqliteBlobSaver, AsyncSqliteSaver])
async def test_a_run_that_failed_resumes_at_its_step_also_from_a_plain_sqlite_checkpoint(
    tmp_path: Path, first: type[AsyncSqliteSaver]
) -> None:
    """A run interrupted under either saver resumes under this one, with every value."""
    database = tmp_path / "c.sqlite"
    async with first.from_conn_string(str(database)) as saver:
        calls: list[str] = []
        with pytest.raises(Failing):
            await graph(fail_at=4, calls=calls).compile(checkpointer=saver).ainvoke({}, config("t"))
        assert calls == ["read", "step1", "step2", "step3", "step4"]
    async with SqliteBlobSaver.from_conn_string(str(database)) as saver:
        calls = []
        final = await graph(calls=calls).compile(checkpointer=saver).ainvoke(None, config("t"))
        assert calls == ["step4", "step5"]  # nothing before the failed step runs again
        assert final["big"] == BIG
        assert final["record"]["joined"] is True
        assert final["n"] == 5
        assert final["log"] == ["read", "step1", "step2", "step3", "step4", "step5"]
        # Reopened, the finished thread reads back whole.
    async with SqliteBlobSaver.from_conn_string(str(database)) as saver:
        snapshot = await graph().compile(checkpointer=saver).aget_state(config("t"))
        assert snapshot.values == final
        assert snapshot.next == ()


async def test_deleting_a_thread_deletes_its_values_and_no_other_threads(tmp_path: Path) -> None:
    database = tmp_path / "c.sqlite"
    async with SqliteBlobSaver.from_conn_string(str(database)) as saver:
        app = graph().compile(checkpointer=saver)
        await app.ainvoke({}, config("a"))
        kept = await app.ainvoke({}, config("b"))
        await saver.adelete_thread("a")
        assert await saver.aget_tuple(config("a")) is None
        assert (await app.aget_state(config("b"))).values == kept
    assert blob_rows(database, "big") == 1
