//! S3 (and S3-compatible stores: SeaweedFS, MinIO, Ceph RGW, R2...) as the store of an image.
//!
//! Owns: parsing `s3://BUCKET/PREFIX`, and building object_store's S3 client with Folio's
//! settings: path-style requests to a given endpoint (plain HTTP allowed when the endpoint says
//! `http://`), credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN` (anonymous requests if they are not set — never the instance metadata
//! service, so nothing is sent beyond the endpoint), the region from `--region`,
//! `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`), the endpoint from `--endpoint`
//! or `AWS_ENDPOINT_URL`. object_store's own retries are off: `retry.rs` retries.
//!
//! Does not own: anything about images.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{ObjResult, ObjectError};
use crate::retry::RetryPolicy;

/// Where an image lives in S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The image's prefix in the bucket (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET/PREFIX` (`s3://BUCKET` for the bucket's root). `None` if `spec` is
    /// not an `s3://` URL at all; an error if it is a bad one.
    pub fn parse(spec: &str) -> Option<ObjResult<S3Location>> {
        let rest = spec.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !ok {
            return Some(Err(ObjectError::Invalid(format!(
                "bad bucket name {bucket:?} in {spec}: 3 to 63 lower-case letters, digits, \
                 dots and dashes"
            ))));
        }
        Some(Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }
}

/// Connection settings of an S3 store.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// The endpoint URL (`http://127.0.0.1:8333`); AWS's own when `None` and
    /// `AWS_ENDPOINT_URL` is not set.
    pub endpoint: Option<String>,
    /// The region.
    pub region: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The S3 client for `location`'s bucket.
pub fn s3_store(
    location: &S3Location,
    opts: &S3Options,
    retry: &RetryPolicy,
) -> ObjResult<Arc<dyn ObjectStore>> {
    // reqwest's rustls has no built-in crypto provider here (see Cargo.toml): use ring. An
    // error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let endpoint = opts.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL"));
    let region = opts
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let client = ClientOptions::new()
        .with_allow_http(http)
        .with_timeout(retry.attempt_timeout)
        .with_connect_timeout(Duration::from_secs(5));
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&location.bucket)
        .with_region(region)
        .with_client_options(client)
        .with_retry(RetryConfig {
            max_retries: 0,
            retry_timeout: retry.attempt_timeout,
            ..RetryConfig::default()
        });
    if let Some(e) = endpoint {
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = env("AWS_SESSION_TOKEN") {
                b = b.with_token(token);
            }
        }
        _ => {
            tracing::warn!("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set: anonymous requests");
            b = b.with_skip_signature(true);
        }
    }
    let store = b
        .build()
        .map_err(|e| ObjectError::Invalid(format!("cannot set up the S3 client: {e}")))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_and_bad_buckets_are_refused() {
        assert!(S3Location::parse("/tmp/x.img").is_none());
        let l = S3Location::parse("s3://my-bucket/images/vm1/")
            .unwrap()
            .unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-bucket", "images/vm1")
        );
        let root = S3Location::parse("s3://abc").unwrap().unwrap();
        assert_eq!(root.prefix, "");
        for bad in ["s3://ab/x", "s3://Upper/x", "s3:///x", "s3://a_b/x"] {
            assert!(S3Location::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
