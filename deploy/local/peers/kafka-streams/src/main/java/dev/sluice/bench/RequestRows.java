package dev.sluice.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The transformer's requests-sheet-status rule as a Kafka Streams app:
 * RequestStatusChanged events whose to_status is IN_PROGRESS, RESOLVED or
 * CLOSED become SheetRowUpsert commands for the Requests sheet, with the
 * same command id (UUID v5 of "event_id/rule"), key and cells, in the
 * Confluent wire format with the registry's schema ids. Exactly once.
 *
 * <p>Arguments: bootstrap, registry URL, input topic, output topic, application id.
 */
public final class RequestRows {
  private static final String RULE = "requests-sheet-status";
  private static final UUID NAMESPACE = UUID.fromString("6a1f3c2e-9b4d-5e70-8f21-0c3d4b5a6978");
  private static final Set<String> MOVES = Set.of("IN_PROGRESS", "RESOLVED", "CLOSED");

  private final Registry registry;
  private final Schema output;
  private final int outputId;
  private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new ConcurrentHashMap<>();

  private RequestRows(Registry registry, String outputTopic) throws IOException, InterruptedException {
    this.registry = registry;
    JsonNode latest = registry.get("/subjects/" + outputTopic + "-value/versions/latest");
    this.output = new Schema.Parser().parse(latest.get("schema").asText());
    this.outputId = latest.get("id").asInt();
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String input = args[2];
    String outputTopic = args[3];
    RequestRows rows = new RequestRows(new Registry(args[1]), outputTopic);

    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
        .flatMap((key, value) -> rows.map(value))
        .to(outputTopic, Produced.with(Serdes.String(), Serdes.ByteArray()));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[4]);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    // The two cores the transformer has too.
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
    props.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/" + args[4]);
    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      stopped.countDown();
    }));
    streams.start();
    stopped.await();
  }

  private List<KeyValue<String, byte[]>> map(byte[] value) {
    List<KeyValue<String, byte[]>> out = new ArrayList<>(1);
    if (value == null || value.length < 5 || value[0] != 0) {
      return out;
    }
    int id = ByteBuffer.wrap(value, 1, 4).getInt();
    try {
      GenericRecord event = readers.computeIfAbsent(id, this::reader)
          .read(null, DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null));
      GenericRecord payload = (GenericRecord) event.get("payload");
      if (!payload.getSchema().getName().equals("RequestStatusChanged")) {
        return out;
      }
      String toStatus = payload.get("to_status").toString();
      if (!MOVES.contains(toStatus)) {
        return out;
      }
      String eventId = event.get("event_id").toString();
      String request = event.get("aggregate_id").toString();
      Schema cellSchema = output.getField("cells").schema().getElementType();
      List<GenericRecord> cells = List.of(
          cell(cellSchema, "Request", request),
          cell(cellSchema, "Status", toStatus),
          cell(cellSchema, "Changed by", payload.get("changed_by").toString()));
      GenericRecord upsert = new GenericData.Record(output);
      upsert.put("command_id", uuid5(eventId + "/" + RULE).toString());
      upsert.put("spreadsheet_id", "sluice-demo");
      upsert.put("sheet", "Requests");
      upsert.put("row_key", request);
      upsert.put("cells", cells);
      upsert.put("source_event_id", eventId);
      upsert.put("occurred_at", event.get("occurred_at"));
      upsert.put("saga", null);
      // The flow and the cause, as the transformer carries them.
      Object correlation = event.get("correlation_id");
      upsert.put("correlation_id", correlation == null ? null : correlation.toString());
      upsert.put("causation_id", eventId);
      out.add(KeyValue.pair("sluice-demo/Requests/" + request, encode(upsert)));
      return out;
    } catch (IOException e) {
      throw new IllegalStateException("decoding or encoding a record", e);
    }
  }

  private GenericDatumReader<GenericRecord> reader(int id) {
    try {
      Schema writer = new Schema.Parser().parse(registry.get("/schemas/ids/" + id).get("schema").asText());
      return new GenericDatumReader<>(writer);
    } catch (IOException | InterruptedException e) {
      throw new IllegalStateException("fetching schema " + id, e);
    }
  }

  private static GenericRecord cell(Schema schema, String column, String value) {
    GenericRecord cell = new GenericData.Record(schema);
    cell.put("column", column);
    cell.put("value", value);
    return cell;
  }

  private byte[] encode(GenericRecord record) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(256);
    bytes.write(0);
    bytes.write(ByteBuffer.allocate(4).putInt(outputId).array());
    BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(bytes, null);
    new GenericDatumWriter<GenericRecord>(output).write(record, encoder);
    encoder.flush();
    return bytes.toByteArray();
  }

  /** RFC 4122 name-based UUID, SHA-1 (version 5). */
  static UUID uuid5(String name) {
    try {
      MessageDigest sha1 = MessageDigest.getInstance("SHA-1");
      sha1.update(ByteBuffer.allocate(16)
          .putLong(NAMESPACE.getMostSignificantBits())
          .putLong(NAMESPACE.getLeastSignificantBits())
          .array());
      byte[] hash = sha1.digest(name.getBytes(StandardCharsets.UTF_8));
      hash[6] = (byte) ((hash[6] & 0x0f) | 0x50);
      hash[8] = (byte) ((hash[8] & 0x3f) | 0x80);
      ByteBuffer buffer = ByteBuffer.wrap(hash, 0, 16);
      return new UUID(buffer.getLong(), buffer.getLong());
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The registry's Confluent-compatible API. */
  private static final class Registry {
    private final String base;
    private final HttpClient http = HttpClient.newHttpClient();
    private final ObjectMapper json = new ObjectMapper();

    Registry(String base) {
      this.base = base;
    }

    JsonNode get(String path) throws IOException, InterruptedException {
      HttpResponse<String> response = http.send(
          HttpRequest.newBuilder(URI.create(base + path)).GET().build(),
          HttpResponse.BodyHandlers.ofString());
      if (response.statusCode() != 200) {
        throw new IOException(path + ": HTTP " + response.statusCode() + " " + response.body());
      }
      return json.readTree(response.body());
    }
  }
}
