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
    Expired {
        at: SystemTime,
    },
    /// `max_sessions` are alive: no new one until some expire.
    Full {
        live: usize,
    },
}

/// The live sessions.
pub struct Sessions {
    map: Mutex<Map>,
    pub nonce_ttl: Duration,
    pub session_ttl: Duration,
    /// Most sessions alive at once; `/auth` is refused beyond (anyone may
    /// call it, so without a bound its memory is the attacker's to fill).
    pub max_sessions: usize,
}

struct Map {
    sessions: HashMap<String, Session>,
    last_purge: Instant,
}

/// Above this many sessions, expired ones are purged, at most once a second
/// (a purge walks every session: doing it on each insert would make a flood
/// of `/auth` quadratic).
const PURGE_ABOVE: usize = 4096;
const PURGE_EVERY: Duration = Duration::from_secs(1);
/// The default bound: about 30 MB of sessions.
pub const MAX_SESSIONS: usize = 100_000;

fn random_b64(len: usize) -> String {
    use base64::Engine as _;
    let mut b = vec![0u8; len];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Sessions {
    pub fn new(nonce_ttl: Duration, session_ttl: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(Map {
                sessions: HashMap::new(),
                last_purge: Instant::now(),
            }),
            max_sessions: MAX_SESSIONS,
            nonce_ttl,
            session_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // A panic while holding the lock leaves a consistent map (every update is
        // a single insert or remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session: returns its id and nonce (32 random bytes, base64).
    pub fn challenge(&self, tee: Tee) -> Result<(String, String), SessionError> {
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
        let len = map.sessions.len();
        let every = PURGE_EVERY.min(self.session_ttl);
        if len >= PURGE_ABOVE.min(self.max_sessions) && now.duration_since(map.last_purge) >= every
        {
            map.sessions.retain(|_, s| s.expires > now);
            map.last_purge = now;
        }
        if map.sessions.len() >= self.max_sessions {
            return Err(SessionError::Full {
                live: map.sessions.len(),
            });
        }
        map.sessions.insert(id.clone(), session);
        Ok((id, nonce))
    }

    /// Takes the session's challenge for an attestation attempt, marking the nonce
    /// spent. Returns the stage it was in.
    pub fn take_for_attest(&self, id: &str) -> Result<Stage, SessionError> {
        let mut guard = self.lock();
        let map = &mut guard.sessions;
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
        if let Some(s) = self.lock().sessions.get_mut(id) {
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
        let mut guard = self.lock();
        let map = &mut guard.sessions;
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
        let (id, nonce) = s.challenge(Tee::Snp).unwrap();
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

    #[test]
    fn a_flood_of_challenges_is_bounded_and_expired_sessions_make_room() {
        let mut s = Sessions::new(Duration::from_millis(30), Duration::from_millis(30));
        s.max_sessions = 100;
        for _ in 0..100 {
            s.challenge(Tee::Snp).unwrap();
        }
        assert_eq!(
            s.challenge(Tee::Snp).unwrap_err(),
            SessionError::Full { live: 100 }
        );
        std::thread::sleep(Duration::from_millis(40));
        // All expired: the full map is purged before refusing.
        let (id, _) = s.challenge(Tee::Snp).unwrap();
        assert!(s.get(&id).is_ok());
        assert_eq!(s.lock().sessions.len(), 1);
    }
}
