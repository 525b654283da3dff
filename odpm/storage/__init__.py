"""Storage that loses nothing: the SQLite journal, the InfluxDB forwarder, rollups, history.

See ``docs/schema.md`` for what lands in InfluxDB and ``docs/architecture.md``
for how the service wires these together.
"""

from odpm.config import InfluxConfig
from odpm.storage.history import (
    MAX_BUCKETS,
    MIN_RAW_EVERY_S,
    MIN_ROLLUP_EVERY_S,
    RAW_RANGE_LIMIT_S,
    Aggregates,
    ChannelHistory,
    HistoryBackendError,
    HistoryQueryError,
    HistoryStore,
    InfluxHistory,
    InvalidChannelError,
    InvalidRangeError,
    JournalHistory,
    ResolutionTooFineError,
    TooManyBucketsError,
)
from odpm.storage.influx import Forwarder, ForwarderStats
from odpm.storage.influx_writers import (
    AuthWriteError,
    MissingTargetError,
    PausedWriteError,
    RejectedBatchError,
    TransientWriteError,
    V1Writer,
    V2Writer,
    WriteError,
)
from odpm.storage.journal import (
    JOURNAL_FILE,
    Backlog,
    Journal,
    JournalClosedError,
    JournalStats,
    QuarantinedBatch,
)


def history_store(journal: Journal, influx: InfluxConfig | None = None) -> HistoryStore:
    """InfluxDB when configured, else the journal: what the API should query."""
    if influx is not None and influx.enabled:
        return InfluxHistory(influx)
    return JournalHistory(journal)


__all__ = [
    "JOURNAL_FILE",
    "MAX_BUCKETS",
    "MIN_RAW_EVERY_S",
    "MIN_ROLLUP_EVERY_S",
    "RAW_RANGE_LIMIT_S",
    "Aggregates",
    "AuthWriteError",
    "Backlog",
    "ChannelHistory",
    "Forwarder",
    "ForwarderStats",
    "HistoryBackendError",
    "HistoryQueryError",
    "HistoryStore",
    "InfluxHistory",
    "InvalidChannelError",
    "InvalidRangeError",
    "Journal",
    "JournalClosedError",
    "JournalHistory",
    "JournalStats",
    "MissingTargetError",
    "PausedWriteError",
    "QuarantinedBatch",
    "RejectedBatchError",
    "ResolutionTooFineError",
    "TooManyBucketsError",
    "TransientWriteError",
    "V1Writer",
    "V2Writer",
    "WriteError",
    "history_store",
]
