//! Why a sink did not settle a command (this time), the same for every sink
//! but for its upstream's own error: what each case means for the loop
//! (retry, pause, dead-letter) and for the dead letter's class.

use sluice_avro::CodecError;
use sluice_contracts::types::DeadLetterClass;
use sluice_resilience::{Classified, ErrorClass};

use crate::{HandlerError, ReplyError};

/// Why a command was not settled; `E` is the upstream API's error.
#[derive(Debug, thiserror::Error)]
pub enum SinkError<E> {
    /// The message has no value.
    #[error("the message has no value")]
    Empty,
    /// Not the command the topic carries.
    #[error("decoding the command: {0}")]
    Decode(#[from] CodecError),
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(E),
    /// The reply to a saga could not be written; the command is applied
    /// again (which changes nothing) and answered then.
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

impl<E: HandlerError> Classified for SinkError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Empty => ErrorClass::Permanent,
            // The registry being away is no reason to dead-letter a command.
            Self::Decode(codec) | Self::Reply(ReplyError::Encode(codec)) if codec.holds() => {
                ErrorClass::Pause
            }
            Self::Decode(_) => ErrorClass::Permanent,
            Self::Reply(_) => ErrorClass::Retryable,
            Self::Upstream(err) => err.class(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Upstream(err) => err.retry_after(),
            _ => None,
        }
    }
}

impl<E: HandlerError> HandlerError for SinkError<E> {
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::Empty | Self::Decode(_) => DeadLetterClass::Decode,
            Self::Upstream(err) => err.dead_letter_class(),
            Self::Reply(_) => DeadLetterClass::Permanent,
        }
    }
}
