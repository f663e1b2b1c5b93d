//! A consumed message, detached with header names it can be read by.
//!
//! Hand-written because rdkafka 0.39 cannot do it: `Headers::try_get`
//! unwraps each name as UTF-8, and Kafka lets a producer write any bytes
//! there (Java's client cannot, but librdkafka and kcat can: `kcat -H
//! $'\xff\xfe'=v`). Iterating such a record's headers — for its trace
//! context, for its dead letter — panicked the loop on it, and again on the
//! same offset after every restart: one record from kcat wedged the
//! partition (`sluice-transformer --test users_records`). The names are read
//! here as bytes with librdkafka's own call; the rare message with a name
//! that is not UTF-8 is rebuilt with it decoded as Java's client decodes it
//! (each invalid sequence becomes U+FFFD), and everything after reads it
//! through rdkafka as usual. The check costs one call per header.
#![allow(unsafe_code)]

use std::ffi::CStr;

use rdkafka::Message;
use rdkafka::bindings as rdsys;
use rdkafka::message::{
    BorrowedHeaders, BorrowedMessage, Header, Headers, OwnedHeaders, OwnedMessage,
};

/// `message` as an [`OwnedMessage`] whose header names are all UTF-8.
pub(crate) fn detach(message: &BorrowedMessage<'_>) -> OwnedMessage {
    let Some(headers) = message.headers() else {
        return message.detach();
    };
    let raw: Vec<RawHeader<'_>> = (0..headers.count())
        .filter_map(|index| raw_header(headers, index))
        .collect();
    if raw
        .iter()
        .all(|header| std::str::from_utf8(header.name).is_ok())
    {
        return message.detach();
    }
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        "a header name is not UTF-8; it is read with U+FFFD in place of its invalid bytes"
    );
    let rebuilt = raw
        .iter()
        .fold(OwnedHeaders::new_with_capacity(raw.len()), |all, header| {
            all.insert(Header {
                key: &String::from_utf8_lossy(header.name),
                value: header.value,
            })
        });
    OwnedMessage::new(
        message.payload().map(<[u8]>::to_vec),
        message.key().map(<[u8]>::to_vec),
        message.topic().to_owned(),
        message.timestamp(),
        message.partition(),
        message.offset(),
        Some(rebuilt),
    )
}

/// A header as librdkafka holds it.
struct RawHeader<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
}

/// Header `index` of `headers`, its name as bytes.
fn raw_header(headers: &BorrowedHeaders, index: usize) -> Option<RawHeader<'_>> {
    let mut name = std::ptr::null();
    let mut value = std::ptr::null();
    let mut size = 0;
    // SAFETY: a `&BorrowedHeaders` is rdkafka's view of a live
    // `rd_kafka_headers_t`: its address is that list's (rdkafka makes one
    // by casting the pointer). librdkafka sets `name` to the NUL-terminated
    // name and `value` to `size` bytes (or null), both owned by the list,
    // which outlives the borrow of `headers` they are tied to.
    let err = unsafe {
        rdsys::rd_kafka_header_get_all(
            std::ptr::from_ref(headers).cast::<rdsys::rd_kafka_headers_t>(),
            index,
            &mut name,
            &mut value,
            &mut size,
        )
    };
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: as above; a null value is a header without one.
    let (name, value) = unsafe {
        (
            CStr::from_ptr(name).to_bytes(),
            (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size)),
        )
    };
    Some(RawHeader { name, value })
}
