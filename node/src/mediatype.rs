//! Media type detection from content (magic bytes), for the types an
//! examiner meets most: images, video, documents, archives, databases,
//! forensic images and plain text. The file name is never consulted: an
//! evidence file's extension is an assertion by whoever named it.

/// The media type of content starting with `head`. `complete` says whether
/// `head` is the whole content (otherwise a multi-byte UTF-8 sequence cut
/// at its end does not make it binary).
pub(crate) fn detect(head: &[u8], complete: bool) -> &'static str {
    let at = |offset: usize, magic: &[u8]| {
        head.get(offset..offset + magic.len())
            .is_some_and(|s| s == magic)
    };
    if at(0, b"\xFF\xD8\xFF") {
        "image/jpeg"
    } else if at(0, b"\x89PNG\r\n\x1A\n") {
        "image/png"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        "video/x-msvideo"
    } else if box_size(head) && at(4, b"ftyp") {
        if at(8, b"qt  ") {
            "video/quicktime"
        } else {
            "video/mp4"
        }
    } else if box_size(head) && (at(4, b"moov") || at(4, b"mdat") || at(4, b"wide")) {
        // Old QuickTime files without an ftyp box.
        "video/quicktime"
    } else if at(0, b"\x1A\x45\xDF\xA3") {
        let window = &head[..head.len().min(4096)];
        if contains(window, b"webm") {
            "video/webm"
        } else {
            "video/x-matroska"
        }
    } else if at(0, b"%PDF-") {
        "application/pdf"
    } else if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") || at(0, b"PK\x07\x08") {
        "application/zip"
    } else if at(0, b"\x1F\x8B") {
        "application/gzip"
    } else if at(0, b"7z\xBC\xAF\x27\x1C") {
        "application/x-7z-compressed"
    } else if at(0, b"Rar!\x1A\x07") {
        "application/vnd.rar"
    } else if at(0, b"SQLite format 3\0") {
        "application/vnd.sqlite3"
    } else if at(0, b"EVF\x09\x0D\x0A\xFF\x00") {
        // EnCase / libewf Expert Witness Format (E01).
        "application/x-ewf"
    } else if is_text(head, complete) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// Whether the content starts like an ISO BMFF / QuickTime box: a 32-bit
/// big-endian size below 16 MiB (so text such as "The free…" is not a box).
fn box_size(head: &[u8]) -> bool {
    head.first() == Some(&0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Valid UTF-8 without NUL bytes (an empty file is not text: it is
/// nothing).
fn is_text(head: &[u8], complete: bool) -> bool {
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a character at the end of an incomplete head.
        Err(e) => !complete && e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn common_forensic_types() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", "image/jpeg"),
            (b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR", "image/png"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\x24\0\0\0AVI LIST", "video/x-msvideo"),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", "video/mp4"),
            (b"\0\0\0\x14ftypqt  \0\0\0\0", "video/quicktime"),
            (b"\0\0\0\x08wide\0\0\0\0mdat", "video/quicktime"),
            (
                b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm",
                "video/webm",
            ),
            (b"\x1A\x45\xDF\xA3\x42\x82\x88matroska", "video/x-matroska"),
            (b"%PDF-1.7\n", "application/pdf"),
            (b"PK\x03\x04\x14\0", "application/zip"),
            (b"\x1F\x8B\x08\0", "application/gzip"),
            (b"7z\xBC\xAF\x27\x1C\0\x04", "application/x-7z-compressed"),
            (b"Rar!\x1A\x07\x01\0", "application/vnd.rar"),
            (b"SQLite format 3\0\x10\0", "application/vnd.sqlite3"),
            (b"EVF\x09\x0D\x0A\xFF\x00\x01\x01\0", "application/x-ewf"),
            ("chat: see you at 9 ✓\n".as_bytes(), "text/plain"),
            (b"The ftyp and free words are text", "text/plain"),
            (b"\0\x01\x02\x03", "application/octet-stream"),
            (b"text\0with a NUL", "application/octet-stream"),
            (b"\xC3\x28 invalid UTF-8", "application/octet-stream"),
            (b"", "application/octet-stream"),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect(bytes, true), *want, "{bytes:?}");
        }
    }

    #[test]
    fn a_character_cut_at_the_end_of_a_partial_head_is_still_text() {
        let s = "preuve n° ✓".as_bytes();
        let cut = &s[..s.len() - 1];
        assert_eq!(detect(cut, false), "text/plain");
        assert_eq!(detect(cut, true), "application/octet-stream");
    }
}
