//! SPEC section 7 through the real binary: RS256, ES256 and EdDSA tokens
//! from a real login, verified by a standard JWT library with nothing but
//! the JWKS; key rotation; the classic attacks refused and never forwarded;
//! `otpgate keygen`; and bad key configs refused, naming the key.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
];

/// `otpgate keygen` into `dir`; returns (private, public) paths.
fn keygen(dir: &Path, algorithm: &str, kid: &str) -> (PathBuf, PathBuf) {
    let out = otpgate(dir)
        .args(["keygen", "--algorithm", algorithm, "--out"])
        .arg(dir)
        .args(["--kid", kid])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), kid);
    (
        dir.join(format!("{kid}.pem")),
        dir.join(format!("{kid}.pub.pem")),
    )
}

fn encoding_key(algorithm: Algorithm, pem: &[u8]) -> EncodingKey {
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_ed_pem(pem).unwrap(),
    }
}

async fn gateway(algorithm: &str, keys: &str) -> (Upstream, Gateway) {
    let up = upstream("up");
    let mut spec =
        GatewaySpec::new(Store::Embedded).route(route("api", "/api/", &[up.addr], "required"));
    spec.jwt = format!("algorithm: {algorithm}, keys: [{keys}]");
    (up, spec.start().await)
}

async fn jwks(gw: &Gateway) -> Value {
    let response = client()
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    response.json().await.unwrap()
}

async fn api_status(gw: &Gateway, token: &str) -> u16 {
    client()
        .get(gw.url("/api/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_each_algorithm_verify_with_only_the_jwks() {
    for (name, algorithm) in ALGORITHMS {
        let keys = tempfile::tempdir().unwrap();
        let (private, _) = keygen(keys.path(), name, "k1");
        let (_up, gw) = gateway(
            name,
            &format!(
                "{{ kid: k1, private_key_file: {:?} }}",
                private.display().to_string()
            ),
        )
        .await;
        let token = signed_up_token(&gw, "+15550300001").await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (algorithm, Some("k1")),
            "{name}"
        );
        let document = jwks(&gw).await;
        let published = document["keys"].as_array().unwrap();
        assert_eq!(published.len(), 1, "{name}: {document}");
        let jwk = &published[0];
        assert_eq!(
            (
                jwk["kid"].as_str(),
                jwk["alg"].as_str(),
                jwk["use"].as_str()
            ),
            (Some("k1"), Some(name), Some("sig"))
        );
        for private_param in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(private_param).is_none(), "{name}: {jwk}");
        }
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&["otpgate"]);
        validation.set_audience(&["otpgate"]);
        let claims = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(&jwk).unwrap(),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .claims;
        assert!(claims["sid"].is_string());
        assert_eq!(api_status(&gw, &token).await, 200, "{name}");
    }
}

#[tokio::test]
async fn hs256_publishes_no_keys() {
    let gw = GatewaySpec::new(Store::Embedded)
        .route(route("api", "/api/", &[free_addr()], "required"))
        .start()
        .await;
    assert_eq!(jwks(&gw).await, json!({ "keys": [] }));
}

#[tokio::test]
async fn a_rotated_out_key_still_verifies_while_listed() {
    let keys = tempfile::tempdir().unwrap();
    let (old_private, old_public) = keygen(keys.path(), "ES256", "old");
    let (new_private, _) = keygen(keys.path(), "ES256", "new");
    let (up, gw) = gateway(
        "ES256",
        &format!(
            "{{ kid: new, private_key_file: {:?} }}, {{ kid: old, public_key_file: {:?} }}",
            new_private.display().to_string(),
            old_public.display().to_string()
        ),
    )
    .await;
    // A token the old key signed before the rotation.
    let old = encoding_key(Algorithm::ES256, &std::fs::read(&old_private).unwrap());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("old".into());
    let claims = tokens::claims("7", now(), now() + 600);
    let token = jsonwebtoken::encode(&header, &claims, &old).unwrap();
    assert_eq!(api_status(&gw, &token).await, 200);
    // New tokens are signed by the new key; both are published.
    let fresh = signed_up_token(&gw, "+15550300101").await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        Some("new")
    );
    let kids: Vec<Value> = jwks(&gw).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, [json!("new"), json!("old")]);
    // The old key cannot speak for the new kid.
    header.kid = Some("new".into());
    let forged = jsonwebtoken::encode(&header, &claims, &old).unwrap();
    assert_eq!(api_status(&gw, &forged).await, 401);
    assert_eq!(up.seen(), 1);
}

#[tokio::test]
async fn the_classic_attacks_are_refused_and_never_forwarded() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(keys.path(), "ES256", "k1");
    let (attacker_private, _) = keygen(keys.path(), "ES256", "evil");
    let (up, gw) = gateway(
        "ES256",
        &format!(
            "{{ kid: k1, private_key_file: {:?} }}",
            private.display().to_string()
        ),
    )
    .await;
    let claims = tokens::claims("7", now(), now() + 600);
    let attacker = encoding_key(Algorithm::ES256, &std::fs::read(&attacker_private).unwrap());
    let with = |edit: &dyn Fn(&mut Header)| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        edit(&mut header);
        jsonwebtoken::encode(&header, &claims, &attacker).unwrap()
    };
    // Algorithm confusion: HS256 "signed" with the public key's bytes.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
    )
    .unwrap();
    let payload = tokens::b64(serde_json::to_string(&claims).unwrap().as_bytes());
    let none = format!(
        "{}.{payload}.",
        tokens::b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
    );
    let attacker_jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker, Algorithm::ES256).unwrap();
    let cases = [
        ("hs256 with the public key", confused),
        ("alg none", none),
        ("unknown kid", with(&|h| h.kid = Some("evil".into()))),
        ("no kid", with(&|h| h.kid = None)),
        (
            "embedded jwk",
            with(&|h| h.jwk = Some(attacker_jwk.clone())),
        ),
        (
            "jku",
            with(&|h| h.jku = Some("http://127.0.0.1:1/jwks.json".into())),
        ),
        (
            "x5u",
            with(&|h| h.x5u = Some("http://127.0.0.1:1/cert.pem".into())),
        ),
        ("wrong key, right kid", with(&|_| {})),
    ];
    for (what, token) in cases {
        let (status, body) = json(
            client()
                .get(gw.url("/api/x"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "{what}"
        );
    }
    assert_eq!(up.seen(), 0);
}

#[tokio::test]
async fn keygen_writes_a_private_key_for_its_owner_and_names_it_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = otpgate(dir.path())
        .args(["keygen", "--algorithm", "EdDSA", "--out", "keys"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let today =
        humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_owned();
    assert_eq!(kid, today);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(format!("keys/{kid}.pem")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(dir.path().join(format!("keys/{kid}.pub.pem")).exists());
    // Never over an existing key.
    let again = otpgate(dir.path())
        .args(["keygen", "--algorithm", "EdDSA", "--out", "keys"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let bad = otpgate(dir.path())
        .args(["keygen", "--algorithm", "HS256", "--out", "keys"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn bad_key_configs_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (es_private, es_public) = keygen(dir.path(), "ES256", "es");
    let (rsa_private, _) = keygen(dir.path(), "RS256", "rsa");
    let p = |path: &Path| format!("{:?}", path.display().to_string());
    let cases = [
        (
            format!(
                "algorithm: ES256, keys: [{{ kid: a, private_key_file: {} }}]",
                p(&dir.path().join("missing.pem"))
            ),
            "jwt.keys[0]",
        ),
        (
            format!(
                "algorithm: ES256, keys: [{{ kid: a, private_key_file: {} }}]",
                p(&rsa_private)
            ),
            "jwt.keys[0]",
        ),
        (
            format!(
                "algorithm: ES256, keys: [{{ kid: a, public_key_file: {} }}]",
                p(&es_public)
            ),
            "jwt.keys[0]",
        ),
        (
            format!(
                "algorithm: ES256, keys: [{{ kid: a, private_key_file: {} }}, {{ kid: a, public_key_file: {} }}]",
                p(&es_private),
                p(&es_public)
            ),
            "jwt.keys[1]",
        ),
        (
            format!(
                "algorithm: ES256, keys: [{{ kid: a, private_key_file: {0}, public_key_file: {1} }}]",
                p(&es_private),
                p(&es_public)
            ),
            "jwt.keys[0]",
        ),
        ("algorithm: ES256".to_owned(), "jwt.keys"),
        (
            format!(
                "algorithm: HS256, keys: [{{ kid: a, private_key_file: {} }}]",
                p(&es_private)
            ),
            "jwt.keys",
        ),
        ("algorithm: HS512".to_owned(), "jwt.algorithm"),
    ];
    for (jwt, key) in cases {
        let stderr = check_refused(
            dir.path(),
            &format!("jwt: {{ secret: {SECRET:?}, {jwt} }}\n"),
        );
        assert!(
            stderr.contains(&format!("{key}:")) || stderr.contains(&format!("{key}.")),
            "{jwt}: {stderr}"
        );
        assert!(
            !stderr.contains("BEGIN"),
            "a key's text in the message: {stderr}"
        );
    }
}
