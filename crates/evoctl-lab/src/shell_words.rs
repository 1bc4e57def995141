//! The agent's command splitting, written from google/shlex's rules (the library the real agent
//! vendors; ssm-data-channel.md §3.3a and §9 row 8), not from Rust's `shlex` crate, which differs:
//! whitespace (space, tab, CR, LF) separates words; `'…'` is literal; inside `"…"` a backslash
//! escapes the next character and is always dropped (`"a\b"` is `ab`); outside quotes a
//! backslash escapes the next character; quotes may join parts of one word (`a"b c"d` is
//! `ab cd`, `""` is an empty word); a `#` where a word would start begins a comment that runs to
//! the end of the line. An unclosed quote or a trailing backslash is an error.

/// Why a command did not split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    UnclosedQuote,
    TrailingEscape,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitError::UnclosedQuote => "EOF found when expecting closing quote",
            SplitError::TrailingEscape => "EOF found after escape character",
        })
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Split `command` into words as google/shlex's `Split` does.
pub fn split(command: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        // Start state: skip whitespace; a `#` here is a comment up to the newline.
        while chars.peek().is_some_and(|c| is_space(*c)) {
            chars.next();
        }
        match chars.peek() {
            None => return Ok(words),
            Some('#') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if is_space(c) => break,
                '\\' => word.push(chars.next().ok_or(SplitError::TrailingEscape)?),
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().ok_or(SplitError::UnclosedQuote)?),
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote),
                    }
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::{SplitError, split};

    fn words(command: &str) -> Vec<String> {
        split(command).unwrap()
    }

    #[test]
    fn row8_a_backslash_before_an_ordinary_character_in_double_quotes_is_dropped() {
        assert_eq!(words(r#"echo "a\b""#), ["echo", "ab"]);
        assert_eq!(words(r#"echo "a\"b" "c\\d""#), ["echo", "a\"b", "c\\d"]);
        // Rust's shlex crate keeps it; the agent does not.
        assert_eq!(shlex::split(r#"echo "a\b""#).unwrap(), ["echo", "a\\b"]);
    }

    #[test]
    fn whitespace_quotes_and_escapes() {
        assert_eq!(words("  sh\t-c  'echo $HOME; ls'\n"), ["sh", "-c", "echo $HOME; ls"]);
        assert_eq!(words(r"a\ b 'c\d'"), ["a b", "c\\d"]);
        assert_eq!(words(r#"a"b c"d '' """#), ["ab cd", "", ""]);
        assert_eq!(words("sh -c 'printf \"%s\\n\" x'"), ["sh", "-c", "printf \"%s\\n\" x"]);
    }

    #[test]
    fn a_hash_at_a_word_start_comments_out_the_rest_of_the_line() {
        assert_eq!(words("echo a # b c"), ["echo", "a"]);
        assert_eq!(words("echo a#b"), ["echo", "a#b"]);
        assert_eq!(words("echo '#x' # y\nls"), ["echo", "#x", "ls"]);
    }

    #[test]
    fn empty_and_blank_commands_have_no_words() {
        assert!(words("").is_empty());
        assert!(words(" \t\n").is_empty());
        assert!(words("# only a comment").is_empty());
    }

    #[test]
    fn unclosed_quotes_and_a_trailing_escape_fail() {
        assert_eq!(split("echo 'a"), Err(SplitError::UnclosedQuote));
        assert_eq!(split("echo \"a"), Err(SplitError::UnclosedQuote));
        assert_eq!(split("echo a\\"), Err(SplitError::TrailingEscape));
    }
}
