//! Who a NATS client says it is in its `CONNECT`: user and password, a token, an NKey
//! seed (the server's nonce signed with Ed25519), or a user JWT with its seed (also read
//! from a `.creds` file as `nsc` writes it); and the NKey encoding itself.

use super::NatsConfig;
use crate::error::{Error, Result};
use crate::wire::json::{quote, Value};

impl NatsConfig {
    /// Reads a NATS `.creds` file (a user JWT and its NKey seed, as `nsc` writes them)
    /// into `jwt` and `seed`.
    pub fn load_creds(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read nats creds {}", path.display()), e))?;
        let (jwt, seed) = parse_creds(&text).ok_or_else(|| {
            Error::Invalid(format!(
                "nats creds {}: expected a \"NATS USER JWT\" and a \"USER NKEY SEED\" block",
                path.display()
            ))
        })?;
        nkey::KeyPair::from_seed(&seed)
            .map_err(|e| Error::Invalid(format!("nats creds {}: {e}", path.display())))?;
        self.jwt = Some(jwt);
        self.seed = Some(seed);
        Ok(())
    }
}

/// The JWT and the seed of a `.creds` file: the first line inside each
/// `-----BEGIN ...-----` / `------END ...------` block.
pub(super) fn parse_creds(text: &str) -> Option<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        if l.starts_with("---") && l.contains("BEGIN") {
            let body = lines.by_ref().find(|l| !l.is_empty())?;
            blocks.push((l.to_string(), body.to_string()));
        }
    }
    let jwt = blocks.iter().find(|(h, _)| h.contains("JWT"))?.1.clone();
    let seed = blocks.iter().find(|(h, _)| h.contains("SEED"))?.1.clone();
    Some((jwt, seed))
}

/// The `CONNECT` options for `cfg` (the server's `info` holds the nonce an NKey signs;
/// `target` names the server in errors), and the key pair that signed, if any.
pub(super) fn connect_options(
    cfg: &NatsConfig,
    info: Option<&Value>,
    target: &str,
) -> Result<(String, Option<nkey::KeyPair>)> {
    let mut connect = String::from(
        "{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"lang\":\"rust\",\"version\":\"",
    );
    connect.push_str(env!("CARGO_PKG_VERSION"));
    connect.push_str("\",\"protocol\":1");
    if let Some(u) = &cfg.username {
        connect.push_str(&format!(",\"user\":{}", quote(u)));
    }
    if let Some(p) = &cfg.password {
        connect.push_str(&format!(",\"pass\":{}", quote(p)));
    }
    if let Some(t) = &cfg.token {
        connect.push_str(&format!(",\"auth_token\":{}", quote(t)));
    }
    let nkey = match (&cfg.seed, &cfg.jwt) {
        (Some(seed), _) => {
            Some(nkey::KeyPair::from_seed(seed).map_err(|e| Error::Invalid(format!("nats: {e}")))?)
        }
        (None, Some(_)) => {
            return Err(Error::Invalid(
                "nats: a user JWT needs its seed (`seed`, or a `creds` file)".into(),
            ))
        }
        (None, None) => None,
    };
    if let Some(kp) = &nkey {
        let nonce = info
            .and_then(|i| i.get("nonce"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} sent no nonce to sign: it does not use NKey or JWT authentication (use username/password or token)",
                    target
                ))
            })?;
        let sig = kp.sign(nonce.as_bytes());
        match &cfg.jwt {
            Some(jwt) => connect.push_str(&format!(",\"jwt\":{}", quote(jwt))),
            None => connect.push_str(&format!(",\"nkey\":{}", quote(&kp.public_key()))),
        }
        connect.push_str(&format!(",\"sig\":{}", quote(&sig)));
    }
    connect.push('}');
    Ok((connect, nkey))
}

/// How a refusal names the credentials that were refused (never a secret).
pub(super) fn who(cfg: &NatsConfig, nkey: Option<&nkey::KeyPair>) -> String {
    match (&cfg.username, &cfg.jwt, nkey) {
        (Some(u), _, _) => format!(" as user {u:?}"),
        (None, Some(_), _) => " with the user JWT".into(),
        (None, None, Some(kp)) => format!(" as nkey {}", kp.public_key()),
        _ if cfg.token.is_some() => " with a token".into(),
        _ => " without credentials".into(),
    }
}

/// NKeys: Ed25519 keys written in base32 with a type prefix and a CRC-16 (the NATS
/// `nkeys` encoding).
pub(crate) mod nkey {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    const PREFIX_SEED: u8 = 18 << 3;
    const PREFIX_USER: u8 = 20 << 3;
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// CRC-16/XMODEM, as nkeys checks its encodings.
    fn crc16(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    fn b32_encode(data: &[u8]) -> String {
        let mut out = String::new();
        let (mut acc, mut bits) = (0u32, 0);
        for &b in data {
            acc = acc << 8 | b as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(B32[(acc >> bits) as usize & 31] as char);
            }
        }
        if bits > 0 {
            out.push(B32[(acc << (5 - bits)) as usize & 31] as char);
        }
        out
    }

    fn b32_decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes() {
            let v = B32.iter().position(|&b| b == c)? as u32;
            acc = (acc << 5 | v) & 0xffff;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }

    /// A user key pair from its seed.
    pub(crate) struct KeyPair {
        pair: Ed25519KeyPair,
    }

    impl std::fmt::Debug for KeyPair {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "KeyPair({})", self.public_key())
        }
    }

    impl KeyPair {
        /// Decodes a user seed (`SU...`); the error says what is wrong, never the seed.
        pub(crate) fn from_seed(seed: &str) -> Result<KeyPair, String> {
            let raw = b32_decode(seed.trim()).ok_or("the nkey seed is not base32")?;
            if raw.len() != 36 {
                return Err("the nkey seed has the wrong length".into());
            }
            let (body, sum) = raw.split_at(34);
            if crc16(body) != u16::from_le_bytes([sum[0], sum[1]]) {
                return Err("the nkey seed's checksum does not match".into());
            }
            if body[0] & 0xf8 != PREFIX_SEED {
                return Err("not an nkey seed (it must start with S)".into());
            }
            let kind = (body[0] & 7) << 5 | (body[1] & 0xf8) >> 3;
            if kind != PREFIX_USER {
                return Err("not a user nkey seed (it must start with SU)".into());
            }
            let pair = Ed25519KeyPair::from_seed_unchecked(&body[2..34])
                .map_err(|_| "the nkey seed is not a valid Ed25519 seed".to_string())?;
            Ok(KeyPair { pair })
        }

        /// The public key, `U...`.
        pub(crate) fn public_key(&self) -> String {
            let mut raw = vec![PREFIX_USER];
            raw.extend_from_slice(self.pair.public_key().as_ref());
            let sum = crc16(&raw);
            raw.extend_from_slice(&sum.to_le_bytes());
            b32_encode(&raw)
        }

        /// The 32 bytes of the Ed25519 public key.
        #[cfg(test)]
        pub(crate) fn raw_public_key(&self) -> Vec<u8> {
            self.pair.public_key().as_ref().to_vec()
        }

        /// Ed25519 signature of `msg`, base64url without padding (what `CONNECT` wants).
        pub(crate) fn sign(&self, msg: &[u8]) -> String {
            crate::wire::base64::encode_url(self.pair.sign(msg).as_ref(), false)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Seed/public pairs published by NATS (its documentation and the nats crate's
        /// tests), and a signature that verifies with the public key.
        #[test]
        fn published_seed_public_pairs() {
            for (seed, public) in [
                (
                    "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY",
                    "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
                ),
                (
                    "SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY",
                    "UAMMBNV2EYR65NYZZ7IAK5SIR5ODNTTERJOBOF4KJLMWI45YOXOSWULM",
                ),
            ] {
                let kp = KeyPair::from_seed(seed).unwrap();
                assert_eq!(kp.public_key(), public);
                let sig = kp.sign(b"nonce-123");
                let raw =
                    crate::wire::base64::decode(&sig.replace('-', "+").replace('_', "/")).unwrap();
                let pk = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ED25519,
                    kp.pair.public_key().as_ref().to_vec(),
                );
                assert!(pk.verify(b"nonce-123", &raw).is_ok());
            }
        }

        #[test]
        fn bad_seeds_are_refused() {
            let good = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
            let mut flipped = good.to_string();
            flipped.replace_range(10..11, "A");
            assert!(KeyPair::from_seed(&flipped)
                .unwrap_err()
                .contains("checksum"));
            assert!(KeyPair::from_seed("SU!!").is_err());
            assert!(KeyPair::from_seed(&good[..40]).is_err());
            // A public key is not a seed.
            assert!(
                KeyPair::from_seed("UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4")
                    .is_err()
            );
        }
    }
}
