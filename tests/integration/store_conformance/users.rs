//! `UserStore`: accounts on SQLite and MySQL.

use super::*;

conformance!(
    insert_then_find_round_trips_every_field,
    find_registration_splits_mobile_owner_and_email_owner,
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
    emails_are_equal_only_byte_for_byte,
    delete_unverified_removes_only_unverified_users,
);

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
