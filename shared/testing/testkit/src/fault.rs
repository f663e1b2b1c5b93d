//! librdkafka's own fault injection, for tests of what a service does when
//! librdkafka gives up on a client. The test kit is the one crate allowed
//! `unsafe`, for this one call: rdkafka does not wrap it.

use std::ffi::CStr;

use rdkafka::ClientContext;
use rdkafka::bindings::{rd_kafka_resp_err_t, rd_kafka_test_fatal_error};
use rdkafka::client::Client;

/// Raises a fatal error on `client` exactly as librdkafka raises one when an
/// idempotent producer can no longer keep its ordering guarantee (an
/// out-of-order sequence the broker refused): every later send fails, and the
/// client's context hears `_FATAL` with `reason` in its text. `false` when the
/// client already had a fatal error.
#[allow(unsafe_code)]
pub fn raise_fatal_error<C: ClientContext>(client: &Client<C>, reason: &CStr) -> bool {
    // SAFETY: the pointer is the live handle `client` owns for the whole
    // call, and librdkafka copies `reason` before it returns.
    let raised = unsafe {
        rd_kafka_test_fatal_error(
            client.native_ptr(),
            rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    raised == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}
