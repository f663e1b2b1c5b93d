//! A service's `main` ends when its future does, even with a blocking call
//! that never returns: librdkafka's `send_offsets_to_transaction` can wait
//! forever (sluice-kafka's transactional loop gives up on it and returns an
//! error, but a Tokio runtime's drop waits for every blocking task).

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn main_returns_with_a_blocking_call_parked_forever() {
    let (release, parked) = mpsc::channel::<()>();
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome: Result<(), std::io::Error> = sluice_runtime::block_on(async move {
            tokio::task::spawn_blocking(move || parked.recv());
            // The loop's error, once its bound on the call has passed.
            Err(std::io::Error::other(
                "send_offsets_to_transaction is wedged",
            ))
        });
        let _ = done.send(outcome);
    });
    let outcome = ended
        .recv_timeout(Duration::from_secs(20))
        .expect("main did not return: the runtime waits for the parked call");
    let err = outcome.expect_err("main's error was lost");
    assert_eq!(err.to_string(), "send_offsets_to_transaction is wedged");
    drop(release);
}
