//! Refresh tokens a token endpoint handed out in place of the configured one
//! (docs/configuration.md#logging-in). A server that rotates them (each use gives a new one and
//! retires the old) would lock a restarted daemon out if only the file's token were known, so the
//! newest is kept here, in the tree `auth` by bridge name, with a hash of the configured token it
//! descends from: a token the operator changes in the file wins over one the store kept for the
//! old.

use super::{Store, StoreError, json};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize)]
struct Kept {
    /// SHA-256 of the configured refresh token, in hex.
    configured: String,
    latest: String,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// The newest refresh token of the bridge, if one was kept for this configured one.
    pub fn refresh_token(
        &self,
        bridge: &str,
        configured: &str,
    ) -> Result<Option<String>, StoreError> {
        let tree = self.db.open_tree("auth")?;
        let Some(v) = tree.get(bridge.as_bytes())? else {
            return Ok(None);
        };
        let kept: Kept = json(&v, &format!("{bridge}/auth"))?;
        Ok((kept.configured == hash(configured)).then_some(kept.latest))
    }

    /// Keeps the refresh token the server gave last, and waits for the disk: the old one may
    /// already be void. Blocks (a sled flush).
    pub fn keep_refresh_token(
        &self,
        bridge: &str,
        configured: &str,
        latest: &str,
    ) -> Result<(), StoreError> {
        let kept = Kept {
            configured: hash(configured),
            latest: latest.to_string(),
        };
        let tree = self.db.open_tree("auth")?;
        tree.insert(bridge.as_bytes(), super::record_bytes(&kept))?;
        tree.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_refresh_token_counts_for_the_configured_one_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.refresh_token("b", "rt-1").unwrap(), None);
        s.keep_refresh_token("b", "rt-1", "rt-2").unwrap();
        assert_eq!(
            s.refresh_token("b", "rt-1").unwrap().as_deref(),
            Some("rt-2")
        );
        // The operator wrote a new one into the file: it wins.
        assert_eq!(s.refresh_token("b", "rt-9").unwrap(), None);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.refresh_token("b", "rt-1").unwrap().as_deref(),
            Some("rt-2")
        );
    }
}
