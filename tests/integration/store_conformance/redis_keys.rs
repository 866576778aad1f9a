//! Redis-specific checks: key names, prefixes and expiry.

use super::*;

/// Every key the Redis OTP store creates is under the configured prefix and
/// expires; another prefix on the same Redis sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_redis_keys_live_under_prefix_and_expire() {
    let Some(b) = mysql_redis().await else {
        return;
    };
    let (redis_url, prefix) = b.redis.clone().unwrap();
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let lister = conn.clone();
    let keys_under = move |prefix: String| {
        let mut conn = lister.clone();
        async move {
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.sort();
            keys
        }
    };
    assert!(keys_under(prefix.clone()).await.is_empty(), "fresh prefix");

    let ttl = secs(60);
    let cooldown = secs(30);
    let with_cooldown = limits(ttl, cooldown, 5);
    let no_cooldown = limits(ttl, Duration::ZERO, 5);
    b.issued(
        Purpose::Register,
        "+15550000001",
        &digest(1),
        &with_cooldown,
    )
    .await;
    b.issued(Purpose::Login, "+15550000001", &digest(2), &with_cooldown)
        .await;
    b.issued(Purpose::Login, "+15550000002", &digest(3), &no_cooldown)
        .await;
    // An attempt counter is written too.
    assert_eq!(
        b.verify(Purpose::Login, "+15550000002", &digest(9), &no_cooldown)
            .await,
        VerifyOutcome::Invalid
    );

    let keys = keys_under(prefix.clone()).await;
    // Two OTPs with a cooldown each, one without.
    assert_eq!(keys.len(), 5, "keys: {keys:?}");
    for key in &keys {
        assert!(key.starts_with(&prefix), "{key} is outside {prefix}");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let bound = if key.contains("cooldown") {
            cooldown
        } else {
            ttl
        };
        assert!(
            pttl > 0 && u128::try_from(pttl).unwrap() <= bound.as_millis(),
            "{key} has PTTL {pttl} (bound {bound:?})"
        );
    }
    // Keys carry no OTP in plain text: the values are the digests' bytes,
    // never a short run of digits.
    for key in keys.iter().filter(|k| !k.contains("cooldown")) {
        let d: Vec<u8> = redis::cmd("HGET")
            .arg(key)
            .arg("d")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(d.len(), 32, "{key} stores {d:?}");
    }

    // Another prefix on the same Redis shares nothing.
    let (mysql_url, _) = mysql_redis_urls().unwrap();
    let other_db = TestDatabase::create(&mysql_url).await;
    let other_prefix = format!("{}:", unique("conf"));
    let other = connect_mysql_redis(&other_db.url, &redis_url, &other_prefix).await;
    assert_eq!(
        other
            .otps
            .verify(
                Purpose::Register,
                "+15550000001",
                &digest(1),
                &with_cooldown
            )
            .await
            .unwrap(),
        VerifyOutcome::Missing,
        "an OTP leaked across prefixes"
    );
    assert_eq!(
        other
            .otps
            .issue(
                Purpose::Register,
                "+15550000001",
                &digest(4),
                &with_cooldown,
                otpgate::store::SmsCount {
                    rates: &[],
                    ticket: &otpgate::store::Ticket::new(),
                },
            )
            .await
            .unwrap(),
        IssueOutcome::Issued,
        "a cooldown leaked across prefixes"
    );
    assert_eq!(keys_under(other_prefix.clone()).await.len(), 2);

    // Consuming and revoking delete what they should.
    assert_eq!(
        b.verify(
            Purpose::Register,
            "+15550000001",
            &digest(1),
            &with_cooldown
        )
        .await,
        VerifyOutcome::Valid
    );
    b.revoke(Purpose::Login, "+15550000001", &digest(2)).await;
    let left = keys_under(prefix.clone()).await;
    assert_eq!(
        left,
        vec![
            Keys::new(&prefix).cooldown(Purpose::Register, "+15550000001"),
            Keys::new(&prefix).otp(Purpose::Login, "+15550000002"),
        ],
        "after a use and a revoke"
    );

    // Leave nothing behind.
    for p in [prefix, other_prefix] {
        let keys = keys_under(p).await;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}
