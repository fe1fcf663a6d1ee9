//! Object storage, chosen by URL.
//!
//! The broker's durable home for data is an object store: `file://` (a local directory, the
//! default under the data directory), `memory://` (tests), and `s3://bucket/prefix` (AWS S3 or
//! any S3-compatible server, configured by the standard AWS environment variables). This crate turns the `--object-store` URL into an `object_store::ObjectStore` plus the
//! key prefix under which Sediment keeps its files, and checks at start-up that the store is
//! usable, so a typo fails `sediment serve` at once instead of at the first upload.

use std::sync::Arc;

pub mod local;
pub mod segment;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

/// Why an object store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object store url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("object store url scheme {0:?} is not supported (use s3://, file:// or memory://)")]
    Unsupported(String),
    #[error("object store at {url} is not usable: {source}")]
    Unusable {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object store and the prefix Sediment writes under.
#[derive(Clone, Debug)]
pub struct Store {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    pub url: String,
    /// The same store when it is a `file://` directory: segments are written to it directly
    /// ([`segment::ObjectWrite::local`]).
    pub local: Option<LocalStore>,
}

/// A `file://` store's filesystem and root directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    pub fs: Arc<LocalFileSystem>,
    pub root: std::path::PathBuf,
}

/// S3 settings from a config file, under the names AWS tools use (`aws_endpoint_url`, ...). The
/// environment wins where both are set, as with the AWS CLI.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub aws_endpoint_url: Option<String>,
    pub aws_region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    pub aws_allow_http: Option<bool>,
}

/// Builds the store for `url`. `file://` directories are created if missing.
pub fn from_url(url: &str) -> Result<Store, StorageError> {
    from_url_with(url, &S3Settings::default())
}

/// [`from_url`], with S3 settings from a config file under the environment's.
pub fn from_url_with(url: &str, s3_settings: &S3Settings) -> Result<Store, StorageError> {
    let parsed = Url::parse(url).map_err(|e| StorageError::BadUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|_| StorageError::BadUrl {
                url: url.into(),
                reason: "not an absolute local path".into(),
            })?;
            std::fs::create_dir_all(&path).map_err(|e| StorageError::BadUrl {
                url: url.into(),
                reason: format!("creating {}: {e}", path.display()),
            })?;
            // fsync: a segment is as durable as the WAL it replaces once it is written; its WAL
            // is released after the upload.
            let fs = LocalFileSystem::new_with_prefix(&path)
                .map_err(|source| StorageError::Unusable {
                    url: url.into(),
                    source,
                })?
                .with_fsync(true);
            let fs = Arc::new(fs);
            Ok(Store {
                store: fs.clone(),
                prefix: ObjectPath::default(),
                url: url.into(),
                local: Some(LocalStore { fs, root: path }),
            })
        }
        "s3" => s3(&parsed, url, s3_settings),
        "memory" => Ok(Store {
            store: Arc::new(InMemory::new()),
            prefix: ObjectPath::from(parsed.path().trim_matches('/')),
            url: url.into(),
            local: None,
        }),
        other => Err(StorageError::Unsupported(other.into())),
    }
}

/// `s3://bucket/prefix`, configured the way AWS tools are: AWS_REGION (or AWS_DEFAULT_REGION),
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL for
/// S3-compatible servers (LocalStack, MinIO), and AWS_ALLOW_HTTP=true for a plain-http
/// endpoint. Requests use path-style addressing unless
/// AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true. Failed requests are retried with backoff.
fn s3(parsed: &Url, url: &str, file: &S3Settings) -> Result<Store, StorageError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::{BackoffConfig, RetryConfig};
    let bucket =
        parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StorageError::BadUrl {
                url: url.into(),
                reason: "no bucket name (expected s3://bucket/prefix)".into(),
            })?;
    let mut builder = AmazonS3Builder::new();
    // The config file first, then the environment over it.
    let from_file = [
        (AmazonS3ConfigKey::Endpoint, &file.aws_endpoint_url),
        (AmazonS3ConfigKey::Region, &file.aws_region),
        (AmazonS3ConfigKey::AccessKeyId, &file.aws_access_key_id),
        (
            AmazonS3ConfigKey::SecretAccessKey,
            &file.aws_secret_access_key,
        ),
        (AmazonS3ConfigKey::Token, &file.aws_session_token),
    ];
    for (key, value) in from_file {
        if let Some(v) = value {
            builder = builder.with_config(key, v);
        }
    }
    if let Some(allow) = file.aws_allow_http {
        builder = builder.with_allow_http(allow);
    }
    for (name, value) in std::env::vars() {
        if name.starts_with("AWS_") {
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
    }
    // AWS_ENDPOINT_URL is the name the AWS CLI and SDKs use; object_store's own is AWS_ENDPOINT.
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(v) = std::env::var("AWS_ALLOW_HTTP") {
        builder = builder.with_allow_http(v.eq_ignore_ascii_case("true"));
    }
    if let Ok(region) = std::env::var("AWS_DEFAULT_REGION") {
        if std::env::var("AWS_REGION").is_err() && file.aws_region.is_none() {
            builder = builder.with_region(region);
        }
    }
    // Bounded retries: an unreachable store must fail an upload attempt within seconds (the
    // uploader retries on its next pass) rather than hang it for minutes.
    builder = builder.with_bucket_name(bucket).with_retry(RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
    });
    let store = builder.build().map_err(|source| StorageError::Unusable {
        url: url.into(),
        source,
    })?;
    Ok(Store {
        store: Arc::new(store),
        prefix: ObjectPath::from(parsed.path().trim_matches('/')),
        url: url.into(),
        local: None,
    })
}

impl Store {
    /// Writes and reads back a marker object, proving the store accepts writes.
    pub async fn check(&self) -> Result<(), StorageError> {
        let key = self.prefix.clone().join("_sediment").join("probe");
        let unusable = |source| StorageError::Unusable {
            url: self.url.clone(),
            source,
        };
        self.store
            .put(&key, PutPayload::from_static(b"ok"))
            .await
            .map_err(unusable)?;
        self.store.get(&key).await.map_err(unusable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_and_memory_urls_work_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        let s = from_url(&url).unwrap();
        s.check().await.unwrap();
        assert!(dir.path().join("objects/_sediment/probe").exists());

        from_url("memory://bucket/prefix")
            .unwrap()
            .check()
            .await
            .unwrap();
        assert!(matches!(
            from_url("gopher://x"),
            Err(StorageError::Unsupported(_))
        ));
        assert!(matches!(
            from_url("not a url"),
            Err(StorageError::BadUrl { .. })
        ));
        assert!(matches!(
            from_url("file://relative/x"),
            Err(StorageError::BadUrl { .. })
        ));
    }
}
