//! `OtpStore`: OTP state in process and on Redis.

use super::*;
use otpgate::store::Rate;

conformance!(
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
    is_live_follows_the_otp,
    burned_otps_lock_the_mobile_out,
    a_lockout_ends_after_its_duration,
    burns_outside_the_window_do_not_lock,
    issue_counts_against_the_mobile_rates,
    a_refused_repeat_uses_none_of_the_allowance,
    revoke_gives_the_sms_count_back,
    concurrent_issues_never_exceed_the_mobile_rate,
);

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

    // max_attempts wrong guesses burn it: the last reports the burn, then
    // nothing is live, not even for the right digest.
    let m = "+15550000002";
    b.issued(Purpose::Login, m, &digest(1), &l).await;
    for i in 1..=3 {
        let expected = if i < 3 {
            VerifyOutcome::Invalid
        } else {
            VerifyOutcome::Burned { locked: false }
        };
        assert_eq!(
            b.verify(Purpose::Login, m, &digest(9), &l).await,
            expected,
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
        other => panic!("[{}] {other:?} within the cooldown", b.name),
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
            other => panic!("{other:?}"),
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
            other => panic!("a wrong digest gave {other:?}"),
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
    let count = |outcome: VerifyOutcome| outcomes.iter().filter(|o| **o == outcome).count();
    assert_eq!(
        (
            count(VerifyOutcome::Invalid),
            count(VerifyOutcome::Burned { locked: false }),
            count(VerifyOutcome::Missing)
        ),
        (4, 1, 15),
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
        async move {
            let sms = SmsCount {
                rates: &[],
                ticket: &Ticket::new(),
            };
            (i, otps.issue(Purpose::Register, m, &d, &l, sms).await)
        }
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
            other => panic!("[{}] {other:?}", b.name),
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

fn with_lockout(burned: u32, window: Duration, duration: Duration) -> OtpLimits {
    OtpLimits {
        lockout: Some(otpgate::store::Lockout {
            burned,
            window,
            duration,
        }),
        // One wrong guess burns an OTP.
        ..limits(secs(60), Duration::ZERO, 1)
    }
}

/// Issues an OTP for `m` and burns it with a wrong guess.
async fn burn(b: &Backend, purpose: Purpose, m: &str, l: &OtpLimits) -> VerifyOutcome {
    b.issued(purpose, m, &digest(1), l).await;
    b.verify(purpose, m, &digest(9), l).await
}

async fn burned_otps_lock_the_mobile_out(b: &Backend) {
    let l = with_lockout(2, secs(60), secs(60));
    let m = "+15550000001";
    assert_eq!(
        burn(b, Purpose::Login, m, &l).await,
        VerifyOutcome::Burned { locked: false }
    );
    // Burns of either purpose count for the mobile.
    assert_eq!(
        burn(b, Purpose::Register, m, &l).await,
        VerifyOutcome::Burned { locked: true },
        "[{}] the second burn within the window must lock",
        b.name
    );
    for purpose in Purpose::ALL {
        match b.issue(purpose, m, &digest(2), &l).await {
            IssueOutcome::LockedOut { retry_after } => assert!(
                retry_after > secs(50) && retry_after <= secs(60),
                "[{}] retry_after {retry_after:?}",
                b.name
            ),
            other => panic!("[{}] a locked mobile got {other:?}", b.name),
        }
        assert!(
            matches!(
                b.verify(purpose, m, &digest(1), &l).await,
                VerifyOutcome::LockedOut { .. }
            ),
            "[{}] a locked mobile's verification was compared",
            b.name
        );
    }
    // Another mobile is not touched.
    b.issued(Purpose::Login, "+15550000002", &digest(1), &l)
        .await;
}

async fn a_lockout_ends_after_its_duration(b: &Backend) {
    let duration = millis(300);
    let l = with_lockout(1, secs(60), duration);
    let m = "+15550000001";
    let start = Instant::now();
    assert_eq!(
        burn(b, Purpose::Login, m, &l).await,
        VerifyOutcome::Burned { locked: true }
    );
    poll_until("the lockout to end", || async {
        match b.issue(Purpose::Login, m, &digest(2), &l).await {
            IssueOutcome::Issued => Some(()),
            IssueOutcome::LockedOut { .. } => None,
            other => panic!("{other:?}"),
        }
    })
    .await;
    assert!(
        start.elapsed() + millis(50) >= duration,
        "[{}] the lockout ended early",
        b.name
    );
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
}

async fn burns_outside_the_window_do_not_lock(b: &Backend) {
    let window = millis(300);
    let l = with_lockout(2, window, secs(60));
    let m = "+15550000001";
    assert_eq!(
        burn(b, Purpose::Login, m, &l).await,
        VerifyOutcome::Burned { locked: false }
    );
    // The window is what is under test: let it pass.
    tokio::time::sleep(window + millis(50)).await;
    assert_eq!(
        burn(b, Purpose::Login, m, &l).await,
        VerifyOutcome::Burned { locked: false },
        "[{}] a burn older than the window still counted",
        b.name
    );
    assert_eq!(
        burn(b, Purpose::Login, m, &l).await,
        VerifyOutcome::Burned { locked: true }
    );
}

impl Backend {
    async fn issue_counted(
        &self,
        m: &str,
        d: &OtpDigest,
        l: &OtpLimits,
        rates: &[Rate],
        ticket: &Ticket,
    ) -> IssueOutcome {
        let sms = SmsCount { rates, ticket };
        self.storage
            .otps
            .issue(Purpose::Login, m, d, l, sms)
            .await
            .unwrap_or_else(|e| panic!("[{}] issue: {e}", self.name))
    }
}

fn per_minute(count: u32) -> [Rate; 1] {
    [Rate {
        count,
        window: secs(60),
    }]
}

async fn issue_counts_against_the_mobile_rates(b: &Backend) {
    let l = relaxed();
    let rates = per_minute(2);
    let m = "+15550000001";
    for n in 1..=2 {
        let issued = b
            .issue_counted(m, &digest(n), &l, &rates, &Ticket::new())
            .await;
        assert_eq!(issued, IssueOutcome::Issued, "[{}] SMS {n}", b.name);
    }
    match b
        .issue_counted(m, &digest(3), &l, &rates, &Ticket::new())
        .await
    {
        IssueOutcome::MobileLimit { retry_after } => assert!(
            !retry_after.is_zero() && retry_after <= secs(60),
            "[{}] retry_after {retry_after:?}",
            b.name
        ),
        other => panic!("[{}] a third SMS in the window: {other:?}", b.name),
    }
    // The refused issue left the live OTP alone.
    assert_eq!(
        b.verify(Purpose::Login, m, &digest(2), &l).await,
        VerifyOutcome::Valid
    );
    let other = b
        .issue_counted("+15550000002", &digest(1), &l, &rates, &Ticket::new())
        .await;
    assert_eq!(other, IssueOutcome::Issued, "[{}] another mobile", b.name);
}

async fn a_refused_repeat_uses_none_of_the_allowance(b: &Backend) {
    let l = limits(secs(60), millis(300), 5);
    let rates = per_minute(2);
    let m = "+15550000001";
    let first = b
        .issue_counted(m, &digest(1), &l, &rates, &Ticket::new())
        .await;
    assert_eq!(first, IssueOutcome::Issued);
    for _ in 0..3 {
        assert!(matches!(
            b.issue_counted(m, &digest(2), &l, &rates, &Ticket::new())
                .await,
            IssueOutcome::Cooldown { .. }
        ));
    }
    // After the cooldown the second SMS of the allowance is still there.
    poll_until("the cooldown to lapse", || async {
        match b
            .issue_counted(m, &digest(2), &l, &rates, &Ticket::new())
            .await
        {
            IssueOutcome::Issued => Some(()),
            IssueOutcome::Cooldown { .. } => None,
            other => panic!("[{}] {other:?}: the refused repeats were counted", b.name),
        }
    })
    .await;
}

async fn revoke_gives_the_sms_count_back(b: &Backend) {
    let l = relaxed();
    let rates = per_minute(1);
    let m = "+15550000001";
    let ticket = Ticket::new();
    let first = b.issue_counted(m, &digest(1), &l, &rates, &ticket).await;
    assert_eq!(first, IssueOutcome::Issued);
    b.storage
        .otps
        .revoke(Purpose::Login, m, &digest(1), &ticket)
        .await
        .unwrap();
    let again = b
        .issue_counted(m, &digest(2), &l, &rates, &Ticket::new())
        .await;
    assert_eq!(again, IssueOutcome::Issued, "[{}] the count stayed", b.name);
}

async fn concurrent_issues_never_exceed_the_mobile_rate(b: &Backend) {
    let l = relaxed();
    let m = "+15550000001";
    let outcomes = race(50, |i| {
        let otps = Arc::clone(&b.storage.otps);
        let d = digest(u8::try_from(i).unwrap() + 1);
        async move {
            let rates = per_minute(10);
            let sms = SmsCount {
                rates: &rates,
                ticket: &Ticket::new(),
            };
            otps.issue(Purpose::Login, m, &d, &l, sms).await
        }
    })
    .await;
    let issued = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|e| panic!("issue: {e}")))
        .filter(|o| *o == IssueOutcome::Issued)
        .count();
    assert_eq!(issued, 10, "[{}] 50 racing sends, a limit of 10", b.name);
}
