"""The SQLite checkpointer, storing each channel's value once per version (as Postgres does).

LangGraph's `AsyncSqliteSaver` writes every channel's value into every checkpoint. A summarization
run checkpoints about a dozen steps, and its state holds the patient's record (about 0.9 MB on the
bench cohort) from the second step on: the same record serialized and written at each step. Here a
checkpoint keeps its small values (numbers, short strings) inline and names the versions of the others
(`channel_versions`, which every checkpoint has); a value is written to `checkpoint_blobs` only
when its channel has a new version. The record is then written when it is read and when the
transcribed lab values join it, not at every step. Reading a checkpoint joins its values back.

Checkpoints written by `AsyncSqliteSaver` (every value inline) are read as they are: the values
found in `checkpoint_blobs` are added to those already in the checkpoint. A value whose current
version has no blob yet (such a checkpoint's, continued here) is written with the next checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

__all__ = ["SqliteBlobSaver"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
)
"""
# A string longer than this (a narrative, say) is stored as a value of its own.
_INLINE_CHARS: Final = 1024


def _inline(value: Any) -> bool:
    """Small values stay in the checkpoint itself."""
    if isinstance(value, str):
        return len(value) <= _INLINE_CHARS
    return value is None or isinstance(value, int | float | bool)


class SqliteBlobSaver(AsyncSqliteSaver):
    """`AsyncSqliteSaver` with channel values stored once per channel version."""

    _blobs_ready = False

    async def setup(self) -> None:
        await super().setup()
        if self._blobs_ready:
            return
        async with self.lock:
            await self.conn.execute(_SCHEMA)
            await self.conn.commit()
            self._blobs_ready = True

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        await self.setup()
        thread_id = str(config["configurable"]["thread_id"])
        namespace = str(config["configurable"].get("checkpoint_ns", ""))
        versions = checkpoint["channel_versions"]
        # A value without a version could not be found again apart: it stays inline too.
        kept = {k: v for k, v in checkpoint["channel_values"].items() if _inline(v) or k not in versions}
        apart = {k: v for k, v in checkpoint["channel_values"].items() if k not in kept}
        # Each value apart whose current version has no stored copy yet: a new version, or one a
        # checkpoint written with every value inline left (an absent row reads as no value).
        stored = await self._stored_versions(thread_id, namespace)
        rows = [
            (thread_id, namespace, channel, str(versions[channel]), *self.serde.dumps_typed(value))
            for channel, value in apart.items()
            if (channel, str(versions[channel])) not in stored
        ]
        if rows:
            async with self.lock:
                await self.conn.executemany(
                    "INSERT OR IGNORE INTO checkpoint_blobs"
                    " (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                # Committed by the checkpoint's own insert below, on the same connection.
        return await super().aput(config, {**checkpoint, "channel_values": kept}, metadata, new_versions)

    async def _stored_versions(self, thread_id: str, namespace: str) -> set[tuple[str, str]]:
        async with (
            self.lock,
            self.conn.execute(
                "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ?",
                (thread_id, namespace),
            ) as cursor,
        ):
            return {(str(c), str(v)) for c, v in await cursor.fetchall()}

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        found = await super().aget_tuple(config)
        return None if found is None else (await self._joined([found]))[0]

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # Read whole first: the parent's listing holds the connection's lock while it yields.
        listed = [t async for t in super().alist(config, filter=filter, before=before, limit=limit)]
        for found in await self._joined(listed):
            yield found

    async def _joined(self, tuples: Sequence[CheckpointTuple]) -> list[CheckpointTuple]:
        """Each checkpoint with its stored values joined back."""
        joined: list[CheckpointTuple] = []
        for found in tuples:
            configurable = found.config["configurable"]
            wanted = [
                (str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", "")), c, str(v))
                for c, v in found.checkpoint["channel_versions"].items()
                if c not in found.checkpoint["channel_values"]
            ]
            values = dict(found.checkpoint["channel_values"])
            async with self.lock:
                for key in wanted:
                    async with self.conn.execute(
                        "SELECT type, blob FROM checkpoint_blobs"
                        " WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
                        key,
                    ) as cursor:
                        row = await cursor.fetchone()
                    if row is not None:
                        values[key[2]] = self.serde.loads_typed((row[0], row[1]))
            joined.append(found._replace(checkpoint={**found.checkpoint, "channel_values": values}))
        return joined

    async def adelete_thread(self, thread_id: str) -> None:
        await self.setup()
        await super().adelete_thread(thread_id)
        async with self.lock:
            await self.conn.execute("DELETE FROM checkpoint_blobs WHERE thread_id = ?", (str(thread_id),))
            await self.conn.commit()
