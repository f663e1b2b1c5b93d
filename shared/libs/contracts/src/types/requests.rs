use serde::{Deserialize, Serialize};

/// `dev.sluice.requests.RequestEvent`: one event of a customer request, as
/// published on `requests.events.v1` (schemas/requests/RequestEvent.avsc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// Stable id of the event (a UUID).
    pub event_id: String,
    /// Name of the payload's record.
    pub event_type: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// The request id; also the Kafka key.
    pub aggregate_id: String,
    /// Shared by everything one business request caused.
    pub correlation_id: Option<String>,
    /// The event or command that caused this one.
    pub causation_id: Option<String>,
    /// The event itself.
    pub payload: RequestPayload,
}

/// The union of request events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestPayload {
    /// A customer opened a request.
    RequestCreated(RequestCreated),
    /// Its status changed.
    RequestStatusChanged(RequestStatusChanged),
    /// Someone commented.
    CommentAdded(CommentAdded),
}

/// `dev.sluice.requests.RequestPriority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestPriority {
    /// A priority this reader does not know.
    Unknown,
    /// Low.
    Low,
    /// Normal.
    Normal,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

/// `dev.sluice.requests.RequestStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    /// A status this reader does not know.
    Unknown,
    /// Open.
    Open,
    /// Being worked on.
    InProgress,
    /// Waiting for the customer.
    Waiting,
    /// Resolved.
    Resolved,
    /// Closed.
    Closed,
}

/// `dev.sluice.requests.RequestCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCreated {
    /// Who asked.
    pub requester_email: String,
    /// One-line summary.
    pub subject: String,
    /// Full text.
    pub description: String,
    /// Priority at creation.
    pub priority: RequestPriority,
    /// Free-form category.
    pub category: Option<String>,
}

/// `dev.sluice.requests.RequestStatusChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatusChanged {
    /// Before.
    pub from_status: RequestStatus,
    /// After.
    pub to_status: RequestStatus,
    /// Agent or service that changed it.
    pub changed_by: String,
}

/// `dev.sluice.requests.CommentAdded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAdded {
    /// Comment id in the source system.
    pub comment_id: String,
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::round_trip;

    #[test]
    fn every_request_event_round_trips_through_its_schema() {
        for payload in [
            RequestPayload::RequestCreated(RequestCreated {
                requester_email: "a@example.org".into(),
                subject: "s".into(),
                description: "d".into(),
                priority: RequestPriority::Urgent,
                category: None,
            }),
            RequestPayload::RequestStatusChanged(RequestStatusChanged {
                from_status: RequestStatus::Open,
                to_status: RequestStatus::InProgress,
                changed_by: "agent-7".into(),
            }),
            RequestPayload::CommentAdded(CommentAdded {
                comment_id: "c".into(),
                author: "a".into(),
                body: "b".into(),
            }),
        ] {
            let event = RequestEvent {
                event_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                event_type: "any".into(),
                occurred_at: 1,
                aggregate_id: "req-1".into(),
                correlation_id: None,
                causation_id: Some("x".into()),
                payload,
            };
            round_trip("requests.events.v1", &event);
        }
    }
}
