"""The Kafka source's raw-record path (sources/kafka_records.py) on record batches built as a broker sends them."""

from __future__ import annotations

import struct

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from streamalert.sources.kafka_records import install, raw_values

TP = TopicPartition("logs", 0)


def _batch(base_offset: int, values: list[bytes | None]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_700_000_000_000, key=None, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = struct.pack(">q", base_offset)  # the broker's offset (not covered by the CRC)
    return bytes(data)


def _records(data: bytes, fetch_offset: int, deserializer: object) -> fetcher.PartitionRecords:
    return fetcher.PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, deserializer, True, fetcher.READ_UNCOMMITTED
    )


def test_the_raw_path_is_installed_on_the_pinned_aiokafka() -> None:
    assert install()
    assert fetcher.PartitionRecords.__name__ == "_RawPartitionRecords"


def test_raw_records_come_one_list_per_batch_from_the_fetch_offset_on() -> None:
    install()
    data = _batch(10, [b"a", b"b", b"c", None]) + _batch(14, [b"d", b"e"])
    records = _records(data, 12, raw_values)  # fetched from the middle of the first batch
    chunks = list(records)
    assert [[(r.offset, r.value) for r in chunk] for chunk in chunks] == [
        [(12, b"c"), (13, None)],
        [(14, b"d"), (15, b"e")],
    ]
    assert records.next_fetch_offset == 16


def test_other_consumers_keep_aiokafkas_consumer_records() -> None:
    install()
    data = _batch(10, [b"a", b"b"])
    got = list(_records(data, 11, None))
    assert [type(r) for r in got] == [ConsumerRecord]
    assert [(r.topic, r.partition, r.offset, r.value) for r in got] == [("logs", 0, 11, b"b")]
