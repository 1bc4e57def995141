//! SigV4 verification: the lab checks every AWS request's signature against its credentials,
//! so a client with the wrong secret gets the same rejection AWS would give.
//!
//! The canonical request is rebuilt from exactly the headers the client says it signed
//! (`SignedHeaders`), the path (encoded once more, as non-S3 services expect), the sorted query
//! and the payload hash; the key is derived from the secret and the credential scope.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Why a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header (or not SigV4).
    Missing,
    /// The access key id is not the lab's.
    UnknownAccessKey,
    /// The header is malformed.
    Malformed(String),
    /// The signature does not match.
    Mismatch,
}

/// What the verifier needs from a request.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Header (lowercase name, value) pairs.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

/// The credential scope of a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// Verify a request against the lab's credentials (`secret_for` gives the secret of an access
/// key id the lab issued); returns the credential scope on success.
pub fn verify(request: &SignedRequest<'_>, secret_for: &dyn Fn(&str) -> Option<String>) -> Result<Scope, Rejection> {
    let header = |name: &str| request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let authorization = header("authorization").ok_or(Rejection::Missing)?;
    let fields = authorization.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(Rejection::Missing)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in fields.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(Rejection::Malformed("Authorization header lacks Credential, SignedHeaders or Signature".into()));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = parts[..] else {
        return Err(Rejection::Malformed(format!("credential scope has {} parts, not 5", parts.len())));
    };
    if terminator != "aws4_request" {
        return Err(Rejection::Malformed("credential scope must end in aws4_request".into()));
    }
    let Some(secret) = secret_for(key_id) else {
        return Err(Rejection::UnknownAccessKey);
    };
    let amz_date = header("x-amz-date").ok_or_else(|| Rejection::Malformed("missing X-Amz-Date".into()))?;

    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = match header("x-amz-content-sha256") {
        Some(hash) => hash.to_owned(),
        None => hex::encode(Sha256::digest(request.body)),
    };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        encode(request.path, false),
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if expected == signature {
        Ok(Scope { access_key_id: key_id.to_owned(), region: region.to_owned(), service: service.to_owned() })
    } else {
        Err(Rejection::Mismatch)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it; `/` is kept unless `encode_slash`.
fn encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Decode `%XX` escapes and `+` (form encoding) into text.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(&percent_decode(k), true), encode(&percent_decode(v), true))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example (IAM ListUsers, "Signature Version 4 signing process").
    #[test]
    fn verifies_the_aws_documentation_example() {
        let request = SignedRequest {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: vec![
                ("content-type".into(), "application/x-www-form-urlencoded; charset=utf-8".into()),
                ("host".into(), "iam.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
                (
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date, \
                     Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                        .into(),
                ),
            ],
            body: b"",
        };
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let only = |key: &'static str, secret: &'static str| move |id: &str| (id == key).then(|| secret.to_owned());
        assert_eq!(
            verify(&request, &only("AKIDEXAMPLE", secret)),
            Ok(Scope { access_key_id: "AKIDEXAMPLE".into(), region: "us-east-1".into(), service: "iam".into() })
        );
        assert_eq!(verify(&request, &only("AKIDEXAMPLE", "wrong")), Err(Rejection::Mismatch));
        assert_eq!(verify(&request, &only("OTHER", secret)), Err(Rejection::UnknownAccessKey));
    }

    #[test]
    fn query_is_sorted_and_strictly_encoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(encode("/fn/a:b", false), "/fn/a%3Ab");
    }
}
