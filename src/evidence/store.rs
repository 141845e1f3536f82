//! The object store behind photo evidence, through the S3 API: presigned URLs for the
//! store apps (upload, view) and the requests storeops makes itself (check, read,
//! write a thumbnail, delete), every one signed with SigV4 by `rusty-s3` and sent with
//! the process's reqwest client. rusty-s3 only signs (it does no I/O), so the same
//! signing serves the URLs handed to clients and the requests made here.

use std::time::Duration;

use bytes::Bytes;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::ContentType;
use crate::config::ObjectStoreConfig;

/// What the object store answered, or why it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("object store answered {status} to {what}")]
    Status {
        what: &'static str,
        status: reqwest::StatusCode,
    },
    #[error("object store configuration: {0}")]
    Config(String),
}

/// An upload the store app is allowed to make: `PUT` the photo to `url` with exactly
/// these headers (they are signed: another type or size is refused by the store).
#[derive(Debug, Clone)]
pub struct PresignedUpload {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// What a `HEAD` of an object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
}

/// One bucket of the object store.
#[derive(Clone)]
pub struct ObjectStore {
    bucket: Bucket,
    /// The same bucket by the address the store apps use (presigned URLs).
    public: Bucket,
    credentials: Credentials,
    prefix: String,
    http: reqwest::Client,
}

/// How long a request storeops signs for itself stays valid: it is sent at once.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(60);

impl ObjectStore {
    pub fn new(config: &ObjectStoreConfig) -> Result<Self, StoreError> {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket_at = |endpoint: &str| {
            let url = endpoint
                .parse()
                .map_err(|e| StoreError::Config(format!("endpoint {endpoint}: {e}")))?;
            Bucket::new(url, style, config.bucket.clone(), config.region.clone())
                .map_err(|e| StoreError::Config(format!("bucket {}: {e}", config.bucket)))
        };
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            bucket: bucket_at(&config.endpoint)?,
            public: bucket_at(&config.public_endpoint)?,
            credentials: Credentials::new(
                config.access_key_id.expose(),
                config.secret_access_key.expose(),
            ),
            prefix: config.key_prefix.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The key of an object under this store's prefix.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// A `PUT` URL for exactly `size` bytes of `content_type`, valid for `ttl`.
    pub fn presign_upload(
        &self,
        key: &str,
        content_type: ContentType,
        size: u64,
        ttl: Duration,
    ) -> PresignedUpload {
        let size = size.to_string();
        let mut action = self.public.put_object(Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("content-type", content_type.mime());
        action.headers_mut().insert("content-length", size.as_str());
        PresignedUpload {
            url: action.sign(ttl).to_string(),
            headers: vec![
                ("Content-Type", content_type.mime().to_owned()),
                ("Content-Length", size.clone()),
            ],
        }
    }

    /// A `GET` URL of an object, valid for `ttl`.
    pub fn presign_view(&self, key: &str, ttl: Duration) -> String {
        self.public
            .get_object(Some(&self.credentials), key)
            .sign(ttl)
            .to_string()
    }

    /// The object's size and type, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let response = self.http.head(url).send().await?;
        match response.status() {
            status if status.is_success() => {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Ok(Some(ObjectHead {
                    size: header(reqwest::header::CONTENT_LENGTH)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    content_type: header(reqwest::header::CONTENT_TYPE),
                }))
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status => Err(StoreError::Status {
                what: "HEAD",
                status,
            }),
        }
    }

    /// Up to `limit` bytes of an object from its start (all of it when smaller).
    pub async fn read_prefix(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let response = self
            .http
            .get(url)
            .header(
                reqwest::header::RANGE,
                format!("bytes=0-{}", limit.saturating_sub(1)),
            )
            .send()
            .await?;
        read_body(response, "GET (range)", limit).await
    }

    /// The object, at most its first `limit` bytes.
    pub async fn read(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let response = self.http.get(url).send().await?;
        read_body(response, "GET", limit).await
    }

    /// Writes an object (a thumbnail storeops made).
    pub async fn write(
        &self,
        key: &str,
        content_type: ContentType,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("content-type", content_type.mime());
        let url = action.sign(OWN_REQUEST_TTL);
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type.mime())
            .body(body)
            .send()
            .await?;
        ok_or_status(response.status(), "PUT")
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let response = self.http.delete(url).send().await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(()),
            status => ok_or_status(status, "DELETE"),
        }
    }

    /// Whether the bucket answers with these credentials (readiness, start-up checks).
    pub async fn reachable(&self) -> Result<(), StoreError> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(OWN_REQUEST_TTL);
        let response = self.http.head(url).send().await?;
        ok_or_status(response.status(), "HEAD bucket")
    }

    /// Creates the bucket (tests and local development make their own).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(OWN_REQUEST_TTL);
        let response = self.http.put(url).send().await?;
        match response.status() {
            // Already there, and ours.
            reqwest::StatusCode::CONFLICT => Ok(()),
            status => ok_or_status(status, "create bucket"),
        }
    }
}

fn ok_or_status(status: reqwest::StatusCode, what: &'static str) -> Result<(), StoreError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(StoreError::Status { what, status })
    }
}

/// A response body of at most `limit` bytes, read as it streams.
async fn read_body(
    mut response: reqwest::Response,
    what: &'static str,
    limit: u64,
) -> Result<Bytes, StoreError> {
    let status = response.status();
    if !status.is_success() {
        return Err(StoreError::Status { what, status });
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
