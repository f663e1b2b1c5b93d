//! Where the sink's tokens come from, as Google hands them out: with no key
//! file, the node's metadata server (GKE Workload Identity); with a key and
//! a subject, as a user of the Workspace domain (domain-wide delegation),
//! writing a spreadsheet shared with that user and not with the account.
//! Before, a key file was required, there was no subject, and the sandbox
//! let any token write any spreadsheet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Tuning, command, grid, http, id, paced, sandbox_delegating, sink_key, upserter_with};
use serde_json::Value;
use sluice_resilience::{Classified, ErrorClass};
use sluice_sandbox::Local;
use sluice_sheets_sink::google::TokenSource;
use sluice_testkit::{metric, process_metrics};

/// `host:port` of a base URL, as `GCE_METADATA_HOST` gives it.
fn host(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// The OAuth operations the sandbox logged.
async fn oauth_operations(base: &str) -> Vec<String> {
    let log = Local::at(base).requests("oauth").await.unwrap();
    log.iter()
        .map(|r| format!("{} {}", r["operation"].as_str().unwrap(), r["status"]))
        .collect()
}

#[tokio::test]
async fn with_no_key_tokens_come_from_the_metadata_server() {
    let (base, key, _) = sandbox_delegating(None).await;
    let tokens = TokenSource::metadata(host(&base), http(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(tokens.account(), key.client_email);
    let tuning = Tuning::quick();
    let upserter = upserter_with(&base, tokens, paced(tuning.limiter), tuning.breaker);
    upserter
        .upsert(&[command(&id(1), "k-1", "1.00", None)])
        .await
        .unwrap();
    assert_eq!(grid(&base).await[1][0], "k-1");
    assert_eq!(
        oauth_operations(&base).await,
        ["metadata.email 200", "metadata.token 200"],
        "no key exchange at /token"
    );

    // As GCE: no Metadata-Flavor header, or a proxied request, gets no token.
    let url = format!("{base}/computeMetadata/v1/instance/service-accounts/default/token");
    let bare = reqwest::get(&url).await.unwrap();
    assert_eq!(bare.status().as_u16(), 403);
    let proxied = reqwest::Client::new()
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status().as_u16(), 403);

    // Nowhere to ask: the start fails naming the metadata server.
    let nowhere = sluice_testkit::free_port();
    let err = TokenSource::metadata(&format!("127.0.0.1:{nowhere}"), http(), Duration::ZERO)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains(&format!("the metadata server at 127.0.0.1:{nowhere}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_delegated_subject_writes_a_sheet_shared_only_with_that_user() {
    let (base, key, app) = sandbox_delegating(Some("corp.test")).await;
    app.share_only("s1", &["alice@corp.test"]);
    let tuning = Tuning::quick;
    let as_user = |subject: Option<&str>| {
        let tokens = TokenSource::new(sink_key(&key), subject.map(str::to_owned), http()).unwrap();
        upserter_with(&base, tokens, paced(tuning().limiter), tuning().breaker)
    };
    let rows = [command(&id(1), "k-1", "1.00", None)];

    // The account itself is not shared the sheet: 403, the stream held.
    let err = as_user(None).upsert(&rows).await.unwrap_err();
    assert_eq!(err.status, Some(403), "{err}");
    assert_eq!(err.class(), ErrorClass::Pause);
    assert!(grid(&base).await.is_empty());

    // A user outside the domain: Google's invalid_grant, held too.
    let err = as_user(Some("mallory@evil.test"))
        .upsert(&rows)
        .await
        .unwrap_err();
    assert_eq!((err.operation, err.status), ("token", Some(400)), "{err}");
    assert!(err.message.contains("Invalid email or User ID"), "{err}");
    assert_eq!(err.class(), ErrorClass::Pause);

    let alice = as_user(Some("alice@corp.test"));
    alice.upsert(&rows).await.unwrap();
    let written = grid(&base).await;
    assert_eq!(written[1][0], Value::from("k-1"), "{written:?}");
}

#[tokio::test]
async fn a_subject_for_an_account_not_allowed_delegation_is_refused() {
    // The recorder, before anything is counted.
    process_metrics();
    let (base, key, _) = sandbox_delegating(None).await;
    let tokens = TokenSource::new(sink_key(&key), Some("alice@corp.test".into()), http()).unwrap();
    let tuning = Tuning::quick();
    let err = upserter_with(&base, tokens, paced(tuning.limiter), tuning.breaker)
        .upsert(&[command(&id(1), "k-1", "1.00", None)])
        .await
        .unwrap_err();
    assert_eq!((err.operation, err.status), ("token", Some(401)), "{err}");
    assert!(err.message.contains("unauthorized_client"), "{err}");
    assert_eq!(err.class(), ErrorClass::Pause);
    // The refusal is counted under the service account, never under the
    // user's e-mail address: metrics are no place for personal data.
    let exposition = process_metrics();
    let refused = |account: &str| {
        metric(
            &exposition,
            "sluice_sheets_refused_total",
            &[("reason", "token"), ("account", account)],
        )
    };
    assert_eq!(refused("alice@corp.test"), 0.0, "{exposition}");
    assert!(refused(&key.client_email) >= 1.0, "{exposition}");
}
