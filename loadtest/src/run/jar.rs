//! One simulated user's cookies: what `Set-Cookie` stored, sent back in
//! `Cookie`. Domain, path and expiry are ignored except `Max-Age=0`, which
//! deletes: every request of a run goes to one origin.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue, header};

/// A cookie jar keyed by cookie name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
}

// === impl Jar ===

impl Jar {
    /// Stores the `name=value` pair of every `Set-Cookie` in `headers`.
    pub fn store(&mut self, headers: &HeaderMap) {
        for set in headers.get_all(header::SET_COOKIE) {
            let Ok(set) = set.to_str() else { continue };
            let mut attributes = set.split(';');
            let Some((name, value)) = attributes.next().and_then(|pair| pair.split_once('='))
            else {
                continue;
            };
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let expired = attributes.any(|a| {
                a.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
                })
            });
            if expired {
                self.cookies.remove(name);
            } else {
                self.cookies
                    .insert(name.to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The `Cookie` header to send, if the jar holds anything.
    pub fn header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let joined = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&joined).ok()
    }

    /// The value stored for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn stores_and_sends_back() {
        let mut jar = Jar::default();
        assert_eq!(jar.header(), None);
        jar.store(&set(&[
            "weir-web=abc123; Path=/; Max-Age=86400; HttpOnly",
            "b=2",
        ]));
        assert_eq!(jar.get("weir-web"), Some("abc123"));
        assert_eq!(jar.header().unwrap(), "b=2; weir-web=abc123");
        jar.store(&set(&["weir-web=def"]));
        assert_eq!(jar.get("weir-web"), Some("def"));
    }

    #[test]
    fn max_age_zero_deletes_and_garbage_is_ignored() {
        let mut jar = Jar::default();
        jar.store(&set(&["a=1", "b=2"]));
        jar.store(&set(&["a=; Max-Age=0", "garbage", "=nameless"]));
        assert_eq!(jar.get("a"), None);
        assert_eq!(jar.header().unwrap(), "b=2");
    }
}
