//! Request-path normalisation: the route is chosen on, and the upstream receives, this one
//! normalised path, so the gateway and the upstream can never disagree about what was asked for.

use std::borrow::Cow;

/// Why a request path is refused (answered 400 `invalid_path`). Display gives a short human
/// reason, never echoing the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidPath {
    /// The path does not start with '/' (e.g. "*" or "abc").
    NotAbsolute,
    /// `%2F` or `%5C` (any case): an encoded slash or backslash.
    EncodedSeparator,
    /// A raw `\`.
    Backslash,
    /// A raw `;` or an encoded `%3B` (path parameters).
    Semicolon,
    /// A NUL, another control character below 0x20, or DEL (raw or encoded).
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `..` segment that would climb above the root.
    AboveRoot,
}

impl std::fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "path does not start with '/'",
            Self::EncodedSeparator => "path contains an encoded slash or backslash",
            Self::Backslash => "path contains a backslash",
            Self::Semicolon => "path contains a semicolon",
            Self::ControlCharacter => "path contains a control character",
            Self::BadEscape => "path contains a malformed percent escape",
            Self::AboveRoot => "path climbs above the root",
        })
    }
}

impl std::error::Error for InvalidPath {}

/// The normalised form of `path` (the path component only, no query), borrowed when `path` is
/// already normal.
///
/// # Errors
///
/// An [`InvalidPath`] saying why the path is refused (answered 400 `invalid_path`, never
/// forwarded). Byte and escape errors are reported for the first offending position, left to
/// right; a `..` above the root is only reported for a path whose bytes and escapes are all
/// acceptable.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    let bytes = path.as_bytes();
    match bytes.first() {
        None => return Ok(Cow::Borrowed("/")),
        Some(b'/') => {}
        Some(_) => return Err(InvalidPath::NotAbsolute),
    }
    // One scan: validate, and stop at the first thing that needs rewriting.
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                if needs_merge_or_dot_removal(&bytes[i + 1..]) {
                    return rewrite(path).map(Cow::Owned);
                }
            }
            b'%' => {
                let (byte, canonical) = escape(bytes, i)?;
                if !canonical || is_unreserved(byte) {
                    return rewrite(path).map(Cow::Owned);
                }
                i += 3;
                continue;
            }
            b => check_raw(b)?,
        }
        i += 1;
    }
    Ok(Cow::Borrowed(path))
}

/// Whether the text after a '/' starts with another '/' or is a "." or ".." segment.
fn needs_merge_or_dot_removal(rest: &[u8]) -> bool {
    matches!(
        rest,
        [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
    )
}

/// Refuses the raw bytes that are never allowed in a path.
const fn check_raw(b: u8) -> Result<(), InvalidPath> {
    match b {
        b'\\' => Err(InvalidPath::Backslash),
        b';' => Err(InvalidPath::Semicolon),
        0x00..=0x1F | 0x7F => Err(InvalidPath::ControlCharacter),
        _ => Ok(()),
    }
}

/// The byte encoded by the escape at `bytes[i]` (a '%'), and whether its hex digits are already
/// upper case; refuses malformed escapes and the encoded bytes that are never allowed.
fn escape(bytes: &[u8], i: usize) -> Result<(u8, bool), InvalidPath> {
    let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
        return Err(InvalidPath::BadEscape);
    };
    let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
        return Err(InvalidPath::BadEscape);
    };
    match (h << 4) | l {
        0x2F | 0x5C => Err(InvalidPath::EncodedSeparator),
        0x3B => Err(InvalidPath::Semicolon),
        0x00..=0x1F | 0x7F => Err(InvalidPath::ControlCharacter),
        byte => Ok((byte, !hi.is_ascii_lowercase() && !lo.is_ascii_lowercase())),
    }
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 section 2.3 unreserved characters.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The slow path: decode, merge slashes, remove dot-segments.
fn rewrite(path: &str) -> Result<String, InvalidPath> {
    remove_dot_segments(&decode(path)?)
}

/// Decodes escapes of unreserved characters and upper-cases the hex digits of all others,
/// refusing forbidden raw bytes and escapes.
fn decode(path: &str) -> Result<String, InvalidPath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            check_raw(bytes[i])?;
            i += 1;
            continue;
        }
        let (byte, _) = escape(bytes, i)?;
        out.push_str(&path[copied..i]);
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
        }
        i += 3;
        copied = i;
    }
    out.push_str(&path[copied..]);
    Ok(out)
}

/// Merges repeated slashes and removes "." and ".." segments (RFC 3986 section 5.2.4), refusing
/// a ".." above the root. `path` starts with '/'.
fn remove_dot_segments(path: &str) -> Result<String, InvalidPath> {
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => match out.rfind('/') {
                Some(parent) => out.truncate(parent),
                None => return Err(InvalidPath::AboveRoot),
            },
            _ => {
                out.push('/');
                out.push_str(segment);
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::InvalidPath::*;
    use super::*;

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in [
            "/",
            "/api",
            "/api/",
            "/api/secret",
            "/a/.b",
            "/a/..b",
            "/a/b.",
            "/...",
            "/a/.../b",
            "/%20space",
            "/%C0%AE",
            "/%252e%252e/api",
            "/caf\u{e9}/\u{1F600}",
            "/a-b_c~d.e",
            "/x?not-a-query",
            "/a:b@c!$&'()*+,=",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p:?}"
            );
        }
        assert!(matches!(normalize(""), Ok(Cow::Borrowed("/"))));
    }

    #[test]
    fn normal_forms() {
        for (p, want) in [
            ("//", "/"),
            ("/a//", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../", "/a/"),
            ("/a/.", "/a/"),
            ("/a/./", "/a/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/a/..", "/"),
            ("/a/b/../c", "/a/c"),
            ("/a/./b/./c", "/a/b/c"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/..//b", "/b"),
            ("/%7e%7Euser", "/~~user"),
            ("/%41%5A%30%39%2D%5F", "/AZ09-_"),
            ("/%3a%ff", "/%3A%FF"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/caf\u{e9}/./x", "/caf\u{e9}/x"),
        ] {
            let got = normalize(p);
            assert!(
                matches!(&got, Ok(Cow::Owned(s)) if s == want),
                "{p:?} -> {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn attack_paths() {
        let cases: &[(&str, Result<&str, InvalidPath>)] = &[
            // Envoy CVE-2019-9901: routes matched on the raw path, dot-segments unresolved.
            ("/public/../api/secret", Ok("/api/secret")),
            ("/public/./../api", Ok("/api")),
            ("/./api", Ok("/api")),
            ("/api/./secret", Ok("/api/secret")),
            // Envoy CVE-2019-9900: embedded NUL, raw and encoded.
            ("/api\0/secret", Err(ControlCharacter)),
            ("/api%00/secret", Err(ControlCharacter)),
            // Envoy CVE-2021-29492: escaped slashes, routed differently by gateway and upstream.
            ("/api%2fsecret", Err(EncodedSeparator)),
            ("/api%2Fsecret", Err(EncodedSeparator)),
            ("/public%2F..%2Fapi", Err(EncodedSeparator)),
            // Envoy merge_slashes: "//api" must route as "/api".
            ("//api", Ok("/api")),
            ("//api//secret", Ok("/api/secret")),
            ("/public//../api", Ok("/api")),
            // nginx off-by-slash alias traversal and `..` climbing above the root.
            ("/static../secret", Ok("/static../secret")),
            ("/static/../../etc/passwd", Err(AboveRoot)),
            ("/..", Err(AboveRoot)),
            ("/../", Err(AboveRoot)),
            ("/a/../../b", Err(AboveRoot)),
            ("//..//etc", Err(AboveRoot)),
            // nginx / generic traversal with encoded dots.
            ("/%2e%2e/etc/passwd", Err(AboveRoot)),
            ("/public/%2e%2e/api/secret", Ok("/api/secret")),
            ("/%2e/api", Ok("/api")),
            // Mixed-case and half-encoded double dots.
            ("/public/%2E%2e/api", Ok("/api")),
            ("/public/.%2e/api", Ok("/api")),
            ("/public/%2e./api", Ok("/api")),
            ("/public/%2E", Ok("/public/")),
            // Spring Security CVE-2016-5007: `;` path parameters hide the real path.
            ("/admin;/x", Err(Semicolon)),
            ("/api;jsessionid=1", Err(Semicolon)),
            ("/admin%3b/x", Err(Semicolon)),
            ("/admin%3B/x", Err(Semicolon)),
            // Spring Security CVE-2022-22978: `%0a` / `%0d` bypass regex matchers.
            ("/admin%0a", Err(ControlCharacter)),
            ("/admin%0D%0Ax", Err(ControlCharacter)),
            ("/admin\n", Err(ControlCharacter)),
            ("/admin\r", Err(ControlCharacter)),
            ("/admin\t", Err(ControlCharacter)),
            ("/admin%7f", Err(ControlCharacter)),
            ("/admin\x7f", Err(ControlCharacter)),
            // CVE-2020-5398-style: `;` and CR/LF smuggled through a path into later parsing.
            ("/download/x.bat;x.txt", Err(Semicolon)),
            ("/download/x%22%3B.bat", Err(Semicolon)),
            ("/download/x%0d%0aContent-Type:%20x", Err(ControlCharacter)),
            // Node.js / WHATWG URL: `\` is treated as `/` by some parsers.
            ("/public\\..\\api", Err(Backslash)),
            ("\\api", Err(NotAbsolute)),
            ("/api%5csecret", Err(EncodedSeparator)),
            ("/api%5Csecret", Err(EncodedSeparator)),
            // Overlong UTF-8 dot (%c0%ae): kept encoded, hex upper-cased, never a dot-segment.
            ("/%c0%ae%c0%ae/api", Ok("/%C0%AE%C0%AE/api")),
            ("/api/%c0%ae", Ok("/api/%C0%AE")),
            // Encoded unreserved characters hide a protected prefix.
            ("/%61pi/secret", Ok("/api/secret")),
            ("/%41PI", Ok("/API")),
            // Double encoding is decoded once only: `%25` stays, so no second `..`.
            ("/%252e%252e/api", Ok("/%252e%252e/api")),
            ("/%252f", Ok("/%252f")),
            // Malformed escapes.
            ("/api%", Err(BadEscape)),
            ("/api%2", Err(BadEscape)),
            ("/%g1", Err(BadEscape)),
            ("/%1g", Err(BadEscape)),
            ("/%%32%66", Err(BadEscape)),
            ("/%\u{e9}", Err(BadEscape)),
            // Not origin-form.
            ("*", Err(NotAbsolute)),
            ("abc", Err(NotAbsolute)),
            ("http://host/api", Err(NotAbsolute)),
            // Byte errors win over climbing, whatever their order.
            ("/../%2f", Err(EncodedSeparator)),
            ("/..;/api", Err(Semicolon)),
        ];
        for &(p, want) in cases {
            let got = normalize(p);
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{p:?}");
        }
    }

    #[test]
    fn display_never_echoes_the_path() {
        let secret = "/s3cr3t;x";
        let e = normalize(secret).unwrap_err();
        assert_eq!(e, Semicolon);
        assert!(!e.to_string().contains("s3cr3t"));
        assert_eq!(AboveRoot.to_string(), "path climbs above the root");
    }

    #[test]
    fn outputs_are_normal_and_idempotent() {
        const ALPHABET: &[u8] = b"/.a%2eEfF5c;\\";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        // xorshift64, reduced to a small index from its top byte.
        let mut below = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::from(state.to_be_bytes()[0]) % n
        };
        let mut accepted = 0;
        for _ in 0..5000 {
            let len = below(16);
            let mut s = String::with_capacity(len + 1);
            if below(4) != 0 {
                s.push('/');
            }
            for _ in 0..len {
                s.push(char::from(ALPHABET[below(ALPHABET.len())]));
            }
            let Ok(out) = normalize(&s) else { continue };
            accepted += 1;
            assert!(out.starts_with('/'), "{s:?} -> {out:?}");
            assert!(!out.contains("//"), "{s:?} -> {out:?}");
            assert!(
                !out.contains("/./") && !out.contains("/../"),
                "{s:?} -> {out:?}"
            );
            assert!(
                !out.ends_with("/.") && !out.ends_with("/.."),
                "{s:?} -> {out:?}"
            );
            assert!(
                matches!(normalize(&out), Ok(Cow::Borrowed(again)) if again == out),
                "not idempotent: {s:?} -> {out:?}"
            );
        }
        assert!(accepted > 500, "only {accepted} accepted");
    }
}
