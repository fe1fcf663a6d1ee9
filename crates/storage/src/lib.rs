//! Object storage, chosen by URL.
//!
//! The broker's durable home for data is an object store: `file://` (a local directory, the
//! default under the data directory), `memory://` (tests), and `s3://bucket/prefix` (AWS S3 or
//! any S3-compatible server, configured by the standard AWS environment variables). This crate turns the `--object-store` URL into an `object_store::ObjectStore` plus the
//! key prefix under which Sediment keeps its files, and checks at start-up that the store is
//! usable, so a typo fails `sediment serve` at once instead of at the first upload.

use std::sync::Arc;

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
}

/// Builds the store for `url`. `file://` directories are created if missing.
pub fn from_url(url: &str) -> Result<Store, StorageError> {
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
            let fs = LocalFileSystem::new_with_prefix(&path).map_err(|source| {
                StorageError::Unusable {
                    url: url.into(),
                    source,
                }
            })?;
            Ok(Store {
                store: Arc::new(fs),
                prefix: ObjectPath::default(),
                url: url.into(),
            })
        }
        "s3" => s3(&parsed, url),
        "memory" => Ok(Store {
            store: Arc::new(InMemory::new()),
            prefix: ObjectPath::from(parsed.path().trim_matches('/')),
            url: url.into(),
        }),
        other => Err(StorageError::Unsupported(other.into())),
    }
}

/// `s3://bucket/prefix`, configured the way AWS tools are: AWS_REGION (or AWS_DEFAULT_REGION),
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL for
/// S3-compatible servers (LocalStack, MinIO), and AWS_ALLOW_HTTP=true for a plain-http
/// endpoint. Requests use path-style addressing unless
/// AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true. Failed requests are retried with backoff.
fn s3(parsed: &Url, url: &str) -> Result<Store, StorageError> {
    use object_store::aws::AmazonS3Builder;
    let bucket =
        parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StorageError::BadUrl {
                url: url.into(),
                reason: "no bucket name (expected s3://bucket/prefix)".into(),
            })?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // AWS_ENDPOINT_URL is the name the AWS CLI and SDKs use; object_store's own is AWS_ENDPOINT.
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        builder = builder.with_endpoint(endpoint);
    }
    if std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        builder = builder.with_allow_http(true);
    }
    let store = builder.build().map_err(|source| StorageError::Unusable {
        url: url.into(),
        source,
    })?;
    Ok(Store {
        store: Arc::new(store),
        prefix: ObjectPath::from(parsed.path().trim_matches('/')),
        url: url.into(),
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
