//! Micro-benchmarks of what runs on every proxied request: the access check
//! (HS256 verification, a cached token, and for comparison the asymmetric
//! algorithms the roadmap adds), path normalisation, route matching with 10
//! and 1,000 routes, and the identity and forwarding header rewrite.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::sync::Arc;

use otpgate::auth::access::{AccessCheck, Principal, Requirement};
use otpgate::auth::token::{Claims, Tokens};
use std::path::Path;

use otpgate::config::{FeedLoss, IdentityHeaderNames, JwtConfig, Secret, Signing, SigningKey};
use otpgate::context::RequestIds;
use otpgate::gateway::headers::{append_forwarded_for, set_identity};
use otpgate::gateway::router::Router;
use otpgate::keys::KeyAlgorithm;
use otpgate::revocation::Revocations;
use otpgate::store::RevokedSession;
use otpgate::store::User;
use pingora::http::RequestHeader;

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Claims {
    let t = now();
    Claims {
        sub: "12345".into(),
        mobile: "+15550001111".into(),
        iat: t,
        nbf: t,
        exp: t + 3600,
        iss: "otpgate".into(),
        aud: "otpgate".into(),
        jti: "0123456789abcdef0123456789abcdef".into(),
        sid: "0123456789abcdef0123456789abcdef".into(),
    }
}

fn jwt_config() -> JwtConfig {
    JwtConfig {
        secret: Secret::new(SECRET),
        issuer: "otpgate".into(),
        audience: "otpgate".into(),
        ttl: Duration::from_secs(3600),
        leeway: Duration::from_secs(30),
        signing: otpgate::config::Signing::Hmac,
    }
}

fn token_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_verify");
    // otpgate's own verifier (HS256, all claims checked).
    let tokens = Arc::new(Tokens::new(&jwt_config()).unwrap());
    let user = User {
        id: 12345,
        mobile: "+15550001111".into(),
        first_name: "A".into(),
        last_name: "B".into(),
        email: "a@b.co".into(),
        verified: true,
        created_at: 0,
    };
    let token = tokens
        .issue(&user, "0123456789abcdef0123456789abcdef", now())
        .token;
    group.bench_function("otpgate_hs256", |b| {
        b.iter(|| tokens.verify(black_box(&token)).unwrap())
    });
    // The proxy path's access check: a cache hit after the first verification.
    // With revocations in force (for other sessions): the lookup a real
    // deployment pays on every request.
    let revocations = Arc::new(Revocations::new(FeedLoss::Open));
    let revoked: Vec<RevokedSession> = (0..1000)
        .map(|i| RevokedSession {
            session_id: format!("{i:032x}"),
            until: now() + 3600,
        })
        .collect();
    revocations.insert(&revoked);
    let access = AccessCheck::new(Arc::clone(&tokens), revocations);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    group.bench_function("otpgate_hs256_cached", |b| {
        b.iter(|| {
            access
                .check(black_box(&headers), Requirement::Required)
                .unwrap()
        })
    });

    // otpgate's verifier with configured keys (kid lookup, algorithm pinned).
    let keys = env!("CARGO_MANIFEST_DIR").to_owned() + "/benches/keys/";
    for (algorithm, file) in [
        (KeyAlgorithm::Rs256, "rsa.pem"),
        (KeyAlgorithm::Es256, "ec.pem"),
        (KeyAlgorithm::EdDsa, "ed.pem"),
    ] {
        let material =
            otpgate::keys::load(Path::new(&(keys.clone() + file)), true, algorithm).unwrap();
        let config = JwtConfig {
            signing: Signing::Keys {
                algorithm,
                keys: vec![SigningKey {
                    kid: "k".into(),
                    material,
                }],
            },
            ..jwt_config()
        };
        let tokens = Tokens::new(&config).unwrap();
        let token = tokens
            .issue(&user, "0123456789abcdef0123456789abcdef", now())
            .token;
        group.bench_function(BenchmarkId::new("otpgate", algorithm.as_str()), |b| {
            b.iter(|| tokens.verify(black_box(&token)).unwrap())
        });
    }

    // The same checks through jsonwebtoken directly, per algorithm.
    let read = |name: &str| std::fs::read(keys.clone() + name).unwrap();
    let cases: Vec<(Algorithm, EncodingKey, DecodingKey)> = vec![
        (
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET.as_bytes()),
            DecodingKey::from_secret(SECRET.as_bytes()),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap(),
            DecodingKey::from_rsa_pem(&read("rsa.pub.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&read("ec.pem")).unwrap(),
            DecodingKey::from_ec_pem(&read("ec.pub.pem")).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&read("ed.pem")).unwrap(),
            DecodingKey::from_ed_pem(&read("ed.pub.pem")).unwrap(),
        ),
    ];
    for (alg, encoding, decoding) in cases {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(), &encoding).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&["otpgate"]);
        validation.set_audience(&["otpgate"]);
        group.bench_function(BenchmarkId::new("jsonwebtoken", format!("{alg:?}")), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Claims>(black_box(&token), &decoding, &validation).unwrap()
            })
        });
    }
    group.finish();
}

fn route_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for count in [10usize, 1000] {
        // Varied prefixes and depths, a tenth of them bound to a host, plus
        // the route the probe hits: the same request against both tables.
        let router = Router::new(
            (0..count - 1)
                .map(|i| {
                    let host = (i % 10 == 0).then(|| format!("tenant{i}.example.com"));
                    let prefix = match i % 3 {
                        0 => format!("/svc{i}/"),
                        1 => format!("/api/v{}/svc{i}/", i % 7),
                        _ => format!("/static/{i}"),
                    };
                    (host, prefix, i)
                })
                .chain([(None, "/api/v1/orders/".to_owned(), usize::MAX)]),
        );
        let path = "/api/v1/orders/42?page=2";
        assert_eq!(
            router.find(Some("www.example.com"), path),
            Some(&usize::MAX)
        );
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| router.find(black_box(Some("www.example.com")), black_box(path)))
        });
    }
    group.finish();
}

fn header_rewriting(c: &mut Criterion) {
    let names = IdentityHeaderNames {
        user_id: http::HeaderName::from_static("x-user-id"),
        mobile: http::HeaderName::from_static("x-user-mobile"),
    };
    let ids = RequestIds::default();
    let principal = Principal {
        user_id: 12345,
        session_id: "s1".into(),
        user_id_header: http::HeaderValue::from_static("12345"),
        mobile_header: http::HeaderValue::from_static("+15550001111"),
    };
    let mut request = RequestHeader::build("GET", b"/api/orders?page=2", Some(8)).unwrap();
    request
        .insert_header("host", "gateway.example.com")
        .unwrap();
    request.insert_header("user-agent", "bench/1.0").unwrap();
    request.insert_header("accept", "application/json").unwrap();
    request.insert_header("X-User-Id", "999").unwrap();
    request
        .append_header("x-user-mobile", "+19999999999")
        .unwrap();
    let client: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    c.bench_function("header_rewrite", |b| {
        b.iter_batched(
            || request.clone(),
            |mut request| {
                set_identity(&mut request, &names, Some(&principal)).unwrap();
                let id = ids.for_request(&request.headers);
                request.insert_header("x-request-id", id).unwrap();
                append_forwarded_for(&mut request, client).unwrap();
                request
            },
            BatchSize::SmallInput,
        )
    });
}

fn path_normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("path_normalise");
    for (name, path) in [
        ("normal", "/api/v1/orders/42"),
        ("dot_segments", "/public/../api/v1/./orders//42"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| otpgate::path::normalize(black_box(path)))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    token_verification,
    path_normalisation,
    route_matching,
    header_rewriting
);
criterion_main!(benches);
