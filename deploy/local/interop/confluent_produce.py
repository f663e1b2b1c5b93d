"""Produces records to a topic with Confluent's own client, as a user's
service would: each input line (JSON) is one record,

  {"key": str|null, "key_hex": hex, "value": ...|null,
   "headers": [{"name": str, "name_hex": hex, "value": str|null}, ...],
   "timestamp": ms, "compression": "none|gzip|snappy|lz4|zstd",
   "transaction": "commit|abort"}

(every field but "value" optional; "key_hex" and "name_hex" give bytes
that need not be UTF-8; a null value is a tombstone).

With --schema FILE, values are Avro: Confluent's AvroSerializer registers
the schema under "<topic>-value" (or under --subject) as any producer with
auto.register.schemas does, and writes its id. Without it, a value is sent
as its UTF-8 string.

Records go in order, each its own batch (flushed before the next is sent:
the broker refuses a whole batch for one bad record, such as a timestamp
out of its bounds). A run of records with the same "transaction" goes in
one transaction of a transactional producer, committed or aborted.

Prints {"schema_id": id|null, "errors": [null|"broker's error", ...]},
one error per record.
"""

import argparse
import json
import sys
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def text_or_hex(field, name):
    """The bytes of field[name], or of field[name + "_hex"]; None if neither."""
    if field.get(name + "_hex") is not None:
        return bytes.fromhex(field[name + "_hex"])
    if field.get(name) is not None:
        return field[name].encode("utf-8")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", help="an .avsc file: values are Avro records of it")
    parser.add_argument("--subject", help="the subject to register it under")
    args = parser.parse_args()

    serialize = None
    if args.schema:
        config = {}
        if args.subject:
            config["subject.name.strategy"] = lambda _ctx, _name: args.subject
        with open(args.schema, encoding="utf-8") as schema:
            serializer = AvroSerializer(
                SchemaRegistryClient({"url": args.registry}), schema.read(), conf=config
            )
        context = SerializationContext(args.topic, MessageField.VALUE)
        serialize = lambda value: serializer(value, context)

    records = [json.loads(line) for line in sys.stdin if line.strip()]
    errors = [None] * len(records)
    schema_id = None

    def delivered(index):
        def report(err, _msg):
            if err is not None:
                errors[index] = str(err)
        return report

    producer, settings = None, None
    for index, record in enumerate(records):
        wanted = (record.get("compression", "none"), record.get("transaction"))
        if producer is None or wanted != settings:
            end(producer, settings)
            config = {
                "bootstrap.servers": args.bootstrap,
                "compression.type": wanted[0],
                "enable.idempotence": True,
            }
            if wanted[1]:
                config["transactional.id"] = f"interop-{uuid.uuid4()}"
            producer, settings = Producer(config), wanted
            if wanted[1]:
                producer.init_transactions(30)
                producer.begin_transaction()
        value = record["value"]
        if value is not None:
            if serialize:
                value = serialize(value)
                schema_id = int.from_bytes(value[1:5], "big")
            else:
                value = value.encode("utf-8")
        headers = [
            (text_or_hex(header, "name"), text_or_hex(header, "value"))
            for header in record.get("headers", [])
        ]
        producer.produce(
            args.topic,
            key=text_or_hex(record, "key"),
            value=value,
            headers=headers or None,
            timestamp=record.get("timestamp", 0),
            on_delivery=delivered(index),
        )
        if not wanted[1] and producer.flush(30) != 0:
            sys.exit("a record not delivered in 30 s")
    end(producer, settings)
    print(json.dumps({"schema_id": schema_id, "errors": errors}))


def end(producer, settings):
    """Delivers what `producer` holds; ends its transaction as asked."""
    if producer is None:
        return
    if settings[1] == "commit":
        producer.commit_transaction(30)
    elif settings[1] == "abort":
        producer.flush(30)
        producer.abort_transaction(30)
    elif settings[1]:
        sys.exit(f"a transaction is committed or aborted, not {settings[1]!r}")
    if producer.flush(30) != 0:
        sys.exit("records not delivered in 30 s")


if __name__ == "__main__":
    main()
