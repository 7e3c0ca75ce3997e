//! Output: human text by default, JSON with `--json`; errors on stderr.
//!
//! Every write to standard output goes through [`print()`] or
//! [`written`]: text output is passed through [`safe_lines`] (no control
//! character from another agency reaches the terminal), and a closed pipe (`custodia id | head
//! -1`) ends the output quietly, so the command still exits with its own
//! code instead of a panic.

use std::io::Write as _;
use std::sync::OnceLock;

use crate::untrusted::safe_lines;

/// Exit code: the thing checked is wrong, or the rules refuse the request.
pub(crate) const EXIT_REFUSED: u8 = 1;
/// Exit code: usage, configuration or I/O error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// The version of the shape of a JSON document the CLI writes: the
/// `"schema_version"` member of every document that is an object (a
/// verification report, a command's result, an error). Each kind of
/// document has its own (docs/json.md lists them with their JSON Schemas
/// in docs/schemas/); this is the first, which most still have. A
/// document's version goes up when one of its members changes type or
/// meaning or goes away; adding a member does not change it.
pub(crate) const JSON_SCHEMA_VERSION: u64 = 1;

/// The version of the documents that changed when every command's JSON got
/// a schema (docs/json.md): times RFC 3339 strings to the second with the
/// exact milliseconds beside them in `…_ms` (`key log`, `key revoke`, and
/// `export`'s and a quarantined row's were epoch milliseconds); a case's
/// quarantined rows the list of rows (`case list`, `status` gave a count);
/// `case show`'s conflicts objects and its own equivocation
/// `equivocated_at` as in `status`; `export`'s withheld positions a list,
/// its CASE/UCO path `file` and selection `items`; `demo` holds `case
/// show`s.
pub(crate) const JSON_SCHEMA_VERSION_2: u64 = 2;

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

    /// Prints one result: the text, or the JSON object with the
    /// [`JSON_SCHEMA_VERSION`] added. A list is [`Out::record_list`]: every
    /// document is an object, so every one says its version.
    pub(crate) fn record(&self, text: &str, json: serde_json::Value) {
        self.record_version(JSON_SCHEMA_VERSION, text, json);
    }

    /// [`Out::record`] of a document whose shape is at `version`.
    pub(crate) fn record_version(&self, version: u64, text: &str, mut json: serde_json::Value) {
        debug_assert!(json.is_object(), "a JSON document is an object: {json}");
        if self.json {
            if let serde_json::Value::Object(m) = &mut json {
                m.insert("schema_version".into(), version.into());
            }
            print_data(&serde_json::to_string_pretty(&json).unwrap_or_default());
        } else if !text.is_empty() {
            print(text);
        }
    }

    /// Prints a list: the text, or `{"schema_version": …, key: [rows]}`.
    pub(crate) fn record_list(&self, text: &str, key: &str, rows: Vec<serde_json::Value>) {
        let mut doc = serde_json::Map::new();
        doc.insert(key.into(), serde_json::Value::Array(rows));
        self.record(text, serde_json::Value::Object(doc));
    }

    /// Prints a warning to stderr (with `--json` too: stdout stays one
    /// document).
    pub(crate) fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }

    /// Prints an error on standard error (a JSON document `{"error": …}`
    /// with `--json`, so scripts always get one).
    pub(crate) fn error(&self, msg: &str) {
        // Errors go to standard error only, never mixed into the data on
        // standard output: with --json as one JSON document (the message
        // is data there, escaped by JSON), otherwise as text.
        if self.json {
            let doc = serde_json::json!({"error": msg, "schema_version": JSON_SCHEMA_VERSION});
            let _ = writeln!(std::io::stderr(), "{doc}");
        } else {
            // An error may quote a name or a value from a peer's entry.
            let _ = writeln!(std::io::stderr(), "error: {}", safe_lines(msg));
        }
    }
}

/// Why writing to standard output failed, other than a closed pipe.
static WRITE_FAILED: OnceLock<String> = OnceLock::new();

/// Prints `text` and a newline on standard output, every character from
/// another agency made visible ([`safe_lines`]; JSON has none raw).
pub(crate) fn print(text: &str) {
    print_data(&safe_lines(text));
}

/// Prints `text` and a newline on standard output as it is: for JSON,
/// which is data (serde_json escapes control characters in strings, and
/// an escape of ours would make it invalid JSON).
fn print_data(text: &str) {
    let mut out = std::io::stdout().lock();
    let r = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    written(r);
}

/// Notes the outcome of a write to standard output: a closed pipe is the
/// reader's choice and is ignored; another failure (a full disk) is kept
/// for [`write_failure`].
pub(crate) fn written(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = WRITE_FAILED.set(format!("writing the output: {e}"));
        }
    }
}

/// The first failure to write the output, other than a closed pipe: the
/// command then exits 2 rather than claim success for output it lost.
pub(crate) fn write_failure() -> Option<&'static str> {
    WRITE_FAILED.get().map(String::as_str)
}

/// A time in milliseconds since the Unix epoch as ISO 8601 UTC to the
/// second, e.g. `2026-11-20T09:41:07Z`.
pub(crate) fn iso_time(ms: u64) -> String {
    custodia_protocol::utc::iso_seconds(ms)
}

/// A time as a command's JSON gives it where the millisecond matters (a
/// revocation's effective time, a bundle's export): `name` the RFC 3339
/// UTC string to the second, like every time, and `name_ms` the exact
/// milliseconds since the Unix epoch. Inserted into `doc` (an object).
pub(crate) fn json_time(doc: &mut serde_json::Value, name: &str, ms: Option<u64>) {
    if let serde_json::Value::Object(m) = doc {
        m.insert(name.into(), ms.map(iso_time).into());
        m.insert(format!("{name}_ms"), ms.into());
    }
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
