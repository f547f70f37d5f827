//! Format versions ("1.0"): which ones this app reads and may overwrite.

use std::cmp::Ordering;

/// How a file's `version` compares with the one this app writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormatAge {
    /// This version or an older one: read it, and upgrade it on the next save.
    Known,
    /// Written by a newer app: read what can be read, never overwrite.
    Newer(String),
}

/// Compares `major.minor` numerically ("1.10" is newer than "1.9"). A version
/// that is not a number counts as newer: the app cannot know what it means.
pub(crate) fn format_age(found: &str, current: &str) -> FormatAge {
    match (parse(found), parse(current)) {
        (Some(f), Some(c)) if f.cmp(&c) != Ordering::Greater => FormatAge::Known,
        _ => FormatAge::Newer(found.to_string()),
    }
}

fn parse(v: &str) -> Option<Vec<u64>> {
    v.trim().split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_numerically() {
        assert_eq!(format_age("1.0", "1.0"), FormatAge::Known);
        assert_eq!(format_age("0.9", "1.0"), FormatAge::Known);
        assert_eq!(format_age("1.1", "1.0"), FormatAge::Newer("1.1".into()));
        assert_eq!(format_age("2", "1.0"), FormatAge::Newer("2".into()));
        assert_eq!(format_age("1.10", "1.9"), FormatAge::Newer("1.10".into()));
        assert_eq!(format_age("beta", "1.0"), FormatAge::Newer("beta".into()));
    }
}
