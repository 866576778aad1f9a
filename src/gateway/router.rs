//! Longest-prefix routing with optional host match. Lookups walk a byte trie
//! once per table, so their cost follows the path length, not the number of
//! routes.

use std::borrow::Cow;
use std::collections::HashMap;

/// A byte trie of prefixes; each node may end a prefix (an index into values).
#[derive(Debug)]
struct PrefixTrie {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// Sorted by byte for binary search.
    edges: Vec<(u8, u32)>,
    value: Option<u32>,
}

impl Default for PrefixTrie {
    /// Just the root node.
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &[u8], value: u32) {
        let mut at = 0usize;
        for &byte in prefix {
            let edges = &self.nodes[at].edges;
            at = match edges.binary_search_by_key(&byte, |(b, _)| *b) {
                Ok(i) => edges[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].edges.insert(i, (byte, next as u32));
                    next
                }
            };
        }
        self.nodes[at].value = Some(value);
    }

    /// The longest inserted prefix of `path`: (its length, its value).
    fn longest(&self, path: &[u8]) -> Option<(usize, u32)> {
        let mut best = self.nodes[0].value.map(|v| (0, v));
        let mut at = 0usize;
        for (depth, &byte) in path.iter().enumerate() {
            let edges = &self.nodes[at].edges;
            match edges.binary_search_by_key(&byte, |(b, _)| *b) {
                Ok(i) => at = edges[i].1 as usize,
                Err(_) => break,
            }
            if let Some(value) = self.nodes[at].value {
                best = Some((depth + 1, value));
            }
        }
        best
    }
}

/// Routes by (optional host, prefix). A longer prefix wins; at equal length a
/// route naming the host wins over one for any host.
#[derive(Debug)]
pub struct Router<T> {
    values: Vec<T>,
    any_host: PrefixTrie,
    by_host: HashMap<String, PrefixTrie>,
}

impl<T> Router<T> {
    /// `host` must be lower case without port (config validation sees to it).
    pub fn new(entries: impl IntoIterator<Item = (Option<String>, String, T)>) -> Self {
        let mut router = Self {
            values: Vec::new(),
            any_host: PrefixTrie::default(),
            by_host: HashMap::new(),
        };
        for (host, prefix, value) in entries {
            let index = router.values.len() as u32;
            router.values.push(value);
            let trie = match host {
                Some(host) => router.by_host.entry(host).or_default(),
                None => &mut router.any_host,
            };
            trie.insert(prefix.as_bytes(), index);
        }
        router
    }

    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// `host` as the client sent it (any case, maybe with a port).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&T> {
        let path = path.as_bytes();
        let general = self.any_host.longest(path);
        let specific = if self.by_host.is_empty() {
            None
        } else {
            host.map(normalize_host)
                .and_then(|h| self.by_host.get(h.as_ref()))
                .and_then(|trie| trie.longest(path))
        };
        let (_, index) = match (specific, general) {
            (Some(s), Some(g)) if g.0 > s.0 => g,
            (Some(s), _) => s,
            (None, g) => g?,
        };
        Some(&self.values[index as usize])
    }
}

/// Lower case, without `:port` (and without brackets' port for IPv6) and
/// without one trailing dot: `Admin.Example.com.:8080` is `admin.example.com`,
/// as the upstream's own virtual hosting reads it.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            (None, "/".to_owned(), "root"),
            (None, "/api/".to_owned(), "api"),
            (None, "/api/v2/".to_owned(), "api-v2"),
            (None, "/apix".to_owned(), "apix"),
            (
                Some("admin.example.com".to_owned()),
                "/api/".to_owned(),
                "admin-api",
            ),
            (
                Some("admin.example.com".to_owned()),
                "/a".to_owned(),
                "admin-a",
            ),
        ])
    }

    #[test]
    fn the_longest_prefix_wins() {
        let r = router();
        assert_eq!(r.find(None, "/api/v2/users"), Some(&"api-v2"));
        assert_eq!(r.find(None, "/api/v1/users"), Some(&"api"));
        assert_eq!(r.find(None, "/api/"), Some(&"api"));
        assert_eq!(r.find(None, "/api"), Some(&"root"));
        assert_eq!(r.find(None, "/apixel"), Some(&"apix"));
        assert_eq!(r.find(None, "/other"), Some(&"root"));
    }

    #[test]
    fn host_routes_win_at_equal_or_longer_prefix() {
        let r = router();
        assert_eq!(
            r.find(Some("Admin.Example.com:8080"), "/api/x"),
            Some(&"admin-api")
        );
        assert_eq!(
            r.find(Some("admin.example.com"), "/api/v2/x"),
            Some(&"api-v2")
        );
        assert_eq!(
            r.find(Some("admin.example.com"), "/about"),
            Some(&"admin-a")
        );
        assert_eq!(r.find(Some("other.example.com"), "/api/x"), Some(&"api"));
        assert_eq!(
            r.find(Some("Admin.Example.com.:8080"), "/api/x"),
            Some(&"admin-api")
        );
        assert_eq!(
            r.find(Some("admin.example.com."), "/api/x"),
            Some(&"admin-api")
        );
        assert_eq!(r.find(Some("admin.example.com.."), "/api/x"), Some(&"api"));
        assert_eq!(r.find(Some("[::1]:80"), "/api/x"), Some(&"api"));
    }

    #[test]
    fn no_match_is_none() {
        let r = Router::new([(None, "/api/".to_owned(), 1)]);
        assert_eq!(r.find(None, "/"), None);
        assert_eq!(r.find(Some("x"), "/ap"), None);
        let empty: Router<u8> = Router::new([]);
        assert_eq!(empty.find(None, "/"), None);
    }

    #[test]
    fn a_thousand_routes_still_match_exactly() {
        let r = Router::new((0..1000).map(|i| (None, format!("/svc{i}/"), i)));
        for i in (0..1000).step_by(37) {
            assert_eq!(r.find(None, &format!("/svc{i}/items/1")), Some(&i));
        }
        assert_eq!(r.find(None, "/svc1000/"), None);
    }
}
