//! One conformance suite for the storage layer, run identically against
//! every backend (the object_store pattern): each case is an async function
//! taking the backend under test, and `conformance!` generates one
//! `#[tokio::test]` per (backend, case).
//!
//! The `mysql_redis` variants need OTPGATE_TEST_MYSQL_URL and
//! OTPGATE_TEST_REDIS_URL; unset, they print a note and return. Set, an
//! unreachable service fails the test.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestDatabase, check_redis, mysql_redis_urls, unique};
use otpgate::config::{Secret, StorageBackend, StorageConfig};
use otpgate::store::keys::Keys;
use otpgate::store::{
    IssueOutcome, OtpDigest, OtpLimits, Purpose, Registration, Storage, StoreError, UniqueField,
    VerifyOutcome,
};

/// A fixed "now" for user writes (unix seconds), so round trips are exact.
const NOW: i64 = 1_700_000_000;

/// Storage calls never take longer than this in these tests.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a time-based case may poll before it fails.
const POLL_LIMIT: Duration = Duration::from_secs(3);

/// What keeps a backend's data alive (and removes it afterwards).
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Database(TestDatabase),
}

/// A backend under test: fresh state that no other test shares.
struct Backend {
    name: &'static str,
    storage: Storage,
    /// Redis URL and key prefix, for the mysql_redis backend.
    redis: Option<(String, String)>,
    _guard: Guard,
}

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        backend: StorageBackend::Embedded {
            sqlite_path: dir.path().join("users.sqlite3"),
        },
        timeout: STORE_TIMEOUT,
        connect_attempts: 1,
    };
    let storage = Storage::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("embedded storage did not connect: {e}"));
    Backend {
        name: "embedded",
        storage,
        redis: None,
        _guard: Guard::Dir(dir),
    }
}

/// `None` (after a note) when the services are not configured.
async fn mysql_redis() -> Option<Backend> {
    let (mysql_url, redis_url) = mysql_redis_urls()?;
    check_redis(&redis_url).await;
    let database = TestDatabase::create(&mysql_url).await;
    let prefix = format!("{}:", unique("conf"));
    let storage = connect_mysql_redis(&database.url, &redis_url, &prefix).await;
    Some(Backend {
        name: "mysql_redis",
        storage,
        redis: Some((redis_url, prefix)),
        _guard: Guard::Database(database),
    })
}

async fn connect_mysql_redis(mysql_url: &str, redis_url: &str, prefix: &str) -> Storage {
    let config = StorageConfig {
        backend: StorageBackend::MysqlRedis {
            mysql_url: Secret::new(mysql_url),
            redis_url: Secret::new(redis_url),
            redis_key_prefix: prefix.to_owned(),
            auto_migrate: true,
            mysql_pool_max: 16,
        },
        timeout: STORE_TIMEOUT,
        connect_attempts: 1,
    };
    Storage::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("mysql_redis storage did not connect: {e}"))
}

/// Generates `embedded::<case>` and `mysql_redis::<case>` for every case.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::embedded().await;
                    super::$case(&backend).await;
                }
            )+
        }

        mod mysql_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(backend) = super::mysql_redis().await else {
                        return;
                    };
                    super::$case(&backend).await;
                }
            )+
        }
    };
}

conformance!(
    find_registration_splits_mobile_owner_and_email_owner,
    // users
    insert_then_find_round_trips_every_field,
    unknown_user_is_none,
    duplicate_mobile_conflicts_on_mobile,
    duplicate_email_conflicts_on_email,
    concurrent_inserts_of_one_mobile_make_one_user,
    update_unverified_replaces_details,
    update_unverified_refuses_verified_and_unknown_users,
    update_unverified_conflicts_on_another_users_email,
    mark_verified_flips_once,
    concurrent_mark_verified_flips_once,
    ping_answers,
    // otps
    issued_otp_verifies_once,
    wrong_digest_is_invalid_and_the_right_one_still_works,
    max_attempts_wrong_guesses_burn_the_otp,
    otp_is_bound_to_its_purpose,
    otp_is_bound_to_its_mobile,
    cooldown_refuses_a_second_issue,
    cooldown_lapses,
    zero_cooldown_reissue_replaces_digest_and_resets_attempts,
    otp_expires_after_ttl,
    revoke_removes_otp_and_cooldown,
    revoke_with_another_digest_changes_nothing,
    concurrent_correct_verifies_have_one_winner,
    concurrent_wrong_verifies_burn_at_exactly_max_attempts,
    concurrent_issues_send_exactly_one,
    zero_digest_never_matches_a_missing_otp,
    emails_are_equal_only_byte_for_byte,
    delete_unverified_removes_only_unverified_users,
    is_live_follows_the_otp,
);

// ---------------------------------------------------------------- helpers

fn registration(mobile: &str, first: &str, last: &str, email: &str) -> Registration {
    Registration {
        mobile: mobile.into(),
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
    }
}

fn digest(n: u8) -> OtpDigest {
    OtpDigest([n; 32])
}

fn limits(ttl: Duration, cooldown: Duration, max_attempts: u32) -> OtpLimits {
    OtpLimits {
        ttl,
        cooldown,
        max_attempts,
    }
}

/// A long TTL, no cooldown, five attempts.
fn relaxed() -> OtpLimits {
    limits(Duration::from_secs(60), Duration::ZERO, 5)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Backend {
    /// Two unverified users: Ann (+15550000001, ann@example.com) and Bob
    /// (+15550000002, bob@example.com).
    async fn ann_and_bob(&self) -> (otpgate::store::User, otpgate::store::User) {
        let ann = self
            .insert(&registration("+15550000001", "Ann", "A", "ann@example.com"))
            .await;
        let bob = self
            .insert(&registration("+15550000002", "Bob", "B", "bob@example.com"))
            .await;
        (ann, bob)
    }

    async fn insert(&self, r: &Registration) -> otpgate::store::User {
        self.storage
            .users
            .insert(r, NOW)
            .await
            .unwrap_or_else(|e| panic!("[{}] insert {r:?}: {e}", self.name))
    }

    async fn issue(
        &self,
        purpose: Purpose,
        mobile: &str,
        d: &OtpDigest,
        l: &OtpLimits,
    ) -> IssueOutcome {
        self.storage
            .otps
            .issue(purpose, mobile, d, l)
            .await
            .unwrap_or_else(|e| panic!("[{}] issue: {e}", self.name))
    }

    async fn verify(
        &self,
        purpose: Purpose,
        mobile: &str,
        d: &OtpDigest,
        l: &OtpLimits,
    ) -> VerifyOutcome {
        self.storage
            .otps
            .verify(purpose, mobile, d, l)
            .await
            .unwrap_or_else(|e| panic!("[{}] verify: {e}", self.name))
    }

    async fn revoke(&self, purpose: Purpose, mobile: &str, d: &OtpDigest) {
        self.storage
            .otps
            .revoke(purpose, mobile, d)
            .await
            .unwrap_or_else(|e| panic!("[{}] revoke: {e}", self.name))
    }

    /// Issues and asserts it was issued.
    async fn issued(&self, purpose: Purpose, mobile: &str, d: &OtpDigest, l: &OtpLimits) {
        let outcome = self.issue(purpose, mobile, d, l).await;
        assert_eq!(outcome, IssueOutcome::Issued, "[{}] issue", self.name);
    }
}

/// Polls `probe` until it returns `Some`, failing after `POLL_LIMIT`.
async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(millis(20)).await;
    }
}

/// Runs `count` copies of `task` on the runtime's worker threads, released
/// together by a barrier, and returns their results.
async fn race<T, F, Fut>(count: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for handle in handles {
        results.push(handle.await.expect("task panicked"));
    }
    results
}

// ------------------------------------------------------------------ users

async fn insert_then_find_round_trips_every_field(b: &Backend) {
    let users = &b.storage.users;
    let ann = registration(
        "+15550000001",
        "Zoë-Anne",
        "Ó'Brien 李",
        "ann.obrien+tag@example.com",
    );
    let inserted = b.insert(&ann).await;
    assert!(inserted.id > 0, "[{}] id {}", b.name, inserted.id);
    assert_eq!(inserted.mobile, ann.mobile);
    assert_eq!(inserted.first_name, ann.first_name);
    assert_eq!(inserted.last_name, ann.last_name);
    assert_eq!(inserted.email, ann.email);
    assert!(!inserted.verified, "[{}] a new user is unverified", b.name);
    assert_eq!(inserted.created_at, NOW);

    let by_mobile = users.find_by_mobile(&ann.mobile).await.unwrap();
    assert_eq!(
        by_mobile.as_ref(),
        Some(&inserted),
        "[{}] by mobile",
        b.name
    );
    let by_id = users.find_by_id(inserted.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&inserted), "[{}] by id", b.name);
    let by_email = users.find_by_email(&ann.email).await.unwrap();
    assert_eq!(by_email.as_ref(), Some(&inserted), "[{}] by email", b.name);

    // A second user gets its own id and each lookup finds the right one.
    let bob = registration("+15550000002", "Bob", "Smith", "bob@example.com");
    let bob_user = b.insert(&bob).await;
    assert_ne!(bob_user.id, inserted.id, "[{}] ids are distinct", b.name);
    assert_eq!(
        users.find_by_id(bob_user.id).await.unwrap(),
        Some(bob_user.clone())
    );
    assert_eq!(
        users.find_by_mobile(&bob.mobile).await.unwrap(),
        Some(bob_user.clone())
    );
    assert_eq!(
        users.find_by_email(&bob.email).await.unwrap(),
        Some(bob_user)
    );
    assert_eq!(users.find_by_id(inserted.id).await.unwrap(), Some(inserted));
}

async fn find_registration_splits_mobile_owner_and_email_owner(b: &Backend) {
    let users = &b.storage.users;
    let (ann, bob) = b.ann_and_bob().await;
    let find = |mobile: &'static str, email: &'static str| users.find_registration(mobile, email);
    assert_eq!(
        find("+15550000001", "ann@example.com").await.unwrap(),
        (Some(ann.clone()), None)
    );
    assert_eq!(
        find("+15550000001", "new@example.com").await.unwrap(),
        (Some(ann.clone()), None)
    );
    assert_eq!(
        find("+15550000001", "bob@example.com").await.unwrap(),
        (Some(ann), Some(bob.clone()))
    );
    assert_eq!(
        find("+15550000009", "bob@example.com").await.unwrap(),
        (None, Some(bob))
    );
    assert_eq!(
        find("+15550000009", "new@example.com").await.unwrap(),
        (None, None)
    );
}

async fn unknown_user_is_none(b: &Backend) {
    let users = &b.storage.users;
    b.insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    assert_eq!(users.find_by_mobile("+15550000009").await.unwrap(), None);
    assert_eq!(users.find_by_mobile("").await.unwrap(), None);
    assert_eq!(
        users.find_by_email("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(users.find_by_id(0).await.unwrap(), None);
    assert_eq!(users.find_by_id(987_654).await.unwrap(), None);
    assert_eq!(users.find_by_id(u64::MAX).await.unwrap(), None);
    // Not a prefix or pattern match.
    assert_eq!(users.find_by_mobile("+1555000000%").await.unwrap(), None);
    assert_eq!(users.find_by_mobile("+155500000").await.unwrap(), None);
}

async fn duplicate_mobile_conflicts_on_mobile(b: &Backend) {
    let users = &b.storage.users;
    let first = b
        .insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    let again = registration("+15550000001", "C", "D", "c@example.com");
    match users.insert(&again, NOW + 5).await {
        Err(StoreError::Conflict(UniqueField::Mobile)) => {}
        other => panic!("[{}] duplicate mobile: {other:?}", b.name),
    }
    // Nothing of the refused row was kept; the first user is untouched.
    assert_eq!(users.find_by_email("c@example.com").await.unwrap(), None);
    assert_eq!(
        users.find_by_mobile("+15550000001").await.unwrap(),
        Some(first)
    );
}

async fn duplicate_email_conflicts_on_email(b: &Backend) {
    let users = &b.storage.users;
    let first = b
        .insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    let again = registration("+15550000002", "C", "D", "a@example.com");
    match users.insert(&again, NOW + 5).await {
        Err(StoreError::Conflict(UniqueField::Email)) => {}
        other => panic!("[{}] duplicate email: {other:?}", b.name),
    }
    assert_eq!(users.find_by_mobile("+15550000002").await.unwrap(), None);
    assert_eq!(
        users.find_by_email("a@example.com").await.unwrap(),
        Some(first)
    );
}

async fn concurrent_inserts_of_one_mobile_make_one_user(b: &Backend) {
    let results = race(20, |i| {
        let users = Arc::clone(&b.storage.users);
        async move {
            let r = registration("+15550000001", "A", "B", &format!("a{i}@example.com"));
            users.insert(&r, NOW).await
        }
    })
    .await;
    let mut winners = Vec::new();
    for result in results {
        match result {
            Ok(user) => winners.push(user),
            Err(StoreError::Conflict(UniqueField::Mobile)) => {}
            Err(e) => panic!("[{}] concurrent insert: {e:?}", b.name),
        }
    }
    assert_eq!(winners.len(), 1, "[{}] winners: {winners:?}", b.name);
    let stored = b
        .storage
        .users
        .find_by_mobile("+15550000001")
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), Some(&winners[0]), "[{}]", b.name);
}

async fn update_unverified_replaces_details(b: &Backend) {
    let users = &b.storage.users;
    let user = b
        .insert(&registration(
            "+15550000001",
            "Old",
            "Name",
            "old@example.com",
        ))
        .await;
    let new = registration("+15550000001", "Néw", "Nàme", "new@example.com");
    assert!(
        users
            .update_unverified(user.id, &new, NOW + 60)
            .await
            .unwrap(),
        "[{}] update of an unverified user",
        b.name
    );
    let stored = users.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(stored.first_name, "Néw");
    assert_eq!(stored.last_name, "Nàme");
    assert_eq!(stored.email, "new@example.com");
    // Identity and creation time stay; the user stays unverified.
    assert_eq!(stored.id, user.id);
    assert_eq!(stored.mobile, user.mobile);
    assert_eq!(stored.created_at, NOW, "[{}] created_at kept", b.name);
    assert!(!stored.verified);
    assert_eq!(
        users.find_by_email("new@example.com").await.unwrap(),
        Some(stored.clone())
    );
    // The old email is free again.
    assert_eq!(users.find_by_email("old@example.com").await.unwrap(), None);
    b.insert(&registration("+15550000002", "X", "Y", "old@example.com"))
        .await;

    // Writing the very same details again is still a success (a row that
    // matched but did not change must not read as "user gone").
    assert!(
        users
            .update_unverified(user.id, &new, NOW + 60)
            .await
            .unwrap(),
        "[{}] an unchanged update reports false",
        b.name
    );
    assert_eq!(users.find_by_id(user.id).await.unwrap(), Some(stored));
}

async fn update_unverified_refuses_verified_and_unknown_users(b: &Backend) {
    let users = &b.storage.users;
    let user = b
        .insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    assert!(users.mark_verified("+15550000001", NOW).await.unwrap());
    let change = registration("+15550000001", "C", "D", "c@example.com");
    assert!(
        !users
            .update_unverified(user.id, &change, NOW)
            .await
            .unwrap(),
        "[{}] a verified user was updated",
        b.name
    );
    let stored = users.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.first_name.as_str(), stored.email.as_str()),
        ("A", "a@example.com"),
        "[{}] a verified user's details changed",
        b.name
    );
    assert!(stored.verified);

    assert!(
        !users
            .update_unverified(user.id + 1000, &change, NOW)
            .await
            .unwrap(),
        "[{}] an unknown id was updated",
        b.name
    );
    assert!(
        !users
            .update_unverified(u64::MAX, &change, NOW)
            .await
            .unwrap()
    );
    assert_eq!(users.find_by_email("c@example.com").await.unwrap(), None);
}

async fn update_unverified_conflicts_on_another_users_email(b: &Backend) {
    let users = &b.storage.users;
    let (ann, bob) = b.ann_and_bob().await;
    let steal = registration("+15550000002", "Bobby", "B", "ann@example.com");
    match users.update_unverified(bob.id, &steal, NOW + 1).await {
        Err(StoreError::Conflict(UniqueField::Email)) => {}
        other => panic!("[{}] taking another user's email: {other:?}", b.name),
    }
    assert_eq!(users.find_by_id(bob.id).await.unwrap(), Some(bob));
    assert_eq!(users.find_by_id(ann.id).await.unwrap(), Some(ann));
}

async fn mark_verified_flips_once(b: &Backend) {
    let users = &b.storage.users;
    let user = b
        .insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    let other = b
        .insert(&registration("+15550000002", "C", "D", "c@example.com"))
        .await;
    assert!(users.mark_verified("+15550000001", NOW + 10).await.unwrap());
    assert!(
        !users.mark_verified("+15550000001", NOW + 20).await.unwrap(),
        "[{}] verified twice",
        b.name
    );
    let stored = users.find_by_mobile("+15550000001").await.unwrap().unwrap();
    assert!(stored.verified);
    assert_eq!(stored.created_at, user.created_at);
    // Only that user.
    assert_eq!(users.find_by_id(other.id).await.unwrap(), Some(other));
    assert!(!users.mark_verified("+15550000009", NOW).await.unwrap());
}

async fn concurrent_mark_verified_flips_once(b: &Backend) {
    b.insert(&registration("+15550000001", "A", "B", "a@example.com"))
        .await;
    let results = race(20, |_| {
        let users = Arc::clone(&b.storage.users);
        async move { users.mark_verified("+15550000001", NOW).await }
    })
    .await;
    let flips = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("mark_verified: {e}")))
        .filter(|flipped| *flipped)
        .count();
    assert_eq!(flips, 1, "[{}] concurrent mark_verified flips", b.name);
}

async fn ping_answers(b: &Backend) {
    b.storage.users.ping().await.unwrap();
    b.storage.otps.ping().await.unwrap();
    b.storage.ping().await.unwrap();
}

// ------------------------------------------------------------------- otps

async fn issued_otp_verifies_once(b: &Backend) {
    let l = relaxed();
    b.issued(Purpose::Register, "+15550000001", &digest(1), &l)
        .await;
    assert_eq!(
        b.verify(Purpose::Register, "+15550000001", &digest(1), &l)
            .await,
        VerifyOutcome::Valid,
        "[{}]",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Register, "+15550000001", &digest(1), &l)
            .await,
        VerifyOutcome::Missing,
        "[{}] an OTP was used twice",
        b.name
    );
}

async fn wrong_digest_is_invalid_and_the_right_one_still_works(b: &Backend) {
    let l = relaxed();
    let m = "+15550000001";
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Invalid
    );
    // Differs in the last byte only.
    let mut near = [1u8; 32];
    near[31] = 0;
    assert_eq!(
        b.verify(Purpose::Login, m, &OtpDigest(near), &l).await,
        VerifyOutcome::Invalid,
        "[{}] a digest differing in its last byte matched",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Valid,
        "[{}]",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Missing
    );
}

async fn max_attempts_wrong_guesses_burn_the_otp(b: &Backend) {
    let l = limits(secs(60), Duration::ZERO, 3);
    // max_attempts - 1 wrong guesses leave it usable.
    let m = "+15550000001";
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    for _ in 0..2 {
        assert_eq!(
            b.verify(Purpose::Login, m, &digest(9), &l).await,
            VerifyOutcome::Invalid
        );
    }
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Valid,
        "[{}] burned before max_attempts",
        b.name
    );

    // max_attempts wrong guesses burn it: all three report Invalid, then
    // nothing is live, not even for the right digest.
    let m = "+15550000002";
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    for i in 1..=3 {
        assert_eq!(
            b.verify(Purpose::Login, m, &digest(9), &l).await,
            VerifyOutcome::Invalid,
            "[{}] wrong guess {i}",
            b.name
        );
    }
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Missing,
        "[{}] the right OTP still worked after max_attempts wrong guesses",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(9), &l).await,
        VerifyOutcome::Missing
    );
}

async fn otp_is_bound_to_its_purpose(b: &Backend) {
    let l = relaxed();
    let m = "+15550000001";
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Missing,
        "[{}] a register OTP was accepted for login",
        b.name
    );
    // Both purposes can be live at once without touching each other.
    b.issued(Purpose::Login, m, &digest(2), &l).await;
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(2), &l).await,
        VerifyOutcome::Invalid
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(1), &l).await,
        VerifyOutcome::Valid,
        "[{}]",
        b.name
    );
}

async fn otp_is_bound_to_its_mobile(b: &Backend) {
    let l = relaxed();
    b.issued(Purpose::Register, "+15550000001", &digest(1), &l)
        .await;
    for other in [
        "+15550000002",
        "+155500000011",
        "+1555000000",
        "15550000001",
    ] {
        assert_eq!(
            b.verify(Purpose::Register, other, &digest(1), &l).await,
            VerifyOutcome::Missing,
            "[{}] an OTP for +15550000001 was accepted for {other}",
            b.name
        );
    }
    assert_eq!(
        b.verify(Purpose::Register, "+15550000001", &digest(1), &l)
            .await,
        VerifyOutcome::Valid
    );
}

async fn cooldown_refuses_a_second_issue(b: &Backend) {
    let cooldown = secs(30);
    let l = limits(secs(60), cooldown, 5);
    let m = "+15550000001";
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    match b.issue(Purpose::Register, m, &digest(2), &l).await {
        IssueOutcome::Cooldown { retry_after } => assert!(
            !retry_after.is_zero() && retry_after <= cooldown,
            "[{}] retry_after {retry_after:?}",
            b.name
        ),
        IssueOutcome::Issued => panic!("[{}] issued within the cooldown", b.name),
    }
    // The refused issue did not replace the live OTP.
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(2), &l).await,
        VerifyOutcome::Invalid,
        "[{}] a refused issue replaced the OTP",
        b.name
    );
    // The cooldown is per (purpose, mobile).
    b.issued(Purpose::Login, m, &digest(3), &l).await;
    b.issued(Purpose::Register, "+15550000002", &digest(4), &l)
        .await;
    // Using the OTP does not end the cooldown either.
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(1), &l).await,
        VerifyOutcome::Valid
    );
    assert!(
        matches!(
            b.issue(Purpose::Register, m, &digest(5), &l).await,
            IssueOutcome::Cooldown { .. }
        ),
        "[{}] consuming the OTP ended the cooldown",
        b.name
    );
}

async fn cooldown_lapses(b: &Backend) {
    let cooldown = millis(300);
    let l = limits(secs(60), cooldown, 5);
    let m = "+15550000001";
    let start = Instant::now();
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    // A refused issue changes nothing, so polling issue itself is fine.
    poll_until("the cooldown to lapse", || async {
        match b.issue(Purpose::Login, m, &digest(2), &l).await {
            IssueOutcome::Issued => Some(()),
            IssueOutcome::Cooldown { retry_after } => {
                assert!(retry_after <= cooldown, "retry_after {retry_after:?}");
                None
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed + millis(50) >= cooldown,
        "[{}] the cooldown lapsed after {elapsed:?}",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
}

async fn zero_cooldown_reissue_replaces_digest_and_resets_attempts(b: &Backend) {
    let l = limits(secs(60), Duration::ZERO, 3);
    let m = "+15550000001";
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    // Two wrong guesses, one short of burning.
    for _ in 0..2 {
        assert_eq!(
            b.verify(Purpose::Register, m, &digest(9), &l).await,
            VerifyOutcome::Invalid
        );
    }
    b.issued(Purpose::Register, m, &digest(2), &l).await;
    let old = b.verify(Purpose::Register, m, &digest(1), &l).await;
    assert_ne!(
        old,
        VerifyOutcome::Valid,
        "[{}] a replaced OTP still worked",
        b.name
    );
    // With a fresh counter, one more wrong guess (two in all with the old
    // digest) does not burn the new OTP.
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(9), &l).await,
        VerifyOutcome::Invalid,
        "[{}] the attempt counter was not reset by a new OTP",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(2), &l).await,
        VerifyOutcome::Valid,
        "[{}]",
        b.name
    );
}

async fn otp_expires_after_ttl(b: &Backend) {
    let ttl = millis(300);
    // Enough attempts that probing with a wrong digest never burns it.
    let l = limits(ttl, Duration::ZERO, u32::MAX);
    let m = "+15550000001";
    let start = Instant::now();
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    // Live at first (a wrong guess is Invalid, not Missing).
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(9), &l).await,
        VerifyOutcome::Invalid,
        "[{}] expired at once",
        b.name
    );
    poll_until("the OTP to expire", || async {
        match b.verify(Purpose::Login, m, &digest(9), &l).await {
            VerifyOutcome::Missing => Some(()),
            VerifyOutcome::Invalid => None,
            VerifyOutcome::Valid => panic!("a wrong digest matched"),
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed + millis(50) >= ttl,
        "[{}] expired after {elapsed:?}, before its ttl",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(1), &l).await,
        VerifyOutcome::Missing,
        "[{}] an expired OTP was accepted",
        b.name
    );
    // Expiry of the OTP leaves no trace: a new one works.
    b.issued(Purpose::Login, m, &digest(2), &l).await;
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
}

async fn revoke_removes_otp_and_cooldown(b: &Backend) {
    let l = limits(secs(60), secs(30), 5);
    let m = "+15550000001";
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    b.revoke(Purpose::Register, m, &digest(1)).await;
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(1), &l).await,
        VerifyOutcome::Missing,
        "[{}] a revoked OTP was accepted",
        b.name
    );
    // The cooldown went with it: asking again works at once.
    assert_eq!(
        b.issue(Purpose::Register, m, &digest(2), &l).await,
        IssueOutcome::Issued,
        "[{}] revoke left the cooldown",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
    // Revoking something never issued is harmless.
    b.revoke(Purpose::Login, "+15550000009", &digest(3)).await;
}

async fn revoke_with_another_digest_changes_nothing(b: &Backend) {
    let l = limits(secs(60), secs(30), 5);
    let m = "+15550000001";
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    b.revoke(Purpose::Register, m, &digest(2)).await;
    // Another purpose's revoke does not touch it either.
    b.revoke(Purpose::Login, m, &digest(1)).await;
    assert!(
        matches!(
            b.issue(Purpose::Register, m, &digest(3), &l).await,
            IssueOutcome::Cooldown { .. }
        ),
        "[{}] revoke with another digest removed the cooldown",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(1), &l).await,
        VerifyOutcome::Valid,
        "[{}] revoke with another digest removed the OTP",
        b.name
    );
}

async fn concurrent_correct_verifies_have_one_winner(b: &Backend) {
    let l = relaxed();
    let m = "+15550000001";
    b.issued(Purpose::Login, m, &digest(7), &l).await;
    let outcomes = race(20, |_| {
        let otps = Arc::clone(&b.storage.otps);
        async move { otps.verify(Purpose::Login, m, &digest(7), &l).await }
    })
    .await;
    let outcomes: Vec<VerifyOutcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|e| panic!("verify: {e}")))
        .collect();
    let valid = outcomes
        .iter()
        .filter(|o| **o == VerifyOutcome::Valid)
        .count();
    let missing = outcomes
        .iter()
        .filter(|o| **o == VerifyOutcome::Missing)
        .count();
    assert_eq!(
        (valid, missing),
        (1, 19),
        "[{}] outcomes {outcomes:?}",
        b.name
    );
}

async fn concurrent_wrong_verifies_burn_at_exactly_max_attempts(b: &Backend) {
    let l = limits(secs(60), Duration::ZERO, 5);
    let m = "+15550000001";
    b.issued(Purpose::Login, m, &digest(7), &l).await;
    let outcomes = race(20, |i| {
        let otps = Arc::clone(&b.storage.otps);
        // Distinct wrong digests, none equal to 7.
        let wrong = digest(100 + u8::try_from(i).unwrap());
        async move { otps.verify(Purpose::Login, m, &wrong, &l).await }
    })
    .await;
    let outcomes: Vec<VerifyOutcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|e| panic!("verify: {e}")))
        .collect();
    let invalid = outcomes
        .iter()
        .filter(|o| **o == VerifyOutcome::Invalid)
        .count();
    let missing = outcomes
        .iter()
        .filter(|o| **o == VerifyOutcome::Missing)
        .count();
    assert_eq!(
        (invalid, missing),
        (5, 15),
        "[{}] every attempt must be counted exactly once: {outcomes:?}",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(7), &l).await,
        VerifyOutcome::Missing,
        "[{}] the OTP survived max_attempts concurrent wrong guesses",
        b.name
    );
}

async fn concurrent_issues_send_exactly_one(b: &Backend) {
    let cooldown = secs(30);
    let l = limits(secs(60), cooldown, 5);
    let m = "+15550000001";
    let outcomes = race(20, |i| {
        let otps = Arc::clone(&b.storage.otps);
        let d = digest(u8::try_from(i).unwrap() + 1);
        async move { (i, otps.issue(Purpose::Register, m, &d, &l).await) }
    })
    .await;
    let mut winners = Vec::new();
    for (i, outcome) in outcomes {
        match outcome.unwrap_or_else(|e| panic!("issue: {e}")) {
            IssueOutcome::Issued => winners.push(i),
            IssueOutcome::Cooldown { retry_after } => assert!(
                !retry_after.is_zero() && retry_after <= cooldown,
                "[{}] retry_after {retry_after:?}",
                b.name
            ),
        }
    }
    assert_eq!(winners.len(), 1, "[{}] issued by {winners:?}", b.name);
    let winner = u8::try_from(winners[0]).unwrap() + 1;
    // The live OTP is the winner's: a loser's digest does not match.
    let loser = if winner == 1 { 2 } else { 1 };
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(loser), &l).await,
        VerifyOutcome::Invalid,
        "[{}] a refused issue replaced the OTP",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(winner), &l).await,
        VerifyOutcome::Valid,
        "[{}]",
        b.name
    );
}

async fn zero_digest_never_matches_a_missing_otp(b: &Backend) {
    let l = relaxed();
    let zeros = OtpDigest([0; 32]);
    for purpose in [Purpose::Register, Purpose::Login] {
        assert_eq!(
            b.verify(purpose, "+15550000001", &zeros, &l).await,
            VerifyOutcome::Missing,
            "[{}] a zero digest matched a never-sent OTP",
            b.name
        );
    }
    // Nor an OTP that was used, nor one of another purpose.
    b.issued(Purpose::Login, "+15550000002", &digest(1), &l)
        .await;
    assert_eq!(
        b.verify(Purpose::Login, "+15550000002", &digest(1), &l)
            .await,
        VerifyOutcome::Valid
    );
    assert_eq!(
        b.verify(Purpose::Login, "+15550000002", &zeros, &l).await,
        VerifyOutcome::Missing
    );
    assert_eq!(
        b.verify(Purpose::Register, "+15550000002", &zeros, &l)
            .await,
        VerifyOutcome::Missing
    );
    // A live OTP is not matched by zeros either.
    b.issued(Purpose::Register, "+15550000003", &digest(1), &l)
        .await;
    assert_eq!(
        b.verify(Purpose::Register, "+15550000003", &zeros, &l)
            .await,
        VerifyOutcome::Invalid
    );
}

// --------------------------------------------------- redis-specific checks

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
                &with_cooldown
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

async fn emails_are_equal_only_byte_for_byte(b: &Backend) {
    let users = &b.storage.users;
    // Pairs that a Unicode collation (MySQL's utf8mb4_unicode_ci) calls equal.
    let pairs = [
        ("straße@example.com", "strasse@example.com"),
        ("\u{ff41}nn@example.com", "ann@example.com"),
        ("e\u{301}mile@example.com", "\u{e9}mile@example.com"),
    ];
    for (i, (first, second)) in pairs.iter().enumerate() {
        let n = 10 + 2 * i;
        let a = b
            .insert(&registration(&format!("+155500000{n:02}"), "A", "B", first))
            .await;
        let c = users
            .insert(
                &registration(&format!("+155500000{:02}", n + 1), "C", "D", second),
                NOW,
            )
            .await
            .unwrap_or_else(|e| panic!("[{}] {second:?} after {first:?}: {e}", b.name));
        assert_eq!(
            users.find_by_email(first).await.unwrap(),
            Some(a),
            "[{}]",
            b.name
        );
        assert_eq!(
            users.find_by_email(second).await.unwrap(),
            Some(c),
            "[{}]",
            b.name
        );
    }
    // The same bytes still conflict.
    match users
        .insert(
            &registration("+15550000099", "E", "F", "strasse@example.com"),
            NOW,
        )
        .await
    {
        Err(StoreError::Conflict(UniqueField::Email)) => {}
        other => panic!("[{}] equal bytes: {other:?}", b.name),
    }
}

async fn delete_unverified_removes_only_unverified_users(b: &Backend) {
    let users = &b.storage.users;
    let (ann, bob) = b.ann_and_bob().await;
    assert!(users.mark_verified(&bob.mobile, NOW).await.unwrap());
    assert!(
        !users.delete_unverified(bob.id).await.unwrap(),
        "[{}] verified",
        b.name
    );
    assert!(users.find_by_id(bob.id).await.unwrap().is_some());
    assert!(
        users.delete_unverified(ann.id).await.unwrap(),
        "[{}] unverified",
        b.name
    );
    assert_eq!(users.find_by_id(ann.id).await.unwrap(), None);
    assert!(
        !users.delete_unverified(ann.id).await.unwrap(),
        "[{}] gone",
        b.name
    );
    // Its mobile and email are free again.
    b.insert(&registration(&ann.mobile, "New", "Owner", &ann.email))
        .await;
}

async fn is_live_follows_the_otp(b: &Backend) {
    let otps = &b.storage.otps;
    let m = "+15550000001";
    let live = async |purpose| otps.is_live(purpose, m).await.unwrap();
    assert!(!live(Purpose::Register).await, "[{}] never sent", b.name);
    let l = limits(secs(60), Duration::ZERO, 2);
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    assert!(live(Purpose::Register).await, "[{}] sent", b.name);
    assert!(!live(Purpose::Login).await, "[{}] other purpose", b.name);
    assert_eq!(
        b.verify(Purpose::Register, m, &digest(1), &l).await,
        VerifyOutcome::Valid
    );
    assert!(!live(Purpose::Register).await, "[{}] used", b.name);
    b.issued(Purpose::Register, m, &digest(1), &l).await;
    for _ in 0..2 {
        b.verify(Purpose::Register, m, &digest(2), &l).await;
    }
    assert!(!live(Purpose::Register).await, "[{}] burned", b.name);
    let short = limits(millis(200), Duration::ZERO, 2);
    b.issued(Purpose::Register, m, &digest(1), &short).await;
    poll_until("the OTP to expire", || async {
        (!otps.is_live(Purpose::Register, m).await.unwrap()).then_some(())
    })
    .await;
}
