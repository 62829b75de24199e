//! Values that must never be shown: session tokens, data keys, credentials.
//!
//! [`Secret`] redacts itself in `Debug` and `Display`, so a token inside a struct that gets
//! logged or printed in an error cannot leak by accident, and it overwrites its bytes when
//! dropped so a core dump taken later holds less. The only way to read it is
//! [`Secret::expose`], which makes every use greppable.

use std::fmt;

use zeroize::Zeroize;

/// A string that redacts itself when formatted and is zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call it only where the value is sent to its one legitimate consumer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (ResumeSession returns an empty token for a timed-out session).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("AQoDYXdzEJr-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        #[derive(Debug)]
        #[allow(dead_code, reason = "only formatted")]
        struct Holder {
            token: Secret,
        }
        let h = Holder { token: s.clone() };
        assert!(!format!("{h:?}").contains("very-secret"));
        assert_eq!(s.expose(), "AQoDYXdzEJr-very-secret");
    }
}
