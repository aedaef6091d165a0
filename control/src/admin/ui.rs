//! `GET /ui/`: the dashboard, a page with its script, style sheet and icon
//! built into the binary (`control/src/ui/`). Nothing is fetched from
//! anywhere else, and the headers say so to the browser: a
//! Content-Security-Policy of `'self'` only, no framing, no sniffing, no
//! referrer. The page reads the admin API and its event stream with the
//! token the operator types, which stays in the tab (`sessionStorage`).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

/// A file of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// `/ui/`: the page.
    Page,
    /// `/ui/app.js`.
    Script,
    /// `/ui/app.css`.
    Style,
    /// `/ui/icon.svg`.
    Icon,
}

/// What the dashboard's answers allow the browser: its own files and the
/// admin API, nothing inline, nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// === impl Asset ===

impl Asset {
    /// Every file, for tests and for the size report.
    pub const ALL: [Asset; 4] = [Asset::Page, Asset::Script, Asset::Style, Asset::Icon];

    /// The file at `/ui/{name}`, if there is one.
    pub fn named(name: &str) -> Option<Asset> {
        Some(match name {
            "index.html" => Asset::Page,
            "app.js" => Asset::Script,
            "app.css" => Asset::Style,
            "icon.svg" => Asset::Icon,
            _ => return None,
        })
    }

    /// The file's bytes, as built in.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            Asset::Page => include_bytes!("../ui/index.html"),
            Asset::Script => include_bytes!("../ui/app.js"),
            Asset::Style => include_bytes!("../ui/app.css"),
            Asset::Icon => include_bytes!("../ui/icon.svg"),
        }
    }

    /// The file's media type.
    pub const fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
            Asset::Icon => "image/svg+xml",
        }
    }
}

/// The answer with `asset` and the dashboard's security headers.
pub fn answer(asset: Asset) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(asset.bytes())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(asset.content_type()),
    );
    secure(headers);
    response
}

/// `/ui` to `/ui/`, so that the page's relative links resolve.
pub fn redirect() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
    secure(headers);
    response
}

fn secure(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings a new page: the browser asks again each time.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
}
