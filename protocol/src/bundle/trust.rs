//! Trust files: agency keys a court obtained independently of the bundle.
//!
//! One line per agency, `<64 hex characters of the key> <name>`; blank
//! lines and lines starting with `#` are ignored (SPEC.md §10.7). A key in
//! the file is *confirmed*: the court has it from a channel other than the
//! bundle (a letter, a call comparing fingerprints, a published list).

use std::collections::BTreeMap;

use crate::ids::AgencyId;

/// Agency keys confirmed out of band, with the names they were given under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    keys: BTreeMap<AgencyId, String>,
}

/// A line of a trust file that is not `<key> <name>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct TrustError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl TrustList {
    /// Parses a trust file.
    pub fn parse(text: &str) -> Result<TrustList, TrustError> {
        let mut keys = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what: String| TrustError { line: i + 1, what };
            let (key, name) = match line.split_once(char::is_whitespace) {
                Some((k, n)) => (k, n.trim()),
                None => (line, ""),
            };
            let agency = AgencyId::from_hex(key).map_err(|_| {
                err(format!(
                    "{key:?} is not an agency key: expected 64 hexadecimal characters, then the agency's name"
                ))
            })?;
            if name.is_empty() {
                return Err(err("the key has no agency name after it".into()));
            }
            if let Some(before) = keys.insert(agency, name.to_owned()) {
                if before != name {
                    return Err(err(format!(
                        "key {} is listed twice, as {before:?} and as {name:?}",
                        agency.fingerprint()
                    )));
                }
            }
        }
        Ok(TrustList { keys })
    }

    /// The name a key was confirmed under, if it is in the file.
    pub fn name(&self, agency: &AgencyId) -> Option<&str> {
        self.keys.get(agency).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the file lists no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_names_and_comments() {
        let k = "ab".repeat(32);
        let t = TrustList::parse(&format!("# court list\n\n{k}  Bundeskriminalamt SO 43\n"))
            .expect("parses");
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.name(&AgencyId([0xAB; 32])),
            Some("Bundeskriminalamt SO 43")
        );
    }

    #[test]
    fn names_the_bad_line() {
        let e = TrustList::parse("# x\nnot-a-key Someone\n").expect_err("refused");
        assert_eq!(e.line, 2);
        let k = "cd".repeat(32);
        assert_eq!(TrustList::parse(&k).expect_err("no name").line, 1);
        let twice = format!("{k} A\n{k} B\n");
        assert_eq!(TrustList::parse(&twice).expect_err("twice").line, 2);
    }
}
