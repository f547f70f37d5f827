//! Texts a user typed (names, descriptions, hosts, paths, variables) as the
//! app checks and quotes them: a refusal quotes the offending value, but never
//! more than [`QUOTE_MAX`] characters of it, so a 50 MB name gives a one-line
//! message, and control characters are shown escaped, not sent to a terminal.

use storycore_types::FieldError;

/// Most characters of a value a message quotes.
pub const QUOTE_MAX: usize = 80;

/// `'value'`, cut to [`QUOTE_MAX`] characters (saying how long it really is)
/// and with control and invisible characters escaped (`\u{1b}`).
pub fn quote(value: &str) -> String {
    let total = value.chars().count();
    let mut out = String::from("'");
    for c in value.chars().take(QUOTE_MAX) {
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    if total > QUOTE_MAX {
        out.push_str(&format!(" (cut: {total} characters in all)"));
    }
    out
}

/// Characters that take no room on screen: a name made only of these looks
/// empty in every list.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'            // soft hyphen
        | '\u{034F}'          // combining grapheme joiner
        | '\u{061C}'          // Arabic letter mark
        | '\u{115F}' | '\u{1160}' // Hangul fillers
        | '\u{180E}'          // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space, joiners, direction marks
        | '\u{202A}'..='\u{202E}' // bidirectional embeddings
        | '\u{2060}'..='\u{206F}' // word joiner, invisible operators
        | '\u{3164}'          // Hangul filler
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FEFF}'          // byte order mark
        | '\u{FFA0}'          // halfwidth Hangul filler
    )
}

/// What a text field may hold.
pub struct TextRules {
    /// Most characters.
    pub max_chars: usize,
    /// Line breaks and tabs allowed (a description); never other controls.
    pub multiline: bool,
    /// Must show something: not empty, not only spaces or invisible marks.
    pub required: bool,
}

/// Checks a text: its length, control characters (ESC, BEL, NUL...) and, when
/// required, that it shows something. `what` names it in the message ("The
/// name"). Adds at most one problem.
pub fn check_text(
    field: &str,
    what: &str,
    value: &str,
    rules: TextRules,
    errors: &mut Vec<FieldError>,
) {
    let len = value.chars().count();
    if len > rules.max_chars {
        errors.push(FieldError::new(
            field,
            format!(
                "{what} is {len} characters long; shorten it to {} at most.",
                rules.max_chars
            ),
        ));
        return;
    }
    let allowed = |c: char| rules.multiline && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = value.chars().find(|c| c.is_control() && !allowed(*c)) {
        errors.push(FieldError::new(
            field,
            format!(
                "{what} contains the control character {} (in {}): remove it, type plain text.",
                c.escape_unicode(),
                quote(value)
            ),
        ));
        return;
    }
    if rules.required && value.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        let message = if value.is_empty() || value.trim().is_empty() {
            format!("{what} is empty: enter one.")
        } else {
            format!(
                "{what} {} is made only of invisible characters: enter a name people can read.",
                quote(value)
            )
        };
        errors.push(FieldError::new(field, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("GPU 0"), "'GPU 0'");
        let long = "x".repeat(50_000);
        let q = quote(&long);
        assert!(q.len() < 130, "{q}");
        assert!(q.ends_with("(cut: 50000 characters in all)"), "{q}");
        assert_eq!(quote("a\u{1b}[31mb"), "'a\\u{1b}[31mb'");
        assert_eq!(quote("\u{200b}"), "'\\u{200b}'");
    }

    #[test]
    fn texts_need_visible_characters_and_no_controls() {
        let rules = || TextRules {
            max_chars: 10,
            multiline: false,
            required: true,
        };
        let check = |v: &str| {
            let mut e = Vec::new();
            check_text("name", "The name", v, rules(), &mut e);
            e.into_iter().map(|e| e.message).collect::<Vec<_>>()
        };
        assert!(check("GPU 0").is_empty());
        assert!(check("Été №2").is_empty());
        assert!(check("\u{200b}\u{feff}")[0].contains("invisible"));
        assert!(check("  ")[0].contains("empty"));
        assert!(check("a\u{7}b")[0].contains("\\u{7}"));
        assert!(check("a\u{1b}b")[0].contains("control character"));
        assert!(check(&"y".repeat(11))[0].contains("11 characters"));
        let mut e = Vec::new();
        let multi = TextRules {
            max_chars: 100,
            multiline: true,
            required: false,
        };
        check_text(
            "description",
            "The description",
            "line\nline\t",
            multi,
            &mut e,
        );
        assert!(e.is_empty());
    }
}
