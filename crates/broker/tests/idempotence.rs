//! Idempotent produce: duplicates, gaps, stale epochs, and producer state after a restart.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::ResponseError;

fn idempotent_batch(producer_id: i64, epoch: i16, first_seq: i32, values: &[&str]) -> Bytes {
    batch_from(
        values,
        Producer {
            id: producer_id,
            epoch,
            first_sequence: first_seq,
        },
    )
}

async fn init_producer(c: &sediment_protocol::client::Client) -> (i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    req.transaction_timeout_ms = 60_000;
    let resp = c.send(4, &req).await.unwrap();
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

#[tokio::test]
async fn duplicates_get_original_offsets_and_gaps_and_stale_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let (pid, epoch) = init_producer(&c).await;
    let (pid2, _) = init_producer(&c).await;
    assert_ne!(pid, pid2, "every producer gets its own id");

    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch, 0, &["a", "b"])).await,
        (0, 0)
    );
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch, 2, &["c"])).await,
        (0, 2)
    );
    // A retry of the first batch: same offsets, nothing appended.
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch, 0, &["a", "b"])).await,
        (0, 0)
    );
    // A gap in the sequence.
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch, 7, &["x"]))
            .await
            .0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    // A newer epoch (KIP-360 bump) starts at sequence 0 and fences the old one.
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch + 1, 0, &["d"])).await,
        (0, 3)
    );
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid, epoch, 3, &["late"]))
            .await
            .0,
        ResponseError::InvalidProducerEpoch.code()
    );
    // Another producer's sequence is its own.
    assert_eq!(
        produce(&c, "i", 0, idempotent_batch(pid2, 0, 0, &["e"])).await,
        (0, 4)
    );

    let got: Vec<String> = values(&fetch(&c, "i", 0, 0).await)
        .into_iter()
        .map(|v| v.1)
        .collect();
    assert_eq!(got, vec!["a", "b", "c", "d", "e"]);
    tb.stop().await;
}

#[tokio::test]
async fn producer_state_is_rebuilt_from_the_wal_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let (pid, epoch) = init_producer(&c).await;
    for i in 0..3 {
        let v = format!("v{i}");
        assert_eq!(
            produce(&c, "r", 0, idempotent_batch(pid, epoch, i, &[&v])).await,
            (0, i64::from(i))
        );
    }
    drop(c);
    tb.stop().await;

    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    // The retry of the last batch before the restart is still recognised.
    assert_eq!(
        produce(&c, "r", 0, idempotent_batch(pid, epoch, 2, &["v2"])).await,
        (0, 2)
    );
    assert_eq!(
        produce(&c, "r", 0, idempotent_batch(pid, epoch, 9, &["gap"]))
            .await
            .0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        produce(&c, "r", 0, idempotent_batch(pid, epoch, 3, &["v3"])).await,
        (0, 3)
    );
    // Producer ids are never handed out twice, across restarts too.
    let (next, _) = init_producer(&c).await;
    assert!(next > pid, "{next} after {pid}");
    assert_eq!(values(&fetch(&c, "r", 0, 0).await).len(), 4);
    tb.stop().await;
}
