//! How the module writes JSON: serde_json, compact, with the escapes its
//! hand-written writer always used, so that answers stay byte for byte what
//! they were: `\u0008` and `\u000c` rather than `\b` and `\f`, and DEL
//! (U+007F) escaped as `\u007f` like the control characters before it.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// `value` as one line of JSON.
pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    let mut json = Vec::with_capacity(512);
    value
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut json,
            ModuleEscapes,
        ))
        .expect("a status is plain data, written to memory");
    String::from_utf8(json).expect("serde_json writes UTF-8")
}

/// serde_json's compact layout with the module's escapes.
struct ModuleEscapes;

impl Formatter for ModuleEscapes {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json leaves DEL as it is.
        let mut parts = fragment.split('\u{7f}');
        writer.write_all(parts.next().unwrap_or_default().as_bytes())?;
        for part in parts {
            writer.write_all(b"\\u007f")?;
            writer.write_all(part.as_bytes())?;
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::Backspace => return write!(writer, "\\u0008"),
            CharEscape::FormFeed => return write!(writer, "\\u000c"),
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
        };
        writer.write_all(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_the_module_always_did() {
        assert_eq!(
            to_json(&"a\"b\\c/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}x\u{7f}é\u{80}☕"),
            "\"a\\\"b\\\\c/\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\\u007fx\\u007fé\u{80}☕\""
        );
        assert_eq!(to_json(&("", 0u64, None::<u64>)), "[\"\",0,null]");
    }
}
