//! A member peer that stops reading, alone in its test binary: the test
//! measures its process's resident memory, which other tests running in
//! parallel threads of the same process would add to.

use std::time::Duration;

use custodia_protocol::{Hello, Message, Role};
use custodia_tests::{eventually, link, note, open_shared, raw_client, Agency};

const WAIT: Duration = Duration::from_secs(20);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A member peer that stops reading: the sender's memory stays bounded
/// (bounded outbox, QUIC flow control) and the other peer is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_does_not_hold_up_others() {
    let (a, b, m) = (
        Agency::new("alpha", "PH"),
        Agency::new("bravo", "DE"),
        Agency::new("sloth", "ZZ"),
    );
    link(&a, &b);
    a.pin(&m, "ZZ");
    let case = open_shared(&a, &[(&b, Role::Investigator), (&m, Role::Investigator)]);
    // 12,000 entries of ~4 KiB: 48 MiB the slow peer will never read.
    {
        let me = a.identity();
        let mut store = a.store();
        let text = "v".repeat(4000);
        for _ in 0..12 {
            let drafts = (0..1000).map(|_| note(&text)).collect();
            store
                .author_many(&me, Some(case), drafts, custodia_node::now_ms())
                .expect("append");
        }
    }
    let ra = custodia_node::start(&a.dir).await.expect("a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib();
    let endpoint = raw_client(&m, &a);
    let conn = endpoint
        .connect(a.addr, custodia_node::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, _recv_never_read) = conn.open_bi().await.expect("stream");
    let hello = Message::Hello(Hello {
        versions: vec![1],
        agency: m.id,
    });
    let heads = Message::Heads(custodia_protocol::Heads {
        case,
        heads: vec![],
    });
    send.write_all(&hello.to_frame()).await.expect("hello");
    send.write_all(&heads.to_frame()).await.expect("heads");
    // The sender tries to push 48 MiB to a peer that reads nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 40,
        "memory stays bounded while a peer does not read: grew {grown_mib} MiB"
    );
    assert!(
        ra.connected().contains(&m.id),
        "the slow peer is still connected (not a protocol error)"
    );

    // Bravo connects now and gets everything, then new entries promptly.
    let rb = custodia_node::start(&b.dir).await.expect("b");
    assert!(
        eventually(Duration::from_secs(60), || b.case_count(&case) >= 12_002).await,
        "bravo is served the whole case while the slow peer blocks: {}",
        b.case_count(&case)
    );
    let fresh = a.local().write(&case, note("urgent")).expect("w");
    assert!(
        eventually(WAIT, || b
            .case_bytes(&case)
            .contains(&fresh.bytes().to_vec()))
        .await
    );
    drop(send);
    conn.close(0u32.into(), b"");
    ra.shutdown().await;
    rb.shutdown().await;
}
