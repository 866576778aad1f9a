//! `SessionStore`: sessions, refresh token rotation and the revocation log,
//! on SQLite and MySQL.

use super::*;
use otpgate::store::{Refreshed, Revoke, RevokedSession, Session, TokenHash};

conformance!(
    created_sessions_are_listed_live,
    rotation_spends_the_token_and_makes_the_next_one_live,
    a_spent_token_is_reported_as_reused_with_when,
    unknown_expired_ended_and_revoked_sessions_do_not_rotate,
    refresh_tokens_never_outlive_the_session,
    of_twenty_concurrent_rotations_exactly_one_wins,
    revoke_one_all_and_all_but_one,
    the_revocation_log_is_read_since_a_time,
    deleting_the_user_deletes_its_sessions,
);

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

impl Backend {
    /// A verified user (for the sessions' foreign key); returns its id.
    async fn user(&self, mobile: &str) -> u64 {
        let email = format!("{}@example.com", mobile.trim_start_matches('+'));
        self.insert(&registration(mobile, "S", "T", &email))
            .await
            .id
    }

    /// A session of `user_id` created at NOW, ending after `lifetime`, with refresh token `token`.
    async fn session(&self, id: &str, user_id: u64, lifetime: i64, token: u8) -> Session {
        let session = Session {
            id: id.to_owned(),
            user_id,
            created_at: NOW,
            last_used_at: NOW,
            expires_at: NOW + lifetime,
            refresh_expires_at: NOW + lifetime.min(100),
        };
        self.storage
            .sessions
            .create(&session, &hash(token))
            .await
            .unwrap_or_else(|e| panic!("[{}] create: {e}", self.name));
        session
    }

    async fn rotate(&self, presented: u8, next: u8, now: i64, ttl: i64) -> Refreshed {
        self.storage
            .sessions
            .rotate(&hash(presented), &hash(next), now, ttl)
            .await
            .unwrap_or_else(|e| panic!("[{}] rotate: {e}", self.name))
    }

    async fn live(&self, user_id: u64, now: i64) -> Vec<String> {
        self.storage
            .sessions
            .live_for_user(user_id, now)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    }
}

async fn created_sessions_are_listed_live(b: &Backend) {
    let (ann, bob) = (b.user("+15550000001").await, b.user("+15550000002").await);
    let first = b.session("a1", ann, 1000, 1).await;
    b.session("a2", ann, 1000, 2).await;
    b.session("b1", bob, 1000, 3).await;
    let listed = b.storage.sessions.live_for_user(ann, NOW).await.unwrap();
    assert_eq!(listed.len(), 2, "[{}]", b.name);
    assert_eq!(listed[0], first, "[{}] round trip", b.name);
    assert_eq!(b.live(bob, NOW).await, ["b1"]);
    // Past the refresh token's end (100s here), a session is no longer live.
    assert!(b.live(ann, NOW + 100).await.is_empty(), "[{}]", b.name);
}

async fn rotation_spends_the_token_and_makes_the_next_one_live(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 1000, 1).await;
    let Refreshed::Rotated(s) = b.rotate(1, 2, NOW + 10, 50).await else {
        panic!("[{}] a live token did not rotate", b.name)
    };
    assert_eq!((s.id.as_str(), s.last_used_at), ("a1", NOW + 10));
    assert_eq!(s.refresh_expires_at, NOW + 60, "[{}] now + ttl", b.name);
    let listed = b
        .storage
        .sessions
        .live_for_user(ann, NOW + 20)
        .await
        .unwrap();
    assert_eq!(listed[0].last_used_at, NOW + 10, "[{}] stored", b.name);
    assert!(matches!(
        b.rotate(2, 3, NOW + 20, 50).await,
        Refreshed::Rotated(_)
    ));
}

async fn a_spent_token_is_reported_as_reused_with_when(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 1000, 1).await;
    b.rotate(1, 2, NOW + 5, 50).await;
    assert_eq!(
        b.rotate(1, 9, NOW + 30, 50).await,
        Refreshed::Reused {
            session_id: "a1".into(),
            user_id: ann,
            spent_at: NOW + 5
        },
        "[{}]",
        b.name
    );
    // The reuse changed nothing: the live token still rotates, 9 was not stored.
    assert!(matches!(
        b.rotate(2, 3, NOW + 31, 50).await,
        Refreshed::Rotated(_)
    ));
    assert_eq!(b.rotate(9, 4, NOW + 32, 50).await, Refreshed::Invalid);
}

async fn unknown_expired_ended_and_revoked_sessions_do_not_rotate(b: &Backend) {
    let ann = b.user("+15550000001").await;
    assert_eq!(
        b.rotate(7, 8, NOW, 50).await,
        Refreshed::Invalid,
        "[{}] unknown",
        b.name
    );
    b.session("a1", ann, 1000, 1).await;
    assert_eq!(
        b.rotate(1, 2, NOW + 100, 50).await,
        Refreshed::Invalid,
        "[{}] expired token",
        b.name
    );
    // A session past its end does not rotate, whatever its token's own end.
    let ended = Session {
        id: "a2".into(),
        user_id: ann,
        created_at: NOW,
        last_used_at: NOW,
        expires_at: NOW + 50,
        refresh_expires_at: NOW + 100,
    };
    b.storage.sessions.create(&ended, &hash(3)).await.unwrap();
    assert_eq!(
        b.rotate(3, 4, NOW + 60, 50).await,
        Refreshed::Invalid,
        "[{}] ended session",
        b.name
    );
    b.session("a3", ann, 1000, 5).await;
    b.storage
        .sessions
        .revoke(
            Revoke::One {
                user_id: ann,
                session_id: "a3",
            },
            NOW + 1,
            NOW + 3600,
        )
        .await
        .unwrap();
    assert_eq!(
        b.rotate(5, 6, NOW + 2, 50).await,
        Refreshed::Invalid,
        "[{}] revoked",
        b.name
    );
}

async fn refresh_tokens_never_outlive_the_session(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 300, 1).await;
    let Refreshed::Rotated(s) = b.rotate(1, 2, NOW + 50, 1000).await else {
        panic!("[{}] did not rotate", b.name)
    };
    assert_eq!(
        s.refresh_expires_at,
        NOW + 300,
        "[{}] capped at the session's end",
        b.name
    );
}

async fn of_twenty_concurrent_rotations_exactly_one_wins(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 1000, 1).await;
    let sessions = Arc::clone(&b.storage.sessions);
    let outcomes = race(20, |i| {
        let sessions = Arc::clone(&sessions);
        async move {
            sessions
                .rotate(&hash(1), &hash(100 + i as u8), NOW + 1, 50)
                .await
                .unwrap()
        }
    })
    .await;
    let wins = outcomes
        .iter()
        .filter(|o| matches!(o, Refreshed::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, Refreshed::Reused { .. }))
        .count();
    assert_eq!((wins, reused), (1, 19), "[{}] {outcomes:?}", b.name);
}

async fn revoke_one_all_and_all_but_one(b: &Backend) {
    let (ann, bob) = (b.user("+15550000001").await, b.user("+15550000002").await);
    for (i, id) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
        b.session(id, ann, 1000, i as u8 + 1).await;
    }
    b.session("b1", bob, 1000, 9).await;
    let sessions = &b.storage.sessions;
    let revoke = |which| sessions.revoke(which, NOW + 1, NOW + 3600);
    // Another user's session is not the caller's to revoke.
    assert!(
        revoke(Revoke::One {
            user_id: ann,
            session_id: "b1"
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        revoke(Revoke::One {
            user_id: ann,
            session_id: "a1"
        })
        .await
        .unwrap(),
        ["a1"]
    );
    assert!(
        revoke(Revoke::One {
            user_id: ann,
            session_id: "a1"
        })
        .await
        .unwrap()
        .is_empty(),
        "[{}] twice",
        b.name
    );
    let mut others = revoke(Revoke::AllOf {
        user_id: ann,
        except: Some("a2"),
    })
    .await
    .unwrap();
    others.sort();
    assert_eq!(others, ["a3", "a4"], "[{}]", b.name);
    assert_eq!(b.live(ann, NOW + 2).await, ["a2"]);
    assert_eq!(
        revoke(Revoke::AllOf {
            user_id: ann,
            except: None
        })
        .await
        .unwrap(),
        ["a2"]
    );
    assert!(b.live(ann, NOW + 2).await.is_empty());
    assert_eq!(b.live(bob, NOW + 2).await, ["b1"]);
}

async fn the_revocation_log_is_read_since_a_time(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 1000, 1).await;
    b.session("a2", ann, 1000, 2).await;
    let sessions = &b.storage.sessions;
    sessions
        .revoke(
            Revoke::One {
                user_id: ann,
                session_id: "a1",
            },
            NOW + 10,
            NOW + 100,
        )
        .await
        .unwrap();
    sessions
        .revoke(
            Revoke::One {
                user_id: ann,
                session_id: "a2",
            },
            NOW + 20,
            NOW + 200,
        )
        .await
        .unwrap();
    let entry = |id: &str, until| RevokedSession {
        session_id: id.into(),
        until,
    };
    let mut all = sessions.revoked_since(0, NOW).await.unwrap();
    all.sort_by(|x, y| x.session_id.cmp(&y.session_id));
    assert_eq!(
        all,
        [entry("a1", NOW + 100), entry("a2", NOW + 200)],
        "[{}]",
        b.name
    );
    assert_eq!(
        sessions.revoked_since(NOW + 15, NOW).await.unwrap(),
        [entry("a2", NOW + 200)]
    );
    // Entries whose tokens have all expired are no longer in force.
    assert_eq!(
        sessions.revoked_since(0, NOW + 150).await.unwrap(),
        [entry("a2", NOW + 200)]
    );
}

async fn deleting_the_user_deletes_its_sessions(b: &Backend) {
    let ann = b.user("+15550000001").await;
    b.session("a1", ann, 1000, 1).await;
    b.storage
        .sessions
        .revoke(
            Revoke::AllOf {
                user_id: ann,
                except: None,
            },
            NOW + 1,
            NOW + 100,
        )
        .await
        .unwrap();
    assert!(b.storage.users.delete(ann).await.unwrap(), "[{}]", b.name);
    assert!(
        !b.storage.users.delete(ann).await.unwrap(),
        "[{}] gone",
        b.name
    );
    assert_eq!(b.rotate(1, 2, NOW + 2, 50).await, Refreshed::Invalid);
    // The revocation log outlives the session rows.
    assert_eq!(
        b.storage
            .sessions
            .revoked_since(0, NOW)
            .await
            .unwrap()
            .len(),
        1,
        "[{}]",
        b.name
    );
    // The mobile is free again.
    b.user("+15550000001").await;
}
