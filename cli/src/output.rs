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

    /// Prints an error to stderr (as JSON on stdout with `--json`, so
    /// scripts always get a document).
    pub(crate) fn error(&self, msg: &str) {
        if self.json {
            println!("{}", serde_json::json!({"error": msg}));
        }
        eprintln!("error: {msg}");
    }
}
