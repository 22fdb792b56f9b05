//! The PKI's cryptography, on the machine running cairn: generating a CA, loading one, issuing
//! leaf certificates (rcgen on aws-lc-rs), and reading certificates back (x509-parser) into the
//! facts the `cert` diff compares. Private keys only ever live in [`SecretPem`] (whose `Debug`
//! is redacted and which has no `Display`) and in rcgen's `KeyPair` (whose `Debug` elides it).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData, RsaKeySize, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::spec::{CaSpec, Duration, KeyType, Subject, Usage};

/// A PEM-encoded private key. Never printed: `Debug` shows `[redacted]`, there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    /// Wraps key PEM text.
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    /// The bytes to write to a 0600 file (and nowhere else).
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The PEM text, to parse.
    pub fn expose_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem([redacted])")
    }
}

/// A certificate with its new private key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: SecretPem,
}

/// A failure of the PKI machinery. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused (key generation, signing, a bad name).
    #[error("{what}: {source}")]
    Rcgen {
        /// What was attempted.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The CA certificate cannot be read.
    #[error("the CA certificate {source}")]
    CaCertificate {
        /// What is wrong with it.
        source: InspectError,
    },
    /// A certificate or key could not be used.
    #[error("{0}")]
    Invalid(String),
}

/// Why PEM text is not a readable certificate. The message is the end of a sentence about the
/// certificate ("is not PEM"): callers put its name first ("the CA certificate is not PEM").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The text is not PEM.
    #[error("is not PEM")]
    NotPem,
    /// The PEM has no `CERTIFICATE` block.
    #[error("contains no CERTIFICATE block")]
    NoCertificate,
    /// The first `CERTIFICATE` block is not a valid X.509 certificate.
    #[error("cannot be parsed")]
    Unparsable,
}

fn rc(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Rcgen { what: what.to_string(), source }
}

/// The DER prefix of an Ed25519 key in PKCS#8 v2 (RFC 5958, with its public key), as aws-lc-rs
/// writes it, up to the 32-byte seed; and the same in v1 (RFC 5208, the seed alone).
const ED25519_PKCS8_V2: [u8; 16] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const ED25519_PKCS8_V1: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A leaf key as PEM every consumer on a host reads: an Ed25519 key in PKCS#8 v1, because
/// OpenSSL 3.0 (Debian bookworm) refuses the v2 form ("unsupported"), and with it the probe's
/// key check and any service built on it. Other key types as rcgen writes them.
fn portable_key_pem(key: &KeyPair) -> String {
    let der = key.serialize_der();
    match der.get(..16).zip(der.get(16..48)) {
        Some((prefix, seed)) if prefix == ED25519_PKCS8_V2 => {
            let mut v1 = ED25519_PKCS8_V1.to_vec();
            v1.extend_from_slice(seed);
            pem::encode(&pem::Pem::new("PRIVATE KEY", v1))
        }
        _ => key.serialize_pem(),
    }
}

/// A subject alternative name, normalised (DNS names lower-case) so sets compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name.
    Dns(String),
}

impl San {
    /// Parses an IP address or (otherwise) a DNS name; the caller has checked the syntax.
    pub fn parse(s: &str) -> San {
        match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Ip(ip) => write!(f, "{ip}"),
            San::Dns(d) => f.write_str(d),
        }
    }
}

/// Generates a private key of `kind`.
pub fn generate_key(kind: KeyType) -> Result<KeyPair, PkiError> {
    let what = "generating a key";
    match kind {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(rc(what)),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096).map_err(rc(what)),
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rc(what)),
        KeyType::Ed25519 => KeyPair::generate_for(&PKCS_ED25519).map_err(rc(what)),
    }
}

/// A random positive serial number of 16 bytes (126 random bits).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Invalid(format!("no randomness for a serial number: {e}")))?;
    // Positive (top bit clear) and exactly 16 bytes long (next bit set).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn distinguished_name(common_name: &str, subject: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (key, value) in subject.fields() {
        let t = match key {
            "C" => DnType::CountryName,
            "ST" => DnType::StateOrProvinceName,
            "L" => DnType::LocalityName,
            "O" => DnType::OrganizationName,
            _ => DnType::OrganizationalUnitName,
        };
        dn.push(t, value);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::seconds(lifetime.secs);
}

/// Generates a self-signed CA: CA:TRUE pathlen 0, keyCertSign + cRLSign, SKI, random serial.
pub fn generate_ca(spec: &CaSpec, now: OffsetDateTime) -> Result<Issued, PkiError> {
    let key = generate_key(spec.key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&spec.common_name, &spec.subject);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, spec.validity);
    let cert = params.self_signed(&key).map_err(rc("signing the CA certificate"))?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: SecretPem(key.serialize_pem()) })
}

/// A CA ready to sign: its certificate and key, checked to belong together.
pub struct LoadedCa {
    /// The CA certificate, PEM, as stored.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for LoadedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCa").field("cert_pem", &self.cert_pem).field("key", &"[redacted]").finish()
    }
}

impl LoadedCa {
    /// Checks that `key` is the key of `cert_pem` and that it is a CA certificate.
    pub fn new(cert_pem: String, key: &SecretPem) -> Result<LoadedCa, PkiError> {
        let info = inspect(&cert_pem).map_err(|source| PkiError::CaCertificate { source })?;
        if !info.is_ca {
            return Err(PkiError::Invalid("the CA certificate is not a CA (no basicConstraints CA:TRUE)".into()));
        }
        let pair = KeyPair::from_pem(key.expose_str())
            .map_err(|_| PkiError::Invalid("the CA key cannot be read (expected an unencrypted PEM private key)".into()))?;
        if !same_public_key(&pair.subject_public_key_info(), &info.spki) {
            return Err(PkiError::Invalid("the CA key does not belong to the CA certificate".into()));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, pair).map_err(rc("reading the CA certificate"))?;
        Ok(LoadedCa { cert_pem, issuer })
    }
}

/// What a leaf certificate must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// Subject CN.
    pub common_name: String,
    /// Other subject fields.
    pub subject: Subject,
    /// SANs.
    pub sans: Vec<San>,
    /// Extended key usages.
    pub usages: Vec<Usage>,
    /// Lifetime.
    pub validity: Duration,
    /// Key type.
    pub key: KeyType,
}

/// Issues a leaf certificate with a new key: CA:FALSE, digitalSignature (+ keyEncipherment for
/// RSA), the asked extended usages, SANs, SKI and AKI, random serial, valid from now-1h.
pub fn issue(ca: &LoadedCa, req: &LeafRequest, now: OffsetDateTime) -> Result<Issued, PkiError> {
    let key = generate_key(req.key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&req.common_name, &req.subject);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(req.key, KeyType::Rsa2048 | KeyType::Rsa4096) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = req
        .usages
        .iter()
        .map(|u| match u {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    for san in &req.sans {
        params.subject_alt_names.push(match san {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(d) => SanType::DnsName(d.clone().try_into().map_err(rc("a DNS name"))?),
        });
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, now, req.validity);
    let cert = params.signed_by(&key, &ca.issuer).map_err(rc("signing the certificate"))?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: SecretPem(portable_key_pem(&key)) })
}

/// What a certificate says, as far as the `cert` diff cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// Subject CN.
    pub common_name: Option<String>,
    /// Subject fields other than CN, in DN order.
    pub subject: Vec<(String, String)>,
    /// SANs.
    pub sans: BTreeSet<San>,
    /// Extended key usages cairn manages.
    pub usages: BTreeSet<Usage>,
    /// Expiry, seconds since the epoch.
    pub not_after: i64,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// The key type, when it is one cairn makes.
    pub key: Option<KeyType>,
}

/// Reads the first certificate of PEM text. The error says what is wrong ("cannot be parsed").
pub fn inspect(pem_text: &str) -> Result<CertInfo, InspectError> {
    let block = pem::parse_many(pem_text)
        .map_err(|_| InspectError::NotPem)?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .ok_or(InspectError::NoCertificate)?;
    let der = block.contents().to_vec();
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| InspectError::Unparsable)?;
    let mut sans = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    sans.insert(San::Dns(d.trim_end_matches('.').to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.insert(San::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    let mut usages = BTreeSet::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.insert(Usage::Server);
        }
        if eku.value.client_auth {
            usages.insert(Usage::Client);
        }
    }
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let subject = cert
        .subject()
        .iter_attributes()
        .filter_map(|a| {
            let key = match a.attr_type().to_id_string().as_str() {
                "2.5.4.6" => "C",
                "2.5.4.8" => "ST",
                "2.5.4.7" => "L",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                _ => return None,
            };
            Some((key.to_string(), a.as_str().ok()?.to_string()))
        })
        .collect();
    let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
    let key = key_type(&cert);
    let not_after = cert.validity().not_after.timestamp();
    Ok(CertInfo { spki, common_name, subject, sans, usages, not_after, is_ca, key, der: der.clone() })
}

fn key_type(cert: &X509Certificate<'_>) -> Option<KeyType> {
    let pki = &cert.tbs_certificate.subject_pki;
    match pki.algorithm.algorithm.to_id_string().as_str() {
        "1.3.101.112" => Some(KeyType::Ed25519),
        "1.2.840.10045.2.1" => {
            let curve = pki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            (curve.as_deref() == Some("1.2.840.10045.3.1.7")).then_some(KeyType::EcdsaP256)
        }
        "1.2.840.113549.1.1.1" => match pki.parsed() {
            Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
                2048 => Some(KeyType::Rsa2048),
                4096 => Some(KeyType::Rsa4096),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether the certificate `der` was issued by the CA certificate `ca_der` (issuer name matches
/// the CA's subject and the signature verifies with the CA's key).
pub fn issued_by(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(der), X509Certificate::from_der(ca_der)) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Whether two SubjectPublicKeyInfo (DER) hold the same key: same algorithm, same key bits
/// (encoders differ in details such as parameters, so the DER is not compared whole).
pub fn same_public_key(a: &[u8], b: &[u8]) -> bool {
    use x509_parser::x509::SubjectPublicKeyInfo;
    let (Ok((_, a)), Ok((_, b))) = (SubjectPublicKeyInfo::from_der(a), SubjectPublicKeyInfo::from_der(b)) else {
        return false;
    };
    a.algorithm.algorithm == b.algorithm.algorithm && a.subject_public_key.data == b.subject_public_key.data
}

/// The SubjectPublicKeyInfo (DER) of a `PUBLIC KEY` PEM block, as `openssl pkey -pubout` prints.
pub fn spki_of_public_key_pem(text: &str) -> Option<Vec<u8>> {
    let block = pem::parse(text).ok()?;
    (block.tag() == "PUBLIC KEY").then(|| block.contents().to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::CaSource;

    pub(crate) fn ca_spec(name: &str, key: KeyType) -> CaSpec {
        CaSpec {
            name: name.into(),
            common_name: name.into(),
            subject: Subject { organization: Some("etcd".into()), organizational_unit: Some("Etcd Security".into()), ..Subject::default() },
            key,
            validity: Duration::parse("100y").unwrap(),
            source: CaSource::Store { dir: "/nonexistent".into() },
            age_recipients: Vec::new(),
            span: crate::spec::Span::new(crate::spec::FileId(0), 0..0),
        }
    }

    pub(crate) fn leaf(sans: &[&str], usages: &[Usage]) -> LeafRequest {
        LeafRequest {
            common_name: "etcd-1".into(),
            subject: Subject::default(),
            sans: sans.iter().map(|s| San::parse(s)).collect(),
            usages: usages.to_vec(),
            validity: Duration::parse("10y").unwrap(),
            key: KeyType::EcdsaP256,
        }
    }

    pub(crate) fn loaded(ca: &Issued) -> LoadedCa {
        LoadedCa::new(ca.cert_pem.clone(), &ca.key_pem).unwrap()
    }

    #[test]
    fn ca_and_leaf_have_the_right_extensions() {
        let now = OffsetDateTime::now_utc();
        let ca = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now).unwrap();
        let info = inspect(&ca.cert_pem).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.common_name.as_deref(), Some("etcd"));
        assert_eq!(info.subject, vec![("O".to_string(), "etcd".to_string()), ("OU".to_string(), "Etcd Security".to_string())]);
        let issued = issue(&loaded(&ca), &leaf(&["127.0.0.1", "localhost", "::1"], &[Usage::Server, Usage::Client]), now).unwrap();
        let li = inspect(&issued.cert_pem).unwrap();
        assert!(!li.is_ca);
        assert_eq!(li.sans.iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["127.0.0.1", "::1", "localhost"]);
        assert_eq!(li.usages, [Usage::Server, Usage::Client].into_iter().collect());
        assert_eq!(li.key, Some(KeyType::EcdsaP256));
        assert!(issued_by(&li.der, &info.der));
        assert!(li.not_after > now.unix_timestamp() + 9 * 365 * 86_400);
        // A new serial every time, even for the same request.
        let again = issue(&loaded(&ca), &leaf(&["127.0.0.1"], &[Usage::Server]), now).unwrap();
        let (_, a) = X509Certificate::from_der(&li.der).unwrap();
        let b_der = inspect(&again.cert_pem).unwrap().der;
        let (_, b) = X509Certificate::from_der(&b_der).unwrap();
        assert_ne!(a.raw_serial(), b.raw_serial());
        assert!(a.raw_serial().len() >= 8 && a.raw_serial()[0] & 0x80 == 0);
    }

    #[test]
    fn an_ed25519_leaf_key_is_written_as_pkcs8_v1_and_still_matches_its_certificate() {
        let ca = generate_ca(&ca_spec("etcd", KeyType::Ed25519), OffsetDateTime::now_utc()).unwrap();
        let mut req = leaf(&["127.0.0.1"], &[Usage::Server]);
        req.key = KeyType::Ed25519;
        let issued = issue(&loaded(&ca), &req, OffsetDateTime::now_utc()).unwrap();
        let der = pem::parse(issued.key_pem.expose_str()).unwrap().into_contents();
        assert_eq!((der.len(), &der[..16]), (48, &ED25519_PKCS8_V1[..]));
        let pair = KeyPair::from_pem(issued.key_pem.expose_str()).unwrap();
        let info = inspect(&issued.cert_pem).unwrap();
        assert!(same_public_key(&pair.subject_public_key_info(), &info.spki));
        // OpenSSL on the lab hosts (and here) reads it; the v2 form it refuses.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("k.pem"), issued.key_pem.expose_bytes()).unwrap();
        if let Ok(out) = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(tmp.path().join("k.pem")).output() {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn rsa_keys_are_generated_and_detected() {
        let now = OffsetDateTime::now_utc();
        let ca = generate_ca(&ca_spec("etcd", KeyType::Rsa2048), now).unwrap();
        assert_eq!(inspect(&ca.cert_pem).unwrap().key, Some(KeyType::Rsa2048));
        let mut req = leaf(&["10.0.0.1"], &[Usage::Server]);
        req.key = KeyType::Rsa2048;
        let issued = issue(&loaded(&ca), &req, now).unwrap();
        assert_eq!(inspect(&issued.cert_pem).unwrap().key, Some(KeyType::Rsa2048));
    }

    #[test]
    fn another_cas_certificate_is_not_issued_by_this_one() {
        let now = OffsetDateTime::now_utc();
        let a = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now).unwrap();
        let b = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now).unwrap();
        let issued = issue(&loaded(&a), &leaf(&["localhost"], &[Usage::Server]), now).unwrap();
        let der = inspect(&issued.cert_pem).unwrap().der;
        assert!(issued_by(&der, &inspect(&a.cert_pem).unwrap().der));
        // Same subject, other key: the signature check catches it.
        assert!(!issued_by(&der, &inspect(&b.cert_pem).unwrap().der));
    }

    #[test]
    fn unreadable_certificates_say_why() {
        assert_eq!(inspect("").unwrap_err().to_string(), "contains no CERTIFICATE block");
        assert_eq!(inspect("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err().to_string(), "cannot be parsed");
        let ca = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), OffsetDateTime::now_utc()).unwrap();
        let err = LoadedCa::new(String::new(), &ca.key_pem).unwrap_err().to_string();
        assert_eq!(err, "the CA certificate contains no CERTIFICATE block");
    }

    #[test]
    fn a_ca_key_must_match_its_certificate() {
        let now = OffsetDateTime::now_utc();
        let a = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now).unwrap();
        let b = generate_ca(&ca_spec("etcd", KeyType::EcdsaP256), now).unwrap();
        let err = LoadedCa::new(a.cert_pem.clone(), &b.key_pem).unwrap_err().to_string();
        assert_eq!(err, "the CA key does not belong to the CA certificate");
        assert!(!format!("{:?}", loaded(&a)).contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
        assert!(a.key_pem.expose_str().contains("PRIVATE KEY"));
    }
}
