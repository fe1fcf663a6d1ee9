//! Request decoding under arbitrary input: whatever bytes arrive as a frame, the dispatcher
//! answers, refuses or closes, and never panics. Three generators: raw bytes; a valid header for
//! every served (api, version) followed by random bytes; and a valid request with bytes flipped.
//! (A property test rather than a cargo-fuzz target: this toolchain is stable-only.)

mod common;

// The broker binary's allocator: without it, kafka-protocol's pre-allocation of wire-claimed
// array lengths aborts the process (this test found that).
#[global_allocator]
static ALLOCATOR: sediment_protocol::alloc::LazyHuge = sediment_protocol::alloc::LazyHuge;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::{ApiKey, MetadataRequest, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use sediment_broker::handlers::dispatch;
use sediment_broker::server::Reply;
use sediment_protocol::versions::SUPPORTED;

struct Fixture {
    rt: tokio::runtime::Runtime,
    broker: Arc<sediment_broker::Broker>,
    _dir: tempfile::TempDir,
}

fn session() -> sediment_broker::security::Session {
    sediment_broker::security::Session::anonymous("PLAINTEXT", "127.0.0.1")
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tb = rt.block_on(TestBroker::start(dir.path()));
    Fixture {
        broker: tb.broker.clone(),
        rt,
        _dir: dir,
    }
}

/// Dispatches one frame and drives a deferred answer to completion (or a short timeout: a
/// JoinGroup may legitimately wait for its group).
fn run(f: &Fixture, frame: Bytes) {
    f.rt.block_on(async {
        if let Reply::Later(fut) = dispatch(&f.broker, frame, &session()).await {
            let _ = tokio::time::timeout(Duration::from_millis(200), fut).await;
        }
    });
}

fn header(key: ApiKey, version: i16) -> BytesMut {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 1;
    h.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut buf = BytesMut::new();
    h.encode(&mut buf, key.request_header_version(version))
        .unwrap();
    buf
}

fn valid_produce() -> Bytes {
    let mut buf = header(ApiKey::Produce, 9);
    produce_request("fuzz", 0, batch(&["a", "b", "c"]), -1)
        .encode(&mut buf, 9)
        .unwrap();
    buf.freeze()
}

fn valid_metadata() -> Bytes {
    let mut buf = header(ApiKey::Metadata, 12);
    let mut req = MetadataRequest::default();
    req.topics = None;
    req.encode(&mut buf, 12).unwrap();
    buf.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        thread_local!(static F: Fixture = fixture());
        F.with(|f| run(f, Bytes::from(data)));
    }

    #[test]
    fn valid_headers_with_garbage_bodies_never_panic(
        which in 0usize..200,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        thread_local!(static F: Fixture = fixture());
        let versions: Vec<(ApiKey, i16)> = SUPPORTED
            .iter()
            .flat_map(|&(k, min, max)| (min..=max).map(move |v| (k, v)))
            .collect();
        let (key, version) = versions[which % versions.len()];
        let mut frame = header(key, version);
        frame.put_slice(&body);
        F.with(|f| run(f, frame.freeze()));
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        produce in any::<bool>(),
    ) {
        thread_local!(static F: Fixture = fixture());
        let mut frame = if produce { valid_produce() } else { valid_metadata() }.to_vec();
        for (at, x) in flips {
            let i = at % frame.len();
            frame[i] ^= x;
        }
        if cut % 3 == 0 {
            frame.truncate(cut % (frame.len() + 1));
        }
        F.with(|f| run(f, Bytes::from(frame)));
    }
}

#[test]
fn the_fixture_really_serves() {
    // The generators above are only meaningful if a valid request is answered.
    let f = fixture();
    let reply =
        f.rt.block_on(dispatch(&f.broker, valid_produce(), &session()));
    let Reply::Later(fut) = reply else {
        panic!("a valid acks=all produce is answered after the WAL sync");
    };
    let frame = f.rt.block_on(fut).expect("a response");
    assert!(frame.len() > 8);
    assert!(matches!(
        f.rt.block_on(dispatch(&f.broker, valid_metadata(), &session())),
        Reply::Ready(_)
    ));
    let _ = ProduceRequest::default();
}

#[test]
fn claimed_array_lengths_beyond_the_frame_close_the_connection() {
    let f = fixture();
    // Metadata v0 claiming 54,265,856 topics, and v1 claiming i32::MAX, in a few bytes.
    for (version, count) in [(0i16, 0x033c_0c00i32), (1, i32::MAX)] {
        let mut frame = header(ApiKey::Metadata, version);
        frame.put_i32(count);
        frame.put_slice(&[0, 1, b'x']);
        let reply =
            f.rt.block_on(dispatch(&f.broker, frame.freeze(), &session()));
        assert!(matches!(reply, Reply::Close), "v{version} count {count}");
    }
    // And the broker still answers.
    assert!(matches!(
        f.rt.block_on(dispatch(&f.broker, valid_metadata(), &session())),
        Reply::Ready(_)
    ));
}
