//! Text that another agency wrote, made safe to show on a terminal.
//!
//! Names, titles, labels, notes, reasons and "by" fields come from signed
//! entries and peers' bundles: another agency chose every character. Sent
//! raw to a terminal, an escape sequence in a case title can clear the
//! screen after an INVALID verdict and draw a fake "VALID", write the
//! reader's clipboard (OSC 52), or move the cursor over earlier lines; a
//! newline can forge a line of the report; a bidirectional override can
//! make `VALID` and `INVALID` look alike or reorder a fingerprint.
//!
//! [`safe`] replaces every such character by a visible escape, so the text
//! is still there to read (a court may need to see that it was crafted)
//! but does nothing: control characters (C0, DEL, C1) including newline
//! and tab, and the invisible direction marks and overrides (U+061C,
//! U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and line separators
//! (U+2028, U+2029). Renderers apply it to each string from an entry, a
//! bundle or a peer; [`safe_lines`] is applied once more to the whole
//! output, keeping only the renderer's own newlines, so a field that a
//! renderer forgets can still not reach the terminal raw.
//!
//! JSON output needs none of this: it is data, and serde escapes control
//! characters.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw.
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every hostile character written as a visible escape: `\n`,
/// `\r`, `\t`, else `\u{1b}` (the character's code point in hex).
pub(crate) fn safe(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`safe`], but newlines are kept: for a whole rendered output whose
/// fields were escaped one by one.
pub(crate) fn safe_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| hostile(c) && !(keep_newlines && c == '\n');
    // Most text is printable ASCII, which holds nothing hostile: a look at
    // each byte says so without decoding characters (a large report's
    // lines pass here twice).
    let plain = |b: u8| (0x20..0x7F).contains(&b) || (keep_newlines && b == b'\n');
    // Sixteen bytes at a time, without stopping inside a block: the
    // compiler checks a block in a few vector instructions.
    let all_plain = s
        .as_bytes()
        .chunks(16)
        .all(|block| block.iter().fold(true, |ok, &b| ok & plain(b)));
    if all_plain || !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{safe, safe_lines};

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "Operation Lantern",
            "Bundeskriminalamt – Köln",
            "日本語 ✔",
        ] {
            assert!(matches!(safe(s), std::borrow::Cow::Borrowed(x) if x == s));
        }
    }

    #[test]
    fn every_hostile_character_is_visible_and_inert() {
        let cases = [
            ("\u{1b}[2J\u{1b}[HVALID", "\\u{1b}[2J\\u{1b}[HVALID"),
            ("\u{1b}]52;c;ZXZpbA==\u{7}", "\\u{1b}]52;c;ZXZpbA==\\u{7}"),
            ("a\nVALID\r\tb", "a\\nVALID\\r\\tb"),
            ("\u{9b}2J", "\\u{9b}2J"),
            ("\u{7f}\u{0}", "\\u{7f}\\u{0}"),
            ("\u{202e}DILAVNI\u{202c}", "\\u{202e}DILAVNI\\u{202c}"),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}\u{200e}\u{200f}\u{61c}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}\\u{200e}\\u{200f}\\u{61c}",
            ),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
        ];
        for (raw, want) in cases {
            assert_eq!(safe(raw), want, "{raw:?}");
        }
        for c in (0u32..0xA0)
            .chain(0x2000..0x2070)
            .filter_map(char::from_u32)
        {
            let out = safe(&c.to_string()).into_owned();
            assert!(out.chars().all(|x| !x.is_control()), "{c:?} gave {out:?}");
        }
    }

    #[test]
    fn whole_outputs_keep_their_own_newlines_only() {
        assert_eq!(
            safe_lines("INVALID\n\u{1b}[2Jtitle\r\n"),
            "INVALID\n\\u{1b}[2Jtitle\\r\n"
        );
    }
}
