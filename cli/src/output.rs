//! Output: human text by default, JSON with `--json`; errors on stderr.

/// Exit code: the thing checked is wrong, or the rules refuse the request.
pub(crate) const EXIT_REFUSED: u8 = 1;
/// Exit code: usage, configuration or I/O error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// Where results go.
pub(crate) struct Out {
    json: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Out { json }
    }

    /// Whether JSON output was asked for.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Prints one result: the text, or the JSON value.
    pub(crate) fn record(&self, text: &str, json: serde_json::Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else if !text.is_empty() {
            println!("{text}");
        }
    }

    /// Prints a warning to stderr (with `--json` too: stdout stays one
    /// document).
    pub(crate) fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }

    /// Prints an error to stderr (as JSON on stdout with `--json`, so
    /// scripts always get a document).
    pub(crate) fn error(&self, msg: &str) {
        if self.json {
            println!("{}", serde_json::json!({"error": msg}));
        }
        eprintln!("error: {msg}");
    }
}

/// A time in milliseconds since the Unix epoch as ISO 8601 UTC to the
/// second, e.g. `2026-11-20T09:41:07Z`.
pub(crate) fn iso_time(ms: u64) -> String {
    custodia_protocol::utc::iso_seconds(ms)
}

/// The first 12 hex characters of an id, as shown to people.
pub(crate) fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::iso_time;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_795_000_000_999), "2026-11-18T11:06:40Z");
    }
}
