//! Text a remote put in its answer (an error message, a body) is cut to a
//! size before it goes anywhere: into an error, a result, an audit record,
//! a dead letter. A validation error listing every record it found, or a
//! proxy's page, ran to megabytes: Kafka refused the records carrying it,
//! and the sink that owed them stopped.
//!
//! An answer that should be small (an error, a token) is read only so far:
//! a proxy's page that never ends was read until the call's timeout, the
//! client holding all of it.

use serde_json::Value;

/// The most of a remote's text kept, in bytes.
pub const MAX_REMOTE_TEXT: usize = 4096;

/// The most of a small answer's body read (an error's, a token
/// endpoint's), in bytes: what is sane is a few hundred.
pub const MAX_SMALL_BODY: usize = 64 * 1024;

/// The first `max` bytes of `response`'s body. The rest is not read: the
/// connection is dropped, and a body that never ends costs `max` bytes, not
/// the call's timeout.
pub async fn body_up_to(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < max {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// `response`'s body as JSON, read up to `max` bytes; why not, if it is
/// larger, cut short, or not JSON (a proxy's page, another answer).
pub async fn json_up_to(response: reqwest::Response, max: usize) -> Result<Value, String> {
    let body = body_up_to(response, max.saturating_add(1))
        .await
        .map_err(|err| format!("the answer's body could not be read: {err}"))?;
    if body.len() > max {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    serde_json::from_slice(&body).map_err(|err| {
        let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        clipped(format!("the answer is not JSON ({err}): {start}"))
    })
}

/// An error answer's body (read up to [`MAX_SMALL_BODY`]): its JSON, or
/// else its text [`clipped`] (a proxy's page, a body cut short, or why it
/// could not be read).
pub async fn error_body(response: reqwest::Response) -> Result<Value, String> {
    match body_up_to(response, MAX_SMALL_BODY).await {
        Ok(body) => serde_json::from_slice(&body)
            .map_err(|_| clipped(String::from_utf8_lossy(&body).into_owned())),
        Err(err) => Err(clipped(format!(
            "(the answer's body could not be read: {err})"
        ))),
    }
}

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
