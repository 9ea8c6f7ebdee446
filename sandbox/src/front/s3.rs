//! What the front adds to moto's S3 (served to redisctl's state backend through the same
//! endpoint as EC2, requests without an EC2 `Action`), where moto 5.2.5 differs from S3:
//!
//! - **GetBucketVersioning** answers with the root element `GetBucketVersioningResponse`; S3
//!   answers `VersioningConfiguration` (the AWS SDKs check the root and fail on moto's).
//! - **PutObject with SSE-KMS** naming a key KMS does not have is stored by moto; S3 refuses
//!   it (`KMS.NotFoundException`, 400).

use bytes::Bytes;
use hyper::{HeaderMap, Method};

/// The KMS key a request asks S3 to encrypt with, if any.
pub fn kms_key(method: &Method, headers: &HeaderMap) -> Option<String> {
    if *method != Method::PUT && *method != Method::POST {
        return None;
    }
    headers
        .get("x-amz-server-side-encryption-aws-kms-key-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The body of S3's refusal of an unknown KMS key.
pub fn kms_not_found(key: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>KMS.NotFoundException</Code><Message>Invalid keyId '{key}'</Message></Error>"
    )
}

/// moto's answer made S3's.
pub fn fix_response(method: &Method, path: &str, body: Bytes) -> Bytes {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let versioning = *method == Method::GET
        && query
            .split('&')
            .any(|p| p == "versioning" || p.starts_with("versioning="));
    if !versioning {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    if !text.contains("<GetBucketVersioningResponse") {
        return body;
    }
    Bytes::from(
        text.replace("<GetBucketVersioningResponse", "<VersioningConfiguration")
            .replace(
                "</GetBucketVersioningResponse>",
                "</VersioningConfiguration>",
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioning_root_is_s3s() {
        let moto = Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<GetBucketVersioningResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></GetBucketVersioningResponse>");
        let fixed = fix_response(&Method::GET, "/b?versioning", moto.clone());
        assert_eq!(
            String::from_utf8_lossy(&fixed),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>"
        );
        assert_eq!(fix_response(&Method::GET, "/b/key", moto.clone()), moto);
    }
}
