//! The shared secret deliveries are signed with. Kept out of `Debug` so it
//! never lands in a log line by accident.

use std::fmt;

/// Shortest secret accepted: shorter ones are guessable offline from one
/// signed body.
pub const MIN_SECRET_CHARS: usize = 16;
/// Longest secret accepted; HMAC would take more, nobody needs it.
pub const MAX_SECRET_CHARS: usize = 256;
/// Random bytes in a generated secret (64 hex characters).
const GENERATED_BYTES: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret chosen by the caller, if long enough and printable.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let chars = text.chars().count();
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
            return Err(format!(
                "the secret must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters long (it is {chars})"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("the secret must not contain control characters".to_owned());
        }
        Ok(Secret(text.to_owned()))
    }

    /// A fresh random secret, for a caller that did not choose one.
    pub fn generate() -> Secret {
        let bytes: [u8; GENERATED_BYTES] = rand::random();
        Secret(hex::encode(bytes))
    }

    /// Read back from the database, where only valid secrets are written.
    pub fn stored(text: String) -> Secret {
        Secret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_random_and_valid() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(Secret::parse(a.expose()).is_ok());
    }

    #[test]
    fn short_or_control_character_secrets_are_refused() {
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("sixteen-chars-ok").is_ok());
        assert!(Secret::parse("sixteen-chars\nno").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::parse("do-not-print-this-one").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
