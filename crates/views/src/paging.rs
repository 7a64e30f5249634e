//! Page tokens: opaque to callers, signed so a forged one is refused, bound to the filters
//! they were issued for, and expiring so a stale one is refused too.

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::Status;

use crate::errors::invalid;

/// How long a page token stays valid.
pub const TOKEN_TTL_SECS: i64 = 3600;

#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl PageTokens {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        PageTokens { key: key.into() }
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(body.as_bytes());
        mac
    }

    fn sign(&self, body: &str) -> String {
        self.mac(body)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` (hex) signs `body`, compared in constant time.
    fn verify(&self, body: &str, signature: &str) -> bool {
        if !signature.len().is_multiple_of(2) {
            return false;
        }
        let bytes: Option<Vec<u8>> = (0..signature.len() / 2)
            .map(|i| u8::from_str_radix(signature.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect();
        bytes.is_some_and(|b| self.mac(body).verify_slice(&b).is_ok())
    }

    /// A token resuming after `cursor`, for these filters.
    pub fn issue(&self, cursor: u128, filters: &str) -> String {
        let body = format!("{cursor:x}.{:x}", Utc::now().timestamp());
        let signature = self.sign(&format!("{body}|{filters}"));
        format!("{body}.{signature}")
    }

    /// The cursor of a token issued for these filters; `None` for an empty token.
    pub fn read(&self, token: &str, filters: &str) -> Result<Option<u128>, Status> {
        if token.is_empty() {
            return Ok(None);
        }
        let refuse = |why: &str| invalid("page_token", why);
        let mut parts = token.split('.');
        let (Some(cursor), Some(issued), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("is not a page token from this service"));
        };
        if !self.verify(&format!("{cursor}.{issued}|{filters}"), signature) {
            return Err(refuse(
                "was not issued by this service for these filters (forged, altered, or from another query)",
            ));
        }
        let issued = i64::from_str_radix(issued, 16).map_err(|_| refuse("is malformed"))?;
        // Checked: a signed token never carries an issue time near i64::MIN, but nothing
        // here should be able to overflow whatever it carries.
        if Utc::now()
            .timestamp()
            .checked_sub(issued)
            .is_none_or(|age| age > TOKEN_TTL_SECS)
        {
            return Err(refuse("has expired; start again from the first page"));
        }
        u128::from_str_radix(cursor, 16)
            .map(Some)
            .map_err(|_| refuse("is malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_forgery_and_other_filters() {
        let tokens = PageTokens::new(b"k".to_vec());
        let t = tokens.issue(42, "board|A");
        assert_eq!(tokens.read(&t, "board|A").expect("valid"), Some(42));
        assert!(tokens.read(&t, "board|B").is_err());
        let forged = t.replacen("2a", "2b", 1);
        assert!(tokens.read(&forged, "board|A").is_err());
        assert!(tokens.read("garbage", "board|A").is_err());
        assert!(
            PageTokens::new(b"other".to_vec())
                .read(&t, "board|A")
                .is_err()
        );
        let stale = {
            let body = format!(
                "{:x}.{:x}",
                42,
                Utc::now().timestamp() - TOKEN_TTL_SECS - 10
            );
            let sig = tokens.sign(&format!("{body}|board|A"));
            format!("{body}.{sig}")
        };
        assert!(tokens.read(&stale, "board|A").is_err());
    }
}
