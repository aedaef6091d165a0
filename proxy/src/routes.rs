//! Route matching: the host picks a group of routes (exact name, then the
//! longest `*.suffix`, then routes for any host); within a group the longest
//! matching path prefix wins. A group with no matching prefix falls through to
//! the next, less specific one, so a catch-all route still serves a known host.
//!
//! A Gateway API rule may match its path exactly: an exact path beats a
//! prefix of the same length. Entries of equal path length keep the order
//! they were given (routes of the file, then CanaryRoutes, then Gateway API
//! rules in their precedence order), and a caller may refuse an entry (a
//! method or header condition not met) so that the next one is tried.

use std::collections::HashMap;

use weir_config::HostMatch;

/// Route indices by host, each list ordered by path prefix, longest first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Keyed by the lowercase name's bytes: a host is looked up as it
    /// came, unconverted.
    exact: HashMap<Box<[u8]>, Vec<Entry>>,
    /// Ordered by suffix length, longest first.
    suffixes: Vec<(Box<[u8]>, Vec<Entry>)>,
    any_host: Vec<Entry>,
}

/// How closely a table's host matcher named a host: an exact name beats
/// a longer `*.suffix`, which beats a shorter one, which beats a route for
/// any host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostRank {
    /// A route for any host.
    AnyHost,
    /// A `*.suffix` of this length.
    Suffix(usize),
    /// The exact name.
    Exact,
}

#[derive(Debug, Clone)]
struct Entry {
    prefix: Box<str>,
    /// The path must equal `prefix`.
    exact: bool,
    index: usize,
}

// === impl RouteTable ===

impl RouteTable {
    /// Builds a table from each route's host matchers and path prefix, indexed
    /// by position in `routes`.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a [HostMatch], &'a str)>) -> RouteTable {
        RouteTable::with_exact(
            routes
                .into_iter()
                .map(|(hosts, prefix)| (hosts, prefix, false)),
        )
    }

    /// Builds a table from each route's host matchers, path and whether the
    /// path must match exactly, indexed by position in `routes`.
    pub fn with_exact<'a>(
        routes: impl IntoIterator<Item = (&'a [HostMatch], &'a str, bool)>,
    ) -> RouteTable {
        RouteTable::indexed(
            routes
                .into_iter()
                .enumerate()
                .map(|(index, (hosts, prefix, exact))| (index, hosts, prefix, exact)),
        )
    }

    /// Builds a table of host names only (entries without hosts are left
    /// out), each with the index it answers: the preview hosts of
    /// blue-green routes, which find their route by index.
    pub fn for_hosts<'a>(
        routes: impl IntoIterator<Item = (usize, &'a [HostMatch], &'a str)>,
    ) -> RouteTable {
        RouteTable::indexed(
            routes
                .into_iter()
                .filter(|(_, hosts, _)| !hosts.is_empty())
                .map(|(index, hosts, prefix)| (index, hosts, prefix, false)),
        )
    }

    /// True when the table has no entry at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.any_host.is_empty()
    }

    fn indexed<'a>(
        routes: impl IntoIterator<Item = (usize, &'a [HostMatch], &'a str, bool)>,
    ) -> RouteTable {
        let mut table = RouteTable::default();
        for (index, hosts, prefix, exact) in routes {
            let entry = Entry {
                prefix: prefix.into(),
                exact,
                index,
            };
            if hosts.is_empty() {
                table.any_host.push(entry);
                continue;
            }
            for host in hosts {
                match host {
                    HostMatch::Exact(name) => table
                        .exact
                        .entry(name.as_bytes().into())
                        .or_default()
                        .push(entry.clone()),
                    HostMatch::Suffix(suffix) => {
                        match table
                            .suffixes
                            .iter_mut()
                            .find(|(s, _)| **s == *suffix.as_bytes())
                        {
                            Some((_, entries)) => entries.push(entry.clone()),
                            None => table
                                .suffixes
                                .push((suffix.as_bytes().into(), vec![entry.clone()])),
                        }
                    }
                }
            }
        }
        let by_prefix_len = |entries: &mut Vec<Entry>| {
            entries.sort_by_key(|e| (std::cmp::Reverse(e.prefix.len()), !e.exact));
        };
        table.exact.values_mut().for_each(by_prefix_len);
        table
            .suffixes
            .iter_mut()
            .for_each(|(_, entries)| by_prefix_len(entries));
        table
            .suffixes
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        by_prefix_len(&mut table.any_host);
        table
    }

    /// The index of the route serving `host` (any case, port and trailing dot
    /// allowed) and `path`, if any.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        self.find_where(host, path, |_| true)
    }

    /// As [`RouteTable::find`], skipping the routes `accepts` refuses (by
    /// index): a Gateway API rule whose method or headers do not match.
    pub fn find_where(
        &self,
        host: &str,
        path: &str,
        accepts: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        self.find_ranked(host.as_bytes(), path, accepts)
            .map(|(index, _)| index)
    }

    /// As [`RouteTable::find_where`], with how closely the host matcher
    /// that found the route named the host; `host` as its bytes came.
    pub fn find_ranked(
        &self,
        host: &[u8],
        path: &str,
        accepts: impl Fn(usize) -> bool,
    ) -> Option<(usize, HostRank)> {
        let bracketed = host.starts_with(b"[");
        let host = normalize_host(host);
        let rewritten;
        // An IPv6 literal is matched in its canonical text, as the
        // config's are kept; a name in lower case.
        let host = if bracketed
            && let Ok(Ok(v6)) = std::str::from_utf8(host).map(str::parse::<std::net::Ipv6Addr>)
        {
            rewritten = v6.to_string().into_bytes();
            rewritten.as_slice()
        } else if host.iter().any(u8::is_ascii_uppercase) {
            rewritten = host.to_ascii_lowercase();
            rewritten.as_slice()
        } else {
            host
        };
        if let Some(index) = self
            .exact
            .get(host)
            .and_then(|entries| longest_prefix(entries, path, &accepts))
        {
            return Some((index, HostRank::Exact));
        }
        for (suffix, entries) in &self.suffixes {
            // `*.example.com` matches `a.example.com`, not `example.com` itself.
            if host.len() > suffix.len() && host.ends_with(suffix) {
                if let Some(index) = longest_prefix(entries, path, &accepts) {
                    return Some((index, HostRank::Suffix(suffix.len())));
                }
            }
        }
        longest_prefix(&self.any_host, path, &accepts).map(|index| (index, HostRank::AnyHost))
    }
}

fn longest_prefix(
    entries: &[Entry],
    path: &str,
    accepts: &impl Fn(usize) -> bool,
) -> Option<usize> {
    entries
        .iter()
        .find(|e| {
            let path_matches = if e.exact {
                path == &*e.prefix
            } else {
                path_has_prefix(path, &e.prefix)
            };
            path_matches && accepts(e.index)
        })
        .map(|e| e.index)
}

/// True when `prefix` matches `path` on a segment boundary: `/api` matches
/// `/api`, `/api/` and `/api/v1`, but not `/apix`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Strips the port and a trailing dot from a Host value.
fn normalize_host(host: &[u8]) -> &[u8] {
    let without_port = if let Some(v6) = host.strip_prefix(b"[") {
        // `[::1]:8080` -> `::1`
        v6.split(|&b| b == b']').next().unwrap_or(v6)
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    without_port.strip_suffix(b".").unwrap_or(without_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(name: &str) -> HostMatch {
        HostMatch::Exact(name.to_owned())
    }
    fn suffix(name: &str) -> HostMatch {
        HostMatch::Suffix(name.to_owned())
    }

    fn table() -> RouteTable {
        let routes: Vec<(Vec<HostMatch>, &str)> = vec![
            (vec![], "/"),                              // 0
            (vec![], "/api"),                           // 1
            (vec![exact("shop.example.com")], "/"),     // 2
            (vec![exact("shop.example.com")], "/cart"), // 3
            (vec![suffix(".example.com")], "/static"),  // 4
            (vec![suffix(".eu.example.com")], "/"),     // 5
            (vec![exact("api.example.com")], "/v2"),    // 6
            (vec![exact("2001:db8::1")], "/"),          // 7
        ];
        RouteTable::new(routes.iter().map(|(h, p)| (h.as_slice(), *p)))
    }

    #[test]
    fn matches_host_then_longest_prefix() {
        let t = table();
        let cases = [
            ("shop.example.com", "/", Some(2)),
            ("shop.example.com", "/cart/items", Some(3)),
            ("SHOP.Example.com:8443", "/cart", Some(3)),
            ("shop.example.com.", "/cartoon", Some(2)),
            ("img.example.com", "/static/a.png", Some(4)),
            ("x.eu.example.com", "/static/a.png", Some(5)),
            ("img.example.com", "/other", Some(0)),
            ("example.com", "/static", Some(0)),
            ("api.example.com", "/v2/users", Some(6)),
            ("api.example.com", "/api/users", Some(1)),
            ("unknown", "/apix", Some(0)),
            ("[::1]:80", "/api", Some(1)),
            // An IPv6 literal is matched in its canonical text.
            ("[2001:db8::1]", "/", Some(7)),
            ("[2001:DB8:0:0::1]:8080", "/", Some(7)),
            ("[2001:db8::2]", "/", Some(0)),
            ("[fe80::1%25eth0]", "/", Some(0)),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.find(host, path), want, "{host} {path}");
        }
    }

    #[test]
    fn no_catch_all_means_no_match() {
        let routes = [(vec![exact("a.test")], "/only")];
        let t = RouteTable::new(routes.iter().map(|(h, p)| (h.as_slice(), *p)));
        assert_eq!(t.find("a.test", "/only/x"), Some(0));
        assert_eq!(t.find("a.test", "/"), None);
        assert_eq!(t.find("b.test", "/only"), None);
    }

    #[test]
    fn an_exact_path_beats_a_prefix_and_a_refused_entry_falls_through() {
        let routes: Vec<(Vec<HostMatch>, &str, bool)> = vec![
            (vec![], "/", false),               // 0
            (vec![], "/api", false),            // 1
            (vec![], "/api", true),             // 2
            (vec![], "/api/v1", false),         // 3: refused below
            (vec![exact("a.test")], "/", true), // 4
        ];
        let t = RouteTable::with_exact(routes.iter().map(|(h, p, e)| (h.as_slice(), *p, *e)));
        let accepts = |index: usize| index != 3;
        let cases = [
            ("x.test", "/api", Some(2)),
            ("x.test", "/api/", Some(1)),
            ("x.test", "/api/v1/users", Some(1)),
            ("a.test", "/", Some(4)),
            ("a.test", "/other", Some(0)),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.find_where(host, path, accepts), want, "{host} {path}");
        }
        assert_eq!(t.find("x.test", "/api/v1/users"), Some(3));
    }

    #[test]
    fn a_host_table_answers_the_given_indices_and_never_any_host() {
        let routes: Vec<(usize, Vec<HostMatch>, &str)> = vec![
            (0, vec![], "/"),
            (2, vec![exact("preview.shop.test")], "/"),
            (5, vec![suffix(".pr.test")], "/api"),
        ];
        let t = RouteTable::for_hosts(routes.iter().map(|(i, h, p)| (*i, h.as_slice(), *p)));
        assert!(!t.is_empty());
        assert_eq!(t.find("preview.shop.test", "/x"), Some(2));
        assert_eq!(t.find("a.pr.test", "/api/v1"), Some(5));
        assert_eq!(t.find("a.pr.test", "/other"), None);
        assert_eq!(t.find("shop.test", "/"), None);
        assert!(RouteTable::for_hosts(std::iter::empty()).is_empty());
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        assert!(path_has_prefix("/api", "/api"));
        assert!(path_has_prefix("/api/v1", "/api"));
        assert!(path_has_prefix("/api/v1", "/api/"));
        assert!(!path_has_prefix("/apix", "/api"));
        assert!(path_has_prefix("/anything", "/"));
    }
}
