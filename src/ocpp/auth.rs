//! The authorization cache (C10-C12): every idTokenInfo the CSMS sends is remembered, with an
//! expiry (cacheExpiryDateTime or AuthCacheCtrlr.LifeTime) and LRU eviction when full.

use super::model::{AuthorizationInfo, IdToken};
use super::persist::{CacheEntry, PersistOp};
use serde_json::Value;

/// Most entries kept; the least recently used non-Accepted entries go first (C10.FR.07).
pub const CACHE_CAPACITY: usize = 1000;

/// What the cache knows about a token, now.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Unknown,
    /// Accepted and not expired; the group token if any.
    Accepted {
        group: Option<IdToken>,
    },
    /// Known with another status, or expired.
    NotAccepted {
        status: String,
    },
}

#[derive(Debug, Default, Clone)]
pub struct AuthCache {
    entries: Vec<CacheEntry>,
}

impl AuthCache {
    pub fn new(entries: Vec<CacheEntry>) -> Self {
        AuthCache { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks a token up, marking it used. Returns the op that records the use, if any.
    pub fn lookup(&mut self, id_token: &IdToken, now_ms: i64) -> (Lookup, Option<PersistOp>) {
        let key = id_token.key();
        let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) else {
            return (Lookup::Unknown, None);
        };
        entry.used_ms = now_ms;
        let status = entry.info["status"]
            .as_str()
            .unwrap_or("Unknown")
            .to_owned();
        let lookup = if now_ms >= entry.expires_ms {
            // C10.FR.10: an expired entry counts as Expired.
            Lookup::NotAccepted {
                status: "Expired".into(),
            }
        } else if status == "Accepted" {
            Lookup::Accepted {
                group: entry
                    .info
                    .get("groupIdToken")
                    .and_then(|g| serde_json::from_value(g.clone()).ok()),
            }
        } else {
            Lookup::NotAccepted { status }
        };
        (lookup, Some(PersistOp::PutCacheEntry(entry.clone())))
    }

    /// Stores the CSMS's `IdTokenInfoType` for a token (C10.FR.04/05), evicting if full.
    pub fn update(
        &mut self,
        id_token: &IdToken,
        info: &AuthorizationInfo,
        now_ms: i64,
        lifetime_ms: i64,
    ) -> Vec<PersistOp> {
        if !id_token.cacheable() {
            return Vec::new();
        }
        let key = id_token.key();
        // C10.FR.13: cacheExpiryDateTime wins over LifeTime (C10.FR.08).
        let expires_ms = info
            .cache_expiry_date_time
            .as_deref()
            .and_then(super::clock::UtcTime::parse_rfc3339)
            .map(|t| t.unix_millis())
            .unwrap_or(now_ms.saturating_add(lifetime_ms));
        let entry = CacheEntry {
            key: key.clone(),
            // Stored as the CSMS said it.
            info: serde_json::to_value(info).unwrap_or(Value::Null),
            expires_ms,
            used_ms: now_ms,
        };
        let mut ops = Vec::new();
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => *e = entry.clone(),
            None => {
                if self.entries.len() >= CACHE_CAPACITY {
                    if let Some(victim) = self.eviction_victim(now_ms) {
                        let removed = self.entries.remove(victim);
                        ops.push(PersistOp::RemoveCacheEntry { key: removed.key });
                    }
                }
                self.entries.push(entry.clone());
            }
        }
        ops.push(PersistOp::PutCacheEntry(entry));
        ops
    }

    /// Expired and non-Accepted entries go first, then the least recently used.
    fn eviction_victim(&self, now_ms: i64) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| {
                let valid = e.info["status"] == "Accepted" && e.expires_ms > now_ms;
                (valid, e.used_ms)
            })
            .map(|(i, _)| i)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Forgets one entry (CustomerInformation with clear).
    pub fn remove(&mut self, key: &str) -> PersistOp {
        self.entries.retain(|e| e.key != key);
        PersistOp::RemoveCacheEntry {
            key: key.to_owned(),
        }
    }

    pub fn clear(&mut self) -> PersistOp {
        self.entries.clear();
        PersistOp::ClearCache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(json: Value) -> AuthorizationInfo {
        serde_json::from_value(json).unwrap()
    }

    fn token(id: &str) -> IdToken {
        IdToken::new(id, "ISO14443")
    }

    #[test]
    fn remembers_statuses_and_expires() {
        let mut c = AuthCache::default();
        assert_eq!(c.lookup(&token("A"), 0).0, Lookup::Unknown);
        c.update(
            &token("A"),
            &info(json!({"status":"Accepted","groupIdToken":{"idToken":"G","type":"Central"}})),
            0,
            1000,
        );
        c.update(&token("B"), &info(json!({"status":"Blocked"})), 0, 1000);
        assert_eq!(
            c.lookup(&token("A"), 500).0,
            Lookup::Accepted {
                group: Some(IdToken::new("G", "Central"))
            }
        );
        assert_eq!(
            c.lookup(&token("B"), 500).0,
            Lookup::NotAccepted {
                status: "Blocked".into()
            }
        );
        assert_eq!(
            c.lookup(&token("A"), 1000).0,
            Lookup::NotAccepted {
                status: "Expired".into()
            }
        );
        // cacheExpiryDateTime overrides the lifetime.
        c.update(
            &token("C"),
            &info(json!({"status":"Accepted","cacheExpiryDateTime":"1970-01-01T00:00:10Z"})),
            0,
            1000,
        );
        assert!(matches!(
            c.lookup(&token("C"), 9_999).0,
            Lookup::Accepted { .. }
        ));
    }

    #[test]
    fn never_caches_central_or_no_authorization() {
        let mut c = AuthCache::default();
        assert!(
            c.update(
                &IdToken::new("", "NoAuthorization"),
                &info(json!({"status":"Accepted"})),
                0,
                1
            )
            .is_empty()
        );
        assert!(
            c.update(
                &IdToken::new("x", "Central"),
                &info(json!({"status":"Accepted"})),
                0,
                1
            )
            .is_empty()
        );
        assert!(c.is_empty());
    }

    #[test]
    fn evicts_invalid_then_least_recently_used() {
        let mut c = AuthCache::default();
        for i in 0..CACHE_CAPACITY {
            c.update(
                &token(&format!("T{i}")),
                &info(json!({"status":"Accepted"})),
                i as i64,
                1_000_000,
            );
        }
        c.update(
            &token("T5"),
            &info(json!({"status":"Invalid"})),
            10_000,
            1_000_000,
        );
        let ops = c.update(
            &token("NEW"),
            &info(json!({"status":"Accepted"})),
            20_000,
            1_000_000,
        );
        assert_eq!(
            ops[0],
            PersistOp::RemoveCacheEntry {
                key: "ISO14443:T5".into()
            }
        );
        let ops = c.update(
            &token("NEW2"),
            &info(json!({"status":"Accepted"})),
            20_001,
            1_000_000,
        );
        assert_eq!(
            ops[0],
            PersistOp::RemoveCacheEntry {
                key: "ISO14443:T0".into()
            }
        );
        assert_eq!(c.len(), CACHE_CAPACITY);
    }
}
