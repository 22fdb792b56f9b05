//! The spec model of the PKI kinds: `[ca.NAME]` (a certificate authority kept on the machine
//! running cairn) and `[cert.NAME]` (a certificate and private key issued by such a CA onto each
//! selected host). Only data here: reading the tables is in `load/pki.rs`, certificates are made
//! in `resource/ca.rs` and `resource/cert.rs`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use super::diagnostic::{Diagnostic, Located, Span};
use super::template::TemplateText;

/// A key algorithm and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, as written in a spec.
    pub const ALL: &'static [KeyType] = &[KeyType::Rsa2048, KeyType::Rsa4096, KeyType::EcdsaP256, KeyType::Ed25519];

    /// The spec spelling (`rsa-2048`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Parses the spec spelling.
    pub fn parse(s: &str) -> Option<KeyType> {
        KeyType::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a leaf certificate may be used for (its extended key usages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// TLS server authentication (serverAuth).
    Server,
    /// TLS client authentication (clientAuth).
    Client,
}

impl Usage {
    /// Every usage, as written in a spec.
    pub const ALL: &'static [Usage] = &[Usage::Server, Usage::Client];

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Server => "server",
            Usage::Client => "client",
        }
    }

    /// Parses the spec spelling.
    pub fn parse(s: &str) -> Option<Usage> {
        Usage::ALL.iter().copied().find(|u| u.as_str() == s)
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span of time written as `100y`, `10y`, `30d`, `12h` (a year is 365 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration {
    /// Length in seconds.
    pub secs: i64,
}

impl Duration {
    /// Parses `<number><unit>` groups (`1y`, `90d`, `1y30d`); units `y`, `w`, `d`, `h`.
    pub fn parse(s: &str) -> Option<Duration> {
        let mut secs: i64 = 0;
        let mut digits = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                'y' => 365 * 86_400,
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                _ => return None,
            };
            let n: i64 = digits.parse().ok()?;
            secs = secs.checked_add(n.checked_mul(unit)?)?;
            digits.clear();
            any = true;
        }
        (any && digits.is_empty() && secs > 0).then_some(Duration { secs })
    }

    /// Whole days (rounded down).
    pub fn days(self) -> i64 {
        self.secs / 86_400
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.secs / 86_400;
        let h = (self.secs % 86_400) / 3_600;
        match (d, h) {
            (0, h) => write!(f, "{h}h"),
            (d, 0) if d % 365 == 0 => write!(f, "{}y", d / 365),
            (d, 0) => write!(f, "{d}d"),
            (d, h) => write!(f, "{d}d{h}h"),
        }
    }
}

/// Distinguished-name fields beside the common name (`subject = { O = "etcd", … }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// `O`: organization.
    pub organization: Option<String>,
    /// `OU`: organizational unit.
    pub organizational_unit: Option<String>,
    /// `C`: country.
    pub country: Option<String>,
    /// `ST`: state or province.
    pub state: Option<String>,
    /// `L`: locality.
    pub locality: Option<String>,
}

impl Subject {
    /// The subject keys a spec may use, in DN order.
    pub const KEYS: &'static [&'static str] = &["C", "ST", "L", "O", "OU"];

    /// `(key, value)` pairs that are set, in DN order (C, ST, L, O, OU).
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        [("C", &self.country), ("ST", &self.state), ("L", &self.locality), ("O", &self.organization), ("OU", &self.organizational_unit)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }
}

/// Where a CA's certificate and key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Generated by cairn on first use and kept in this directory (`ca.pem`, `ca-key.pem`).
    Store {
        /// The CA's directory, e.g. `.cairn/pki/etcd`.
        dir: PathBuf,
    },
    /// Existing files, used where they are and never written (`cert_file`, `key_file`).
    Imported {
        /// The CA certificate (PEM).
        cert_file: PathBuf,
        /// The CA private key (PEM, PKCS#8 or PKCS#1/SEC1).
        key_file: PathBuf,
    },
}

/// `[ca.NAME]`: a certificate authority on the machine running cairn. It has no hosts: it is not
/// a graph instance, and is created (when missing) by the first certificate that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    /// The table key (`etcd` for `[ca.etcd]`).
    pub name: String,
    /// Subject common name.
    pub common_name: String,
    /// Other subject fields.
    pub subject: Subject,
    /// Key type of a generated CA.
    pub key: KeyType,
    /// Lifetime of a generated CA.
    pub validity: Duration,
    /// Generated in a store, or imported.
    pub source: CaSource,
    /// The table header's position.
    pub span: Span,
}

/// `[cert.NAME]`: a certificate and its private key on each selected host, issued by a CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The issuing CA, as written (`ca.etcd`); resolved into `issuer` once the spec is loaded.
    pub ca: Located<String>,
    /// The issuing CA's spec (filled in after loading: every `ca` names a defined `[ca.*]`).
    pub issuer: Option<Box<CaSpec>>,
    /// Subject common name (templated).
    pub common_name: TemplateText,
    /// Other subject fields.
    pub subject: Subject,
    /// Subject alternative names (each templated; IPs or DNS names once rendered).
    pub sans: Vec<TemplateText>,
    /// Extended key usages.
    pub usages: Vec<Usage>,
    /// Lifetime of an issued certificate.
    pub validity: Duration,
    /// Reissue when the certificate expires sooner than this.
    pub renew_before: Duration,
    /// Key type; default: the CA's.
    pub key: Option<KeyType>,
    /// Where the certificate goes (absolute, templated).
    pub cert_path: TemplateText,
    /// Where the private key goes (absolute, templated); written 0600.
    pub key_path: TemplateText,
    /// Where the CA certificate goes, if anywhere (absolute, templated).
    pub ca_path: Option<TemplateText>,
    /// Owner of the three files.
    pub owner: Option<Located<String>>,
    /// Group of the three files.
    pub group: Option<Located<String>>,
}

/// The diagnostic for a SAN that is neither an IP address nor a DNS name (`host`: where it was
/// rendered, for templated ones).
pub fn san_error(span: &Span, value: &str, why: &str, host: Option<&str>) -> Diagnostic {
    let shown = match host {
        Some(h) => format!("`{value}` (on host {h})"),
        None => format!("`{value}`"),
    };
    Diagnostic::at(span, format!("SAN {shown} is neither an IP address nor a DNS name"))
        .with_label(why.to_string())
        .with_help("write an IPv4/IPv6 address (\"10.0.0.241\") or a DNS name of letters, digits, `-` and `.` (\"etcd-1.example.org\")")
}

/// Checks that `s` is an IP address or a DNS name (`*.` wildcard allowed as the first label).
pub fn check_san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    for (i, label) in name.split('.').enumerate() {
        if i == 0 && label == "*" {
            continue;
        }
        if label.is_empty() {
            return Err("empty label (two dots in a row?)".into());
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!("`{c}` is not allowed in a DNS name"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    if name.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err("looks like an IP address but is not a valid one".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("100y").map(|d| d.days()), Some(36_500));
        assert_eq!(Duration::parse("30d").map(|d| d.secs), Some(30 * 86_400));
        assert_eq!(Duration::parse("12h").map(|d| d.secs), Some(43_200));
        assert_eq!(Duration::parse("1y30d").map(|d| d.days()), Some(395));
        for bad in ["", "10", "y", "10 y", "30days", "1.5y", "0d", "-1d", "99999999999999999999y"] {
            assert_eq!(Duration::parse(bad), None, "{bad}");
        }
        assert_eq!(Duration::parse("10y").unwrap().to_string(), "10y");
        assert_eq!(Duration::parse("36h").unwrap().to_string(), "1d12h");
    }

    #[test]
    fn sans() {
        for good in ["127.0.0.1", "::1", "fe80::1", "localhost", "etcd-1.example.org", "*.example.org", "node1."] {
            assert_eq!(check_san(good), Ok(()), "{good}");
        }
        for bad in ["", "not a name", "-x.org", "a..b", "10.0.0.256", "x_y.org", "*.*.org", "https://x"] {
            assert!(check_san(bad).is_err(), "{bad}");
        }
    }
}
