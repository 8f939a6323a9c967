//! Access tokens: JWT signed with HS256. A token admits one identity to one
//! room with one role until it expires. The key never appears in logs.

use crate::protocol::{ErrorCode, ProtocolError};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a participant is in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The chair of a briefing or the lead doctor: everything, including moderation.
    Host,
    /// Publishes, subscribes and shares a screen.
    Participant,
    /// Subscribes only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Participant => "participant",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host" => Some(Role::Host),
            "participant" => Some(Role::Participant),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn default_permissions(self) -> Permissions {
        match self {
            Role::Host => Permissions {
                publish: true,
                subscribe: true,
                screen_share: true,
                moderate: true,
            },
            Role::Participant => Permissions {
                publish: true,
                subscribe: true,
                screen_share: true,
                moderate: false,
            },
            Role::Viewer => Permissions {
                publish: false,
                subscribe: true,
                screen_share: false,
                moderate: false,
            },
        }
    }
}

/// What a participant may do. A token may narrow (or widen) its role's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    pub publish: bool,
    pub subscribe: bool,
    pub screen_share: bool,
    pub moderate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The one room this token admits to.
    pub room: String,
    /// A stable identity (e.g. staff number), for audit; not shown to others.
    pub sub: String,
    /// The display name others see.
    pub name: String,
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// The meeting's title as its invite shows it ("Giao ban sáng thứ Hai"),
    /// for the web client's pre-join screen and page title. Display only: the
    /// server admits by `room`, and ignores this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Who a join was admitted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Option<String>,
    /// From the token when there is one; otherwise the name the client sent.
    pub name: Option<String>,
    pub role: Role,
    pub permissions: Permissions,
}

/// The server's token key and policy.
#[derive(Clone)]
pub struct Auth {
    key: Vec<u8>,
    /// Development only: joins without a token become participants.
    pub allow_tokenless: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("key", &"<redacted>")
            .field("allow_tokenless", &self.allow_tokenless)
            .finish()
    }
}

/// `exp` for a token valid for `ttl` from now.
pub fn expiry(ttl: Duration) -> u64 {
    now_secs().saturating_add(ttl.as_secs())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    /// `key` must be at least 32 bytes.
    pub fn new(key: Vec<u8>, allow_tokenless: bool) -> Result<Self, String> {
        if key.len() < 32 {
            return Err(format!(
                "the token key must be at least 32 bytes (it has {})",
                key.len()
            ));
        }
        Ok(Self {
            key,
            allow_tokenless,
        })
    }

    /// Sign a token for `room`, valid for `ttl`.
    pub fn mint(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        role: Role,
        ttl: Duration,
        permissions: Option<Permissions>,
    ) -> String {
        self.sign(&Claims {
            room: room.to_owned(),
            sub: identity.to_owned(),
            name: name.to_owned(),
            role,
            exp: expiry(ttl),
            permissions,
            title: None,
        })
    }

    /// Sign these claims: for tokens `mint` does not make (a title, say).
    pub fn sign(&self, claims: &Claims) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&self.key),
        )
        .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Admit a join to `room` with `token`, or say why not.
    pub fn admit(&self, room: &str, token: Option<&str>) -> Result<Grant, ProtocolError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            if self.allow_tokenless {
                return Ok(Grant {
                    identity: None,
                    name: None,
                    role: Role::Participant,
                    permissions: Role::Participant.default_permissions(),
                });
            }
            return Err(ProtocolError::new(
                ErrorCode::Unauthorized,
                "this server needs an access token: open the invite link you were given",
            ));
        };
        if token.len() > 4096 {
            return Err(ProtocolError::new(
                ErrorCode::InvalidToken,
                "the access token is too long",
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        let data = decode::<Claims>(token, &DecodingKey::from_secret(&self.key), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => ProtocolError::new(
                    ErrorCode::TokenExpired,
                    "the access token has expired: ask for a new invite link",
                ),
                _ => ProtocolError::new(
                    ErrorCode::InvalidToken,
                    "the access token is not valid for this server",
                ),
            })?;
        let claims = data.claims;
        if claims.room != room {
            return Err(ProtocolError::new(
                ErrorCode::WrongRoom,
                "the access token is for a different room",
            ));
        }
        Ok(Grant {
            identity: Some(claims.sub),
            name: Some(claims.name),
            role: claims.role,
            permissions: claims
                .permissions
                .unwrap_or_else(|| claims.role.default_permissions()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(b"0123456789abcdef0123456789abcdef".to_vec(), false).unwrap()
    }

    #[test]
    fn a_token_admits_its_room_with_its_role() {
        let a = auth();
        let t = a.mint(
            "giao-ban",
            "so-yte-01",
            "Sở Y tế",
            Role::Viewer,
            Duration::from_secs(60),
            None,
        );
        let g = a.admit("giao-ban", Some(&t)).unwrap();
        assert_eq!(g.role, Role::Viewer);
        assert_eq!(g.name.as_deref(), Some("Sở Y tế"));
        assert!(!g.permissions.publish && g.permissions.subscribe);
        assert_eq!(
            a.admit("other", Some(&t)).unwrap_err().code,
            ErrorCode::WrongRoom
        );
    }

    /// The claims a token of `auth()` carries.
    fn claims_of(token: &str) -> Claims {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        decode::<Claims>(
            token,
            &DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            &validation,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn a_title_rides_in_the_token_and_changes_nothing_else() {
        let a = auth();
        let t = a.sign(&Claims {
            title: Some("Giao ban sáng thứ Hai".into()),
            ..claims_of(&a.mint("r", "i", "n", Role::Host, Duration::from_secs(60), None))
        });
        assert_eq!(a.admit("r", Some(&t)).unwrap().role, Role::Host);
        assert_eq!(
            claims_of(&t).title.as_deref(),
            Some("Giao ban sáng thứ Hai")
        );
        // Without one, the claim is absent (older tokens look the same).
        let plain = a.mint("r", "i", "n", Role::Viewer, Duration::from_secs(60), None);
        assert_eq!(claims_of(&plain).title, None);
    }

    #[test]
    fn refusals_have_their_own_codes() {
        let a = auth();
        assert_eq!(
            a.admit("r", None).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            a.admit("r", Some("x.y.z")).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        let other = Auth::new(vec![7u8; 32], false).unwrap();
        let foreign = other.mint("r", "i", "n", Role::Host, Duration::from_secs(60), None);
        assert_eq!(
            a.admit("r", Some(&foreign)).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        let mut tampered = a.mint("r", "i", "n", Role::Viewer, Duration::from_secs(60), None);
        // Flip one character of the payload: the signature no longer matches.
        let dot = tampered.find('.').unwrap() + 5;
        let c = if &tampered[dot..dot + 1] == "A" {
            "B"
        } else {
            "A"
        };
        tampered.replace_range(dot..dot + 1, c);
        assert_eq!(
            a.admit("r", Some(&tampered)).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        let claims = Claims {
            room: "r".into(),
            sub: "i".into(),
            name: "n".into(),
            role: Role::Host,
            exp: now_secs() - 3600,
            permissions: None,
            title: None,
        };
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(
            a.admit("r", Some(&expired)).unwrap_err().code,
            ErrorCode::TokenExpired
        );
    }

    #[test]
    fn tokenless_joins_only_when_allowed_and_the_key_is_never_printed() {
        let dev = Auth::new(vec![1u8; 32], true).unwrap();
        assert_eq!(dev.admit("r", None).unwrap().role, Role::Participant);
        assert!(!format!("{dev:?}").contains("1, 1"));
        assert!(Auth::new(vec![1u8; 8], false).is_err());
    }
}
