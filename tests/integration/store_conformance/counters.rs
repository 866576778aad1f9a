//! `CounterStore`: sliding windows that never admit more than COUNT events
//! in any WINDOW, a refusal that counts nothing, give-backs, and exactness
//! under concurrency.

use super::*;
use otpgate::store::{Bucket, Rate, Taken};

conformance!(
    a_rate_admits_its_count_then_refuses_with_retry_after,
    every_rate_of_a_bucket_holds,
    a_refused_take_counts_in_no_bucket,
    a_given_back_event_frees_its_place,
    buckets_are_apart_by_kind_and_subject,
    concurrent_takes_never_exceed_the_count,
);

fn rate(count: u32, window: Duration) -> Rate {
    Rate { count, window }
}

fn bucket<'a>(kind: &'static str, subject: &'a str, rates: &'a [Rate]) -> Bucket<'a> {
    Bucket {
        kind,
        subject,
        rates,
    }
}

impl Backend {
    async fn take(&self, buckets: &[Bucket<'_>]) -> Taken {
        self.storage
            .counters
            .take(buckets)
            .await
            .unwrap_or_else(|e| panic!("[{}] take: {e}", self.name))
    }

    async fn granted(&self, buckets: &[Bucket<'_>]) -> otpgate::store::Ticket {
        match self.take(buckets).await {
            Taken::Granted(ticket) => ticket,
            full => panic!("[{}] refused: {full:?}", self.name),
        }
    }
}

async fn a_rate_admits_its_count_then_refuses_with_retry_after(b: &Backend) {
    let rates = [rate(3, secs(60))];
    let one = [bucket("test", "a", &rates)];
    for _ in 0..3 {
        b.granted(&one).await;
    }
    match b.take(&one).await {
        Taken::Full {
            bucket: 0,
            retry_after,
        } => assert!(
            !retry_after.is_zero() && retry_after <= secs(60),
            "[{}] retry_after {retry_after:?}",
            b.name
        ),
        other => panic!("[{}] a fourth event in the window: {other:?}", b.name),
    }
}

async fn every_rate_of_a_bucket_holds(b: &Backend) {
    let short = millis(300);
    let rates = [rate(2, short), rate(3, secs(60))];
    let one = [bucket("test", "a", &rates)];
    b.granted(&one).await;
    b.granted(&one).await;
    match b.take(&one).await {
        Taken::Full { retry_after, .. } => assert!(
            retry_after <= short,
            "[{}] the short window's wait, got {retry_after:?}",
            b.name
        ),
        other => panic!("[{}] a third event in 300ms: {other:?}", b.name),
    }
    // Once the short window has moved on, the third fits; the long one then holds.
    poll_until("the short window to pass", || async {
        matches!(b.take(&one).await, Taken::Granted(_)).then_some(())
    })
    .await;
    match b.take(&one).await {
        Taken::Full { retry_after, .. } => assert!(
            retry_after > secs(50),
            "[{}] the long window's wait, got {retry_after:?}",
            b.name
        ),
        other => panic!("[{}] a fourth event in 60s: {other:?}", b.name),
    }
}

async fn a_refused_take_counts_in_no_bucket(b: &Backend) {
    let roomy = [rate(5, secs(60))];
    let tight = [rate(1, secs(60))];
    // The full bucket comes second: the first one's count must be given back.
    let both = [
        bucket("test", "roomy", &roomy),
        bucket("test", "tight", &tight),
    ];
    b.granted(&both).await;
    assert!(
        matches!(b.take(&both).await, Taken::Full { bucket: 1, .. }),
        "[{}] the tight bucket admitted a second event",
        b.name
    );
    let alone = [bucket("test", "roomy", &roomy)];
    for i in 0..4 {
        assert!(
            matches!(b.take(&alone).await, Taken::Granted(_)),
            "[{}] the refused take was counted (event {})",
            b.name,
            i + 2
        );
    }
    assert!(matches!(
        b.take(&alone).await,
        Taken::Full { bucket: 0, .. }
    ));
}

async fn a_given_back_event_frees_its_place(b: &Backend) {
    let rates = [rate(1, secs(60))];
    let one = [bucket("test", "a", &rates), bucket("test", "b", &rates)];
    let ticket = b.granted(&one).await;
    assert!(matches!(b.take(&one).await, Taken::Full { .. }));
    b.storage.counters.give_back(&one, &ticket).await.unwrap();
    b.granted(&one).await;
}

async fn buckets_are_apart_by_kind_and_subject(b: &Backend) {
    let rates = [rate(1, secs(60))];
    b.granted(&[bucket("sms_ip", "192.0.2.1", &rates)]).await;
    b.granted(&[bucket("sms_ip", "192.0.2.2", &rates)]).await;
    b.granted(&[bucket("verify_ip", "192.0.2.1", &rates)]).await;
    b.granted(&[bucket("sms_global", "", &rates)]).await;
    assert!(matches!(
        b.take(&[bucket("sms_ip", "192.0.2.1", &rates)]).await,
        Taken::Full { .. }
    ));
    // A bucket without rates never refuses and is never stored.
    for _ in 0..3 {
        b.granted(&[bucket("sms_ip", "192.0.2.9", &[])]).await;
    }
}

async fn concurrent_takes_never_exceed_the_count(b: &Backend) {
    let rates: &'static [Rate] = Box::leak(Box::new([rate(10, secs(60))]));
    let subjects: Vec<&'static str> = (0..50)
        .map(|i| &*Box::leak(format!("+1555000{i:04}").into_boxed_str()))
        .collect();
    let outcomes = race(50, |i| {
        let counters = Arc::clone(&b.storage.counters);
        let subject = subjects[i];
        async move {
            // Each task its own subject's bucket and one shared global one.
            let buckets = [
                bucket("sms_mobile", subject, rates),
                bucket("sms_global", "", rates),
            ];
            counters.take(&buckets).await
        }
    })
    .await;
    let granted = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|e| panic!("take: {e}")))
        .filter(|o| matches!(o, Taken::Granted(_)))
        .count();
    assert_eq!(granted, 10, "[{}] 50 racing takes, a limit of 10", b.name);
}
