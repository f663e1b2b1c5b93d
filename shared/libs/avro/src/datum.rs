//! Avro readers and writers built once per schema and kept with it.
//!
//! Building one resolves its schema's names (apache-avro's
//! `ResolvedSchema`: a map of every named type), and the registry client's
//! decoder copies that map for every record it decodes. Built per record,
//! they showed in a perf profile of `make bench`'s transformer run
//! (`GenericDatumWriter::new` alone 3.4 % of the process, the decoder's copy
//! and the allocations behind both besides). Kept, the transformer bench's
//! runs interleaved before/after on this machine: the transformer 32 007 and
//! 33 386 → 38 710 and 36 972 events/s, the mapping alone 134 823 and
//! 134 492 → 142 073 and 160 110. A reader or writer borrows its schema, so
//! each is kept together with the schema it borrows (ouroboros).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::avro_common::AvroSchema;

/// A reader of values written with one registered schema.
#[ouroboros::self_referencing]
pub(crate) struct Reader {
    schema: Arc<AvroSchema>,
    #[borrows(schema)]
    #[covariant]
    reader: GenericDatumReader<'this>,
}

impl Reader {
    /// The reader.
    pub fn get(&self) -> &GenericDatumReader<'_> {
        self.borrow_reader()
    }
}

/// A writer of values with one schema.
#[ouroboros::self_referencing]
pub(crate) struct Writer {
    schema: Arc<Schema>,
    #[borrows(schema)]
    #[covariant]
    writer: GenericDatumWriter<'this>,
}

impl Writer {
    /// The writer.
    pub fn get(&self) -> &GenericDatumWriter<'_> {
        self.borrow_writer()
    }
}

/// The readers by the id of the schema their values were written with, and
/// the writers by the schema they write (its address: the entry keeps the
/// schema, so no other schema can take that address while it is cached).
/// A process reads and writes a handful of schemas.
#[derive(Default)]
pub(crate) struct Datum {
    readers: RwLock<HashMap<u32, Arc<Reader>>>,
    writers: RwLock<HashMap<usize, Arc<Writer>>>,
}

impl std::fmt::Debug for Datum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datum")
            .field("readers", &self.readers.read().map_or(0, |map| map.len()))
            .field("writers", &self.writers.read().map_or(0, |map| map.len()))
            .finish()
    }
}

impl Datum {
    /// The reader for values written with schema `id`, which is `schema`.
    pub fn reader(&self, id: u32, schema: Arc<AvroSchema>) -> apache_avro::AvroResult<Arc<Reader>> {
        kept(&self.readers, id, || {
            ReaderTryBuilder {
                schema,
                reader_builder: |schema: &Arc<AvroSchema>| {
                    GenericDatumReader::builder(&schema.parsed).build()
                },
            }
            .try_build()
        })
    }

    /// The writer for `schema`.
    pub fn writer(&self, schema: Arc<Schema>) -> apache_avro::AvroResult<Arc<Writer>> {
        kept(&self.writers, Arc::as_ptr(&schema) as usize, || {
            WriterTryBuilder {
                schema,
                writer_builder: |schema: &Arc<Schema>| GenericDatumWriter::builder(schema).build(),
            }
            .try_build()
        })
    }
}

/// The value kept under `key`, built and kept on first use.
fn kept<K: std::hash::Hash + Eq, V>(
    map: &RwLock<HashMap<K, Arc<V>>>,
    key: K,
    build: impl FnOnce() -> apache_avro::AvroResult<V>,
) -> apache_avro::AvroResult<Arc<V>> {
    if let Some(value) = map.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return Ok(Arc::clone(value));
    }
    let value = Arc::new(build()?);
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    Ok(Arc::clone(map.entry(key).or_insert(value)))
}
