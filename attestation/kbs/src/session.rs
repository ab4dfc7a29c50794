//! RCAR sessions, keyed by the `kbs-session-id` cookie. A session starts at
//! `/auth` with a fresh nonce; the nonce is good for one `/attest` within the
//! nonce lifetime, and is spent by that attempt whether it succeeds or not. A
//! successful attestation turns the session into an attested one, which lasts
//! the session lifetime. Sessions live in memory: a restarted KBS asks its
//! clients to attest again (they do, on the 401).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use kbs_types::Tee;
use rand_core::{OsRng, RngCore};

use crate::token::TokenClaims;

/// Where a session is in the handshake.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `/auth` answered with this nonce.
    Challenged {
        tee: Tee,
        nonce: String,
        nonce_expires: Instant,
        nonce_expires_at: SystemTime,
    },
    /// The nonce was spent on a failed attestation.
    Spent,
    /// Attested; resources may be requested.
    Attested {
        token: String,
        claims: Box<TokenClaims>,
    },
}

#[derive(Clone, Debug)]
pub struct Session {
    pub stage: Stage,
    pub expires: Instant,
    pub expires_at: SystemTime,
}

/// Why a session lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    Unknown,
    Expired { at: SystemTime },
}

/// The live sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    pub nonce_ttl: Duration,
    pub session_ttl: Duration,
}

/// Above this many sessions, expired ones are purged on the next insert.
const PURGE_ABOVE: usize = 4096;

fn random_b64(len: usize) -> String {
    use base64::Engine as _;
    let mut b = vec![0u8; len];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Sessions {
    pub fn new(nonce_ttl: Duration, session_ttl: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            nonce_ttl,
            session_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a consistent map (every update is
        // a single insert or remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session: returns its id and nonce (32 random bytes, base64).
    pub fn challenge(&self, tee: Tee) -> (String, String) {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let nonce = random_b64(32);
        let now = Instant::now();
        let session = Session {
            stage: Stage::Challenged {
                tee,
                nonce: nonce.clone(),
                nonce_expires: now + self.nonce_ttl,
                nonce_expires_at: SystemTime::now() + self.nonce_ttl,
            },
            expires: now + self.session_ttl,
            expires_at: SystemTime::now() + self.session_ttl,
        };
        let mut map = self.lock();
        if map.len() > PURGE_ABOVE {
            map.retain(|_, s| s.expires > now);
        }
        map.insert(id.clone(), session);
        (id, nonce)
    }

    /// Takes the session's challenge for an attestation attempt, marking the nonce
    /// spent. Returns the stage it was in.
    pub fn take_for_attest(&self, id: &str) -> Result<Stage, SessionError> {
        let mut map = self.lock();
        let s = map.get_mut(id).ok_or(SessionError::Unknown)?;
        if s.expires <= Instant::now() {
            let at = s.expires_at;
            map.remove(id);
            return Err(SessionError::Expired { at });
        }
        Ok(match &s.stage {
            Stage::Challenged { .. } => std::mem::replace(&mut s.stage, Stage::Spent),
            other => other.clone(),
        })
    }

    /// Records a successful attestation.
    pub fn attested(&self, id: &str, token: String, claims: TokenClaims) {
        let now = Instant::now();
        if let Some(s) = self.lock().get_mut(id) {
            s.stage = Stage::Attested {
                token,
                claims: Box::new(claims),
            };
            s.expires = now + self.session_ttl;
            s.expires_at = SystemTime::now() + self.session_ttl;
        }
    }

    /// The session, if it exists and has not expired.
    pub fn get(&self, id: &str) -> Result<Session, SessionError> {
        let mut map = self.lock();
        let s = map.get(id).ok_or(SessionError::Unknown)?;
        if s.expires <= Instant::now() {
            let at = s.expires_at;
            map.remove(id);
            return Err(SessionError::Expired { at });
        }
        Ok(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_single_use_and_sessions_expire() {
        let s = Sessions::new(Duration::from_secs(5), Duration::from_millis(50));
        let (id, nonce) = s.challenge(Tee::Snp);
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &nonce)
                .unwrap()
                .len(),
            32
        );
        assert!(matches!(
            s.take_for_attest(&id),
            Ok(Stage::Challenged { .. })
        ));
        assert!(matches!(s.take_for_attest(&id), Ok(Stage::Spent)));
        assert_eq!(s.get("nope").unwrap_err(), SessionError::Unknown);
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(s.get(&id), Err(SessionError::Expired { .. })));
        assert_eq!(s.get(&id).unwrap_err(), SessionError::Unknown);
    }
}
