//! Background work is supervised, and a partition that cannot be archived is reported without
//! stopping the others.

mod common;

use std::os::unix::fs::FileExt;

use common::*;

#[tokio::test]
async fn a_background_task_that_dies_fails_health_and_stop_awaits_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    assert!(tb.broker.health_report().live);
    tb.broker.supervise("doomed", async { panic!("boom") });
    tb.broker.supervise("quitter", async {});
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, mut stop) = (finished.clone(), tb.broker.shutdown_signal());
    tb.broker.supervise("polite", async move {
        sediment_broker::wait_stopped(&mut stop).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        f.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let report = loop {
        let r = tb.broker.health_report();
        if r.problems.len() >= 2 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(!report.live && !report.ready, "{report:?}");
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("doomed") && p.contains("boom")));
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("quitter") && p.contains("stopped unexpectedly")));
    tb.broker.begin_shutdown();
    tb.broker.stop_background().await;
    assert!(
        finished.load(std::sync::atomic::Ordering::SeqCst),
        "stop_background waited for the task to end"
    );
    let r = tb.broker.health_report();
    assert!(
        !r.problems.iter().any(|p| p.contains("polite")),
        "ending at shutdown is not a failure"
    );
    tb.stop().await;
}

#[tokio::test]
async fn a_partition_that_cannot_be_archived_is_reported_and_the_others_archive() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "bad", 0, batch(&["x", "y"])).await, (0, 0));
    assert_eq!(produce(&c, "good", 0, batch(&["z"])).await, (0, 0));
    // Damage the stored batch of bad-0 on disk (as a failing disk or a bug would): its first
    // record's length now runs past the batch, so it cannot be decoded into a segment.
    let pos = {
        let t = tb.broker.registry.topic("bad").unwrap();
        let st = t.partitions[0].state.lock().unwrap();
        st.index[0].pos
    };
    let wal = dir
        .path()
        .join("wal")
        .join(format!("{:020}.wal", pos.segment));
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.write_all_at(&[0x7e], pos.offset + 61).unwrap();

    assert_eq!(tb.broker.upload_due(true).await, 1, "good-0 archived");
    let r = tb.broker.health_report();
    assert!(r.live && r.ready, "degraded, still serving: {r:?}");
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert!(r.problems[0].starts_with("degraded") && r.problems[0].contains("bad-0"));
    let metrics = tb.broker.metrics.render();
    assert!(
        metrics.contains("sediment_partition_upload_stuck{topic=\"bad\",partition=\"0\"} 1"),
        "{metrics}"
    );
    // Still failing on the next pass: reported once, still stuck.
    assert_eq!(tb.broker.upload_due(true).await, 0);
    assert_eq!(tb.broker.health.stuck().len(), 1);
    // Producing to the other partitions goes on.
    assert_eq!(produce(&c, "good", 0, batch(&["w"])).await, (0, 1));
    tb.stop().await;
}
