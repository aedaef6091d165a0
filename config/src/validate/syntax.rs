//! Lexical checks of single values: names, host names, addresses, tokens.
//! Each returns the converted value or a message saying what is wrong and
//! what would be right.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::HostMatch;
use crate::model::EndpointAddr;

/// Longest route name: a DNS label, so it fits URLs, labels and file names.
const MAX_ROUTE_NAME: usize = 63;

/// Characters allowed in an RFC 7230 token (header names, cookie names)
/// besides ASCII letters and digits.
const TOKEN_PUNCTUATION: &str = "!#$%&'*+-.^_`|~";

/// A route name: `[a-z0-9-]+`, at most 63 characters, no `-` at either end.
pub(super) fn route_name(name: &str) -> Result<(), String> {
    const RULE: &str = "use lowercase letters, digits and `-`";
    if name.is_empty() {
        return Err(format!("a route needs a name; {RULE}, e.g. `checkout`"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "route name `{}` contains {}; {RULE} (the name is used in URLs and metric labels), e.g. `{}`",
            name.escape_debug(),
            describe_char(c),
            suggested_route_name(name)
        ));
    }
    if name.len() > MAX_ROUTE_NAME {
        return Err(format!(
            "route name `{}…` has {} characters; the limit is {MAX_ROUTE_NAME}",
            &name[..MAX_ROUTE_NAME],
            name.len()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "route name `{name}` starts or ends with `-` (a command line would read it as an option); {RULE}, e.g. `{}`",
            suggested_route_name(name)
        ));
    }
    Ok(())
}

/// A valid route name close to `name`: lowercase ASCII letters and digits
/// kept, separators turned into `-`, anything else dropped; `checkout` when
/// nothing usable is left. Always passes [`route_name`].
fn suggested_route_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if matches!(c, '-' | '_' | '.' | ' ' | '/' | ':') && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(MAX_ROUTE_NAME).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "checkout".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A host a route matches: an exact name or `*.suffix`.
pub(super) fn host_match(text: &str) -> Result<HostMatch, String> {
    if text.is_empty() {
        return Err("empty host; write a name such as `shop.example.com` or `*.example.com`, or leave `hosts` out to match any host".to_owned());
    }
    if text == "*" {
        return Err(
            "`*` alone is not a host pattern; leave `hosts` out (or empty) to match any host"
                .to_owned(),
        );
    }
    // An IPv6 literal, with or without its brackets, as its canonical
    // text: a request's literal is matched in that form.
    let literal = text
        .strip_prefix('[')
        .and_then(|inside| inside.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(v6) = literal.parse::<Ipv6Addr>() {
        return Ok(HostMatch::Exact(v6.to_string()));
    }
    if text.contains(':') {
        return Err(format!(
            "host `{text}` has a port; write the host name alone (a route matches the host on every listener)"
        ));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(wildcard_misplaced(text));
        }
        let name = dns_name(suffix).map_err(|why| format!("host `{text}`: {why}"))?;
        return Ok(HostMatch::Suffix(format!(".{name}")));
    }
    if lower.contains('*') {
        return Err(wildcard_misplaced(text));
    }
    if lower.parse::<Ipv4Addr>().is_ok() {
        return Ok(HostMatch::Exact(lower));
    }
    let name = dns_name(&lower).map_err(|why| format!("host `{text}`: {why}"))?;
    Ok(HostMatch::Exact(name))
}

fn wildcard_misplaced(text: &str) -> String {
    format!("host `{text}`: `*` is only allowed as the whole first label, as in `*.example.com`")
}

/// A DNS host name, lowercased and without a trailing dot.
pub(super) fn dns_name(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!(
            "the name has {} characters; a DNS name has at most 253",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the name has an empty label (two dots in a row?)".to_owned());
        }
        if label.len() > 63 {
            return Err(format!(
                "label `{label}` has {} characters; a DNS label has at most 63",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "{} is not allowed in a host name; use letters, digits, `-` and `.`",
                describe_char(c)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    // A last label of digits only is a mistyped IPv4 address, not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{name}` is neither an IPv4 address nor a host name"
        ));
    }
    Ok(name.to_owned())
}

/// Splits `host:port` or `[v6]:port`; returns the host (without brackets),
/// whether it was bracketed, and the port text.
fn split_host_port(text: &str) -> Result<(&str, bool, &str), String> {
    if text.is_empty() {
        return Err("empty address; write `host:port`, e.g. `127.0.0.1:9001`".to_owned());
    }
    if text.contains("://") {
        return Err(format!(
            "`{text}` has a scheme; write only `host:port`, e.g. `127.0.0.1:9001`"
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` contains {}; write `host:port`, e.g. `127.0.0.1:9001`",
            describe_char(c)
        ));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "`{text}` opens `[` without closing it; write an IPv6 address as `[::1]:8080`"
            ));
        };
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, true, port)),
            None if after.is_empty() => {
                Err(format!("`{text}` has no port; write e.g. `{text}:8080`"))
            }
            None => Err(format!(
                "`{text}` has `{after}` after `]`; write an IPv6 address as `[::1]:8080`"
            )),
        };
    }
    match text.rsplit_once(':') {
        None if text.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "`{text}` is a port without an address; write e.g. `127.0.0.1:{text}`"
        )),
        None => Err(format!("`{text}` has no port; write e.g. `{text}:8080`")),
        Some((host, _)) if host.contains(':') => Err(format!(
            "`{text}`: write an IPv6 address in brackets followed by the port, e.g. `[::1]:8080`"
        )),
        Some((host, port)) => Ok((host, false, port)),
    }
}

/// A port number; 0 only when `allow_zero` (a listener's ephemeral port).
fn port(text: &str, allow_zero: bool) -> Result<u16, String> {
    let low = if allow_zero { 0 } else { 1 };
    match text.parse::<u16>() {
        Ok(p) if text.bytes().all(|b| b.is_ascii_digit()) && p >= low => Ok(p),
        _ => Err(format!("port `{text}` is not a number from {low} to 65535")),
    }
}

/// An address to bind: an IP literal and a port (0 picks a free port).
pub(super) fn bind_address(text: &str) -> Result<SocketAddr, String> {
    let (host, bracketed, port_text) =
        split_host_port(text).map_err(|why| match text.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("`{text}` has no port; write e.g. `[{text}]:8080`"),
            _ => why,
        })?;
    let ip = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) if bracketed => {
            return Err(format!(
                "`{text}`: brackets are only for IPv6; write `{host}:{port_text}`"
            ));
        }
        Ok(ip) => ip,
        Err(_) if dns_name(host).is_ok() => {
            return Err(format!(
                "`{text}` names a host; bind an IP address and port such as `127.0.0.1:{port_text}` (loopback) or `0.0.0.0:{port_text}` (every interface)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{host}` in `{text}` is not an IP address; write e.g. `0.0.0.0:8080` or `[::]:8080`"
            ));
        }
    };
    Ok(SocketAddr::new(ip, port(port_text, true)?))
}

/// An upstream endpoint: `host:port` or `[v6]:port`, port required and not 0.
pub(super) fn endpoint(text: &str) -> Result<EndpointAddr, String> {
    let (host, bracketed, port_text) = split_host_port(text)?;
    let host = if bracketed {
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{host}` in `{text}` is not an IPv6 address"))?
            .to_string()
    } else if host.parse::<Ipv4Addr>().is_ok() {
        host.to_owned()
    } else {
        dns_name(host).map_err(|why| format!("endpoint `{text}`: {why}"))?
    };
    let port = port(port_text, false).map_err(|why| format!("endpoint `{text}`: {why}"))?;
    Ok(EndpointAddr { host, port })
}

/// A path prefix: starts with `/`, no whitespace, control characters,
/// `?` or `#`, and no dot segment.
pub(super) fn path_prefix(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!(
            "pathPrefix `{text}` must start with `/`, e.g. `/{}`",
            text.trim_start_matches('/')
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(format!(
            "pathPrefix `{}` contains {}; write it percent-encoded as it appears in request URLs",
            text.escape_debug(),
            describe_char(c)
        ));
    }
    if let Some(c) = text.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "pathPrefix `{text}` contains `{c}`; a prefix matches the path only, without query or fragment"
        ));
    }
    if crate::path::has_dot_segment(text.as_bytes()) {
        return Err(format!(
            "pathPrefix `{text}` has a `.` or `..` segment (or `%2e`); weir refuses every \
             request whose path has one (400), so no request could reach this route: write \
             the path resolved"
        ));
    }
    Ok(())
}

/// An RFC 7230 token, as header names and RFC 6265 cookie names are.
pub(super) fn token(text: &str) -> Result<(), char> {
    match text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || TOKEN_PUNCTUATION.contains(*c)))
    {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// A cookie name (an RFC 6265 token).
pub(super) fn cookie_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the cookie name is empty; write e.g. `weir-checkout`".to_owned());
    }
    token(text).map_err(|c| {
        format!(
            "cookie name `{}` contains {}; use letters, digits and {TOKEN_PUNCTUATION}, e.g. `weir-checkout`",
            text.escape_debug(),
            describe_char(c)
        )
    })
}

/// A header name, lowercased.
pub(super) fn header_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the header name is empty; write e.g. `x-canary`".to_owned());
    }
    token(text).map_err(|c| {
        format!(
            "header name `{}` contains {}; use letters, digits and {TOKEN_PUNCTUATION}, e.g. `x-canary`",
            text.escape_debug(),
            describe_char(c)
        )
    })?;
    Ok(text.to_ascii_lowercase())
}

/// A header value to compare with: visible ASCII, inner spaces allowed.
pub(super) fn header_value(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the header value is empty; write e.g. `always`".to_owned());
    }
    if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
        return Err(format!(
            "header value `{text}` starts or ends with a space, which HTTP strips; remove it"
        ));
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "header value `{}` contains {}; use visible ASCII characters",
            text.escape_debug(),
            describe_char(c)
        ));
    }
    Ok(())
}

/// A bearer token: visible ASCII without spaces.
pub(super) fn bearer_token(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the token is empty; give a non-empty value or remove the key".to_owned());
    }
    if text.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(
            "the token contains a space, control or non-ASCII character; use visible ASCII characters only"
                .to_owned(),
        );
    }
    Ok(())
}

/// A character named for a message: `` `x` ``, or its escape when invisible.
fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_control() || c.is_whitespace() {
        format!("the character `{}`", c.escape_default())
    } else {
        format!("`{c}`")
    }
}

/// A Kubernetes DNS-1123 label (a namespace, a Service): at most 63
/// lowercase letters, digits and `-`, starting and ending with a letter or
/// digit.
pub(super) fn dns_label(text: &str) -> Result<(), String> {
    const RULE: &str = "a DNS-1123 label is lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters, e.g. `shop`";
    if text.is_empty() {
        return Err(format!("the name is empty; {RULE}"));
    }
    if text.len() > 63 {
        return Err(format!("it has {} characters; {RULE}", text.len()));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("it contains {}; {RULE}", describe_char(c)));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(format!("it starts or ends with `-`; {RULE}"));
    }
    Ok(())
}

/// A Kubernetes DNS-1123 subdomain (a Lease): at most 253 characters,
/// DNS-1123 labels joined by `.`.
pub(super) fn dns_subdomain(text: &str) -> Result<(), String> {
    const RULE: &str = "a DNS-1123 subdomain is lowercase letters, digits, `-` and `.`, each part starting and ending with a letter or digit, at most 253 characters, e.g. `weir-leader`";
    if text.is_empty() {
        return Err(format!("the name is empty; {RULE}"));
    }
    if text.len() > 253 {
        return Err(format!("it has {} characters; {RULE}", text.len()));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!("it contains {}; {RULE}", describe_char(c)));
    }
    let well_formed = text.split('.').all(|part| {
        !part.is_empty() && !part.starts_with('-') && !part.ends_with('-') && part.len() <= 63
    });
    if !well_formed {
        return Err(format!(
            "a part between dots is empty or starts or ends with `-`; {RULE}"
        ));
    }
    Ok(())
}

/// A port name (IANA service name, as Kubernetes checks it): at most 15
/// lowercase letters, digits and `-`, at least one letter, no `-` at
/// either end and no `--`.
pub(super) fn port_name(text: &str) -> Result<(), String> {
    const RULE: &str = "a port name is at most 15 lowercase letters, digits and `-`, with at least one letter, no `-` at either end and no `--`, e.g. `http`";
    if text.is_empty() {
        return Err(format!("the port name is empty; {RULE}"));
    }
    if text.len() > 15 {
        return Err(format!(
            "port name `{text}` has {} characters; {RULE}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "port name `{}` contains {}; {RULE}",
            text.escape_debug(),
            describe_char(c)
        ));
    }
    if !text.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!("port name `{text}` has no letter; {RULE}"));
    }
    if text.starts_with('-') || text.ends_with('-') || text.contains("--") {
        return Err(format!(
            "port name `{text}` has `-` at an end or `--`; {RULE}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_route_name_gets_a_valid_suggestion_without_recursion() {
        let cases = [
            ("api/v2", "api-v2"),
            ("api:v2", "api-v2"),
            ("café", "caf"),
            ("Checkout", "checkout"),
            ("check_out", "check-out"),
            ("a//b", "a-b"),
            ("/", "checkout"),
            ("ééé", "checkout"),
            ("x.y z", "x-y-z"),
            ("-a_", "a"),
            ("日本/route", "route"),
        ];
        for (name, want) in cases {
            let message = route_name(name).expect_err(name);
            assert!(
                message.contains(&format!("e.g. `{want}`")),
                "{name}: {message}"
            );
            assert_eq!(route_name(want), Ok(()), "{name} suggests {want}");
        }
        let long = format!("{}/", "a".repeat(100));
        let suggestion = suggested_route_name(&long);
        assert_eq!(route_name(&suggestion), Ok(()), "{suggestion}");
    }

    #[test]
    fn a_port_alone_is_refused_with_an_address_to_write() {
        let want = "`8080` is a port without an address; write e.g. `127.0.0.1:8080`";
        assert_eq!(bind_address("8080").expect_err("a port alone"), want);
        assert_eq!(endpoint("8080").expect_err("a port alone"), want);
    }
}
