"""Produces records to a topic with Confluent's own client, as a user's
service would: each input line (JSON) is one record,
{"key": str|null, "value": ..., "compression": "none|gzip|snappy|lz4|zstd"}.

With --schema FILE, values are Avro: Confluent's AvroSerializer registers
the schema under "<topic>-value" (as any producer with auto.register.schemas
does) and writes its id. Without it, a value is sent as its UTF-8 string.
Records are sent in order, one producer per run of equal compression, each
flushed before the next starts, so the log order is the input order. Prints
the schema id used, if any.
"""

import argparse
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", help="an .avsc file: values are Avro records of it")
    args = parser.parse_args()

    serialize = None
    if args.schema:
        with open(args.schema, encoding="utf-8") as schema:
            serializer = AvroSerializer(
                SchemaRegistryClient({"url": args.registry}), schema.read()
            )
        context = SerializationContext(args.topic, MessageField.VALUE)
        serialize = lambda value: serializer(value, context)

    producer, compression, schema_id = None, None, None
    for line in sys.stdin:
        if not line.strip():
            continue
        record = json.loads(line)
        wanted = record.get("compression", "none")
        if producer is None or wanted != compression:
            if producer is not None and producer.flush(30) != 0:
                sys.exit("records not delivered in 30 s")
            producer = Producer({
                "bootstrap.servers": args.bootstrap,
                "compression.type": wanted,
                "enable.idempotence": True,
            })
            compression = wanted
        value = record["value"]
        if serialize:
            value = serialize(value)
            schema_id = int.from_bytes(value[1:5], "big")
        elif value is not None:
            value = value.encode("utf-8")
        key = record.get("key")
        producer.produce(args.topic, key=key.encode("utf-8") if key else None, value=value)
    if producer is not None and producer.flush(30) != 0:
        sys.exit("records not delivered in 30 s")
    print(json.dumps({"schema_id": schema_id}))


if __name__ == "__main__":
    main()
