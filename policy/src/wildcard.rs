//! Glob patterns over bare JIDs in `ExternalAccessPolicy.spec.users`.
//!
//! Only `*` (any run, possibly empty) and `?` (exactly one character) are special. Hand-written
//! rather than a glob crate: path-oriented globbing (`/`, `**`, character classes) has the wrong
//! semantics for JIDs, and the greedy two-pointer match below is linear in practice.

/// Whether `pattern` contains a wildcard.
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Match `text` against `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` in the pattern and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// How specific a pattern is: more literal characters first, then fewer `*`.
/// Used to order patterns so the most specific match wins.
pub fn specificity(pattern: &str) -> (usize, std::cmp::Reverse<usize>) {
    let literal = pattern.chars().filter(|c| *c != '*' && *c != '?').count();
    let stars = pattern.chars().filter(|c| *c == '*').count();
    (literal, std::cmp::Reverse(stars))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("*@example.com", "alice@example.com"));
        assert!(matches("*@example.com", "@example.com"));
        assert!(!matches("*@example.com", "alice@example.org"));
        assert!(matches("dev-?@example.com", "dev-1@example.com"));
        assert!(!matches("dev-?@example.com", "dev-12@example.com"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("*", ""));
        assert!(!matches("", "a"));
        assert!(matches("ü*@x", "über@x"));
    }

    #[test]
    fn more_literal_patterns_are_more_specific() {
        assert!(specificity("dev-*@example.com") > specificity("*@example.com"));
        assert!(specificity("a*@x") > specificity("a**@x"));
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(s in "[a-z@.]{0,12}", t in "[a-z@.]{0,12}") {
            prop_assert_eq!(matches(&s, &t), s == t);
        }

        #[test]
        fn star_prefix_matches_every_suffix(prefix in "[a-z]{0,6}", rest in "[a-z@.]{0,12}") {
            let text = format!("{prefix}{rest}");
            let pattern = format!("{prefix}*");
            prop_assert!(matches(&pattern, &text));
        }
    }
}
