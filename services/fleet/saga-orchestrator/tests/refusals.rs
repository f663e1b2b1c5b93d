//! Refusals: the sandbox ERP refuses 10 % of the reservations and the
//! sandbox Sheets 5 % of the rows. Refused by the ERP: nothing to undo, the
//! order is rejected. Refused by the sheet: the ERP reservation is
//! cancelled (compensated), the order is rejected. The rest are confirmed,
//! and nothing is left half-done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, assert_each_once, order_ids};
use serde_json::json;
use sluice_testkit::{eventually, message_count};

const ERP_REFUSES: &str = "Refused By The ERP";
const SHEET_REFUSES: &str = "Refused By The Sheet";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_orders_are_compensated_and_rejected_and_the_rest_confirmed() {
    let fleet = Fleet::new("refusals").await;
    fleet
        .sandbox
        .set_faults("odoo", &json!({"reject_value": ERP_REFUSES}))
        .await
        .unwrap();
    fleet
        .sandbox
        .set_faults("sheets", &json!({"reject_value": SHEET_REFUSES}))
        .await
        .unwrap();
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    let orders: Vec<(String, String)> = order_ids("order", 400)
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let customer = match i % 20 {
                0 | 10 => ERP_REFUSES,
                5 => SHEET_REFUSES,
                _ => "Grace Hopper",
            };
            (id, customer.to_owned())
        })
        .collect();
    fleet.place(&orders).await;
    let states = fleet.until_finished(400, Duration::from_secs(240)).await;
    println!("400 sagas: {states:?}");
    assert_eq!(states.get("COMPLETED"), Some(&340), "{states:?}");
    assert_eq!(states.get("COMPENSATED"), Some(&60), "{states:?}");

    let outcomes = fleet.outcomes().await;
    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    for (order, customer) in &orders {
        let (state, failure) = &outcomes[order];
        let record = records.get(order).map(|found| {
            assert_eq!(found.len(), 1, "ERP records of {order}");
            found[0].get("state").cloned()
        });
        let row = rows.get(order);
        match customer.as_str() {
            ERP_REFUSES => {
                assert_eq!(state, "COMPENSATED", "{order}");
                let failure = failure.as_ref().unwrap();
                assert_eq!(failure["step"], "reserve-in-erp", "{order}");
                assert!(
                    failure["reason"]
                        .as_str()
                        .unwrap()
                        .contains("ValidationError"),
                    "{failure}"
                );
                assert_eq!(record, None, "{order} reached the ERP");
                assert_eq!(row, None, "{order} reached the sheet");
            }
            SHEET_REFUSES => {
                assert_eq!(state, "COMPENSATED", "{order}");
                assert_eq!(failure.as_ref().unwrap()["step"], "record-in-sheet");
                // Reserved, then cancelled by the compensation.
                assert_eq!(record, Some(Some(json!("cancel"))), "{order} in the ERP");
                assert_eq!(row, None, "{order} reached the sheet");
            }
            _ => {
                assert_eq!(state, "COMPLETED", "{order}");
                assert_eq!(
                    record,
                    Some(Some(json!("sale"))),
                    "{order} confirmed in the ERP"
                );
                assert_eq!(row, Some(&(1, "CONFIRMED".to_owned())), "{order} row");
            }
        }
    }

    // Each rejected saga logged its failure and its end once; the sheet
    // refusals their compensation.
    let log = fleet.step_log().await;
    assert_each_once(&log);
    let count = |event: &str| log.keys().filter(|(_, _, _, e)| e == event).count();
    assert_eq!(count("failed"), 60);
    assert_eq!(count("rejected"), 60);
    assert_eq!(count("compensation_sent"), 20);
    assert_eq!(count("compensated"), 20);
    assert_eq!(count("completed"), 340);
    // What an operator sees.
    let (code, listed) = fleet.cli(&[
        "list",
        "--state",
        "compensated",
        "--limit",
        "100",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0);
    let listed: Vec<serde_json::Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed.len(), 60);
    assert!(listed.iter().all(|saga| saga["state"] == "COMPENSATED"));
    let sheet_refused = &orders[5].0;
    let (code, shown) = fleet.cli(&["show", sheet_refused, "--output", "json"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let history: Vec<(&str, &str)> = shown["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["step"].as_str().unwrap(),
                line["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("reserve-in-erp", "command_sent"),
            ("reserve-in-erp", "succeeded"),
            ("record-in-sheet", "command_sent"),
            ("record-in-sheet", "failed"),
            ("reserve-in-erp", "compensation_sent"),
            ("reserve-in-erp", "compensated"),
            ("record-in-sheet", "rejected"),
        ]
    );
    let (_, table) = fleet.cli(&["show", sheet_refused]);
    assert!(
        table.contains("COMPENSATED") && table.contains("compensation_sent"),
        "{table}"
    );
    assert_eq!(fleet.cli(&["show", "no-such-order"]).0, 1);

    // The refused commands are the sinks' dead letters, not the saga's.
    assert_eq!(message_count(&fleet.topics.dlq_erp), 40);
    assert_eq!(message_count(&fleet.topics.dlq_sheets), 20);
    assert_eq!(message_count(&fleet.topics.dlq_saga), 0);
    fleet.finish(relay).await;
}

/// The ERP makes the reservation's sale order, then refuses its
/// confirmation (Odoo's UserError when a product has no procurement rule):
/// the order is rejected, and the draft quotation it left is cancelled
/// with the rest of the saga, not left in the ERP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_whose_confirmation_is_refused_is_undone() {
    let fleet = Fleet::new("unconfirmed").await;
    fleet
        .sandbox
        .set_faults("odoo", &json!({"refuse_method": "action_confirm"}))
        .await
        .unwrap();
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let orders: Vec<(String, String)> = order_ids("order", 5)
        .into_iter()
        .map(|id| (id, "Margaret Hamilton".to_owned()))
        .collect();
    fleet.place(&orders).await;
    let states = fleet.until_finished(5, Duration::from_secs(60)).await;
    assert_eq!(states.get("COMPENSATED"), Some(&5), "{states:?}");
    // Its cancellation is a command too: wait for it to be applied.
    eventually("every draft cancelled", Duration::from_secs(60), || async {
        let records = fleet.erp_records().await;
        orders
            .iter()
            .all(|(order, _)| {
                records
                    .get(order)
                    .is_some_and(|found| found.len() == 1 && found[0]["state"] == json!("cancel"))
            })
            .then_some(())
    })
    .await;
    let outcomes = fleet.outcomes().await;
    for (order, _) in &orders {
        let failure = outcomes[order].1.as_ref().unwrap();
        assert_eq!(failure["step"], "reserve-in-erp", "{order}");
        assert!(
            failure["reason"].as_str().unwrap().contains("UserError"),
            "{failure}"
        );
    }
    fleet.finish(relay).await;
}
