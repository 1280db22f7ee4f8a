//! Small text helpers for argument and command-line parsing.

/// Parse an unsigned number: decimal, or hexadecimal with a `0x` prefix.
/// `_` separators are allowed (`1_000`).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)? as u64;
        v = v.checked_mul(radix as u64)?.checked_add(d)?;
    }
    Some(v)
}

/// Words of an argument string, with typed accessors that produce clear
/// messages (`what` names the argument in the message).
pub struct Words<'a> {
    it: core::str::SplitWhitespace<'a>,
}

impl<'a> Words<'a> {
    pub fn new(s: &'a str) -> Self {
        Words { it: s.split_whitespace() }
    }

    /// The next word, if any.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a str> {
        self.it.next()
    }

    /// The next word as a number; `Ok(None)` when there are no more words.
    pub fn next_u64(&mut self, what: &str) -> Result<Option<u64>, alloc::string::String> {
        match self.it.next() {
            None => Ok(None),
            Some(w) => parse_u64(w).map(Some).ok_or_else(|| alloc::format!("{what} must be a number, not `{w}`")),
        }
    }

    /// The next word as a number, which must be there.
    pub fn need_u64(&mut self, what: &str) -> Result<u64, alloc::string::String> {
        self.next_u64(what)?.ok_or_else(|| alloc::format!("missing {what}"))
    }

    /// Fails if any words are left.
    pub fn end(&mut self) -> Result<(), alloc::string::String> {
        match self.it.next() {
            None => Ok(()),
            Some(w) => Err(alloc::format!("unexpected argument `{w}`")),
        }
    }

    /// The remaining words joined by single spaces.
    pub fn rest(&mut self) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        for w in self.it.by_ref() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(w);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("4096"), Some(4096));
        assert_eq!(parse_u64("1_000"), Some(1000));
        assert_eq!(parse_u64("0x7000_0000_0000"), Some(0x7000_0000_0000));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64("12a"), None);
    }

    #[test]
    fn words() {
        let mut w = Words::new("  a 12  0x10 b c ");
        assert_eq!(w.next(), Some("a"));
        assert_eq!(w.need_u64("n"), Ok(12));
        assert_eq!(w.next_u64("m"), Ok(Some(16)));
        assert!(w.next_u64("k").unwrap_err().contains("`b`"));
        assert_eq!(w.rest(), "c");
        assert_eq!(w.next_u64("z"), Ok(None));
        assert!(w.need_u64("z").is_err());
        assert_eq!(w.end(), Ok(()));
    }
}
