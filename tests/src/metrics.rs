//! Reading Prometheus text format: enough to find one sample's value; and
//! `promtool`, the judge of the format.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, with any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// The page as fetched.
    pub text: String,
    /// Every sample line that parsed.
    pub samples: Vec<Sample>,
}

// === impl Metrics ===

impl Metrics {
    /// Parses `text`; comment lines are skipped, lines that do not parse as
    /// samples are ignored (`promtool` is the judge of the format).
    pub fn parse(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            samples: text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                .filter_map(parse_sample)
                .collect(),
        }
    }

    /// The value of the one sample named `name` whose labels include all of
    /// `labels` (the first such, if several).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).map(|s| s.value).next()
    }

    /// The sum over every sample named `name` whose labels include all of
    /// `labels`; 0 when there is none (counters start absent).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            // Skip separators, then read `key="value"` or the closing brace.
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let (i, c) = chars.next()?;
            if c == '}' {
                end = i + 1;
                break;
            }
            let mut key = String::from(c);
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            chars.next()?; // '='
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Asserts that `promtool check metrics` (Debian's `prometheus` package,
/// which the test command installs) accepts `text`.
pub fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut promtool = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool not runnable ({e}); it comes from Debian's `prometheus` package: \
             apt-get install -y prometheus"
        ),
    };
    promtool
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let out = promtool.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_sums() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE weir_http_requests_total counter\n\
             weir_http_requests_total{route=\"web\",role=\"canary\",code=\"502\"} 3\n\
             weir_http_requests_total{route=\"web\",role=\"canary\",code=\"200\"} 4 1700000000\n\
             weir_config_reloads_total{result=\"success\"} 1\n\
             weir_x{a=\"q\\\"uote\"} +Inf\nplain 2.5\n",
        );
        assert_eq!(
            m.get(
                "weir_http_requests_total",
                &[("role", "canary"), ("code", "502")]
            ),
            Some(3.0)
        );
        assert_eq!(m.sum("weir_http_requests_total", &[("route", "web")]), 7.0);
        assert_eq!(
            m.sum("weir_http_requests_total", &[("route", "other")]),
            0.0
        );
        assert_eq!(m.get("weir_x", &[("a", "q\"uote")]), Some(f64::INFINITY));
        assert_eq!(m.get("plain", &[]), Some(2.5));
        assert_eq!(
            m.get("weir_config_reloads_total", &[("result", "success")]),
            Some(1.0)
        );
    }
}
