"""Reads Avro records from a topic with Confluent's own AvroDeserializer and
prints each as one JSON line: {"key", "schema_id", "value"}.

Used by Sluice's wire-format tests as an independent reader: if Confluent's
client decodes what Sluice wrote, any client of the Confluent ecosystem can.
"""

import argparse
import datetime
import json
import sys
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def to_json(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (uuid.UUID, bytes)):
        return str(value) if isinstance(value, uuid.UUID) else value.hex()
    raise TypeError(f"cannot print {type(value)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"confluent-interop-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    read = 0
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
    try:
        while read < args.count and datetime.datetime.now() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(message.error())
            raw = message.value()
            value = deserializer(raw, SerializationContext(args.topic, MessageField.VALUE))
            print(json.dumps({
                "key": message.key().decode("utf-8") if message.key() is not None else None,
                "schema_id": int.from_bytes(raw[1:5], "big"),
                "value": value,
            }, default=to_json))
            read += 1
    finally:
        consumer.close()
    if read < args.count:
        sys.exit(f"read {read} of {args.count} records from {args.topic} in {args.timeout}s")


if __name__ == "__main__":
    main()
