//! Text a remote put in its answer (an error message, a body) is cut to a
//! size before it goes anywhere: into an error, a result, an audit record,
//! a dead letter. A validation error listing every record it found, or a
//! proxy's page, ran to megabytes: Kafka refused the records carrying it,
//! and the sink that owed them stopped.

/// The most of a remote's text kept, in bytes.
pub const MAX_REMOTE_TEXT: usize = 4096;

/// `text` cut to [`MAX_REMOTE_TEXT`] bytes at a character boundary, saying
/// how much was cut.
pub fn clipped(text: impl Into<String>) -> String {
    let mut text = text.into();
    if text.len() <= MAX_REMOTE_TEXT {
        return text;
    }
    let mut end = MAX_REMOTE_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… ({cut} bytes cut)"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut_at_a_character() {
        assert_eq!(clipped("refused"), "refused");
        let long = "é".repeat(MAX_REMOTE_TEXT);
        let cut = clipped(long.clone());
        assert!(cut.len() < MAX_REMOTE_TEXT + 32, "{}", cut.len());
        assert!(
            cut.starts_with("éé")
                && cut.ends_with(&format!("({} bytes cut)", long.len() - MAX_REMOTE_TEXT)),
            "{cut}"
        );
    }
}
