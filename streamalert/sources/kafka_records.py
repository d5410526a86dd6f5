"""Fetched Kafka records without aiokafka's per-record `ConsumerRecord`.

aiokafka turns every record it fetches into a `ConsumerRecord` dataclass (eleven fields, a copy of the headers,
key and value sizes) in a Python generator: about half of a bare consumer's CPU time here (bench/README.md,
"Live benchmark"). The source reads two fields of a record, its offset and its value. A consumer created with
`value_deserializer=raw_values` (and no key deserializer, read_uncommitted) gets, for each record batch of
the log, one list of the record objects aiokafka's C record parser makes (they have `offset`, `value`, `key`,
`timestamp`, `headers`), with the same bookkeeping as aiokafka's own loop: CRC check, control batches passed
over, records below the fetch offset dropped, the next fetch offset moved past the batch. So `getmany` maps
each partition to a list of such lists, and `max_records` counts lists, not records: such a consumer is
created with `max_poll_records=None` and its user bounds its own batches (a fetch response is bounded by
`max_partition_fetch_bytes` per partition anyway). That takes aiokafka's per-record Python work (a generator
step, a ConsumerRecord, a list append in `getall`) out of the way: about 1.5 us a record here.

aiokafka builds each partition's records in `aiokafka.consumer.fetcher.PartitionRecords` (looked up in that
module when a fetch response arrives); `install()` puts the subclass below in its place. Any other consumer
in the process (another deserializer, read_committed) takes aiokafka's own path unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException


def raw_values(value: bytes | None) -> bytes | None:
    """The marker deserializer (the identity, should aiokafka's own path ever call it)."""
    return value


class _RawPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    def _unpack_records(self) -> Iterator[Any]:
        if (
            self._value_deserializer is not raw_values
            or self._key_deserializer is not None
            or self._isolation_level != fetcher.READ_UNCOMMITTED
        ):
            yield from super()._unpack_records()
            return
        records, check_crcs = self._records, self._check_crcs
        while records.has_next():
            batch = records.next_batch()
            if check_crcs and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {self._tp}")
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            chunk = list(batch)  # the records, made by the C parser in one call
            floor = self.next_fetch_offset
            if chunk and chunk[0].offset < floor:  # a batch fetched from its middle: its start was read before
                chunk = [record for record in chunk if record.offset >= floor]
            # past every record of the batch, and past records compacted away at its end
            self.next_fetch_offset = batch.next_offset
            if chunk:
                yield chunk


def install() -> bool:
    """Put the raw-record path in place (once); False when this aiokafka does not have the expected shape."""
    current = getattr(fetcher, "PartitionRecords", None)
    if current is _RawPartitionRecords:
        return True
    if current is not _RawPartitionRecords.__mro__[1] or not hasattr(current, "_unpack_records"):
        return False
    fetcher.PartitionRecords = _RawPartitionRecords
    return True
