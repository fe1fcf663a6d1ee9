//! Length-prefixed request/response framing.
//!
//! Every Kafka message on the wire is an `int32` size followed by that many bytes. The size is
//! checked against a configured maximum *before* any buffer is allocated, so a hostile or broken
//! peer cannot make the broker allocate gigabytes by sending four bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read. Each of these leaves the connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is outside 1..={max} bytes")]
    BadSize { size: i64, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_size: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut len_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(len_buf);
    if size <= 0 || size as usize > max_size {
        return Err(FrameError::BadSize {
            size: i64::from(size),
            max: max_size,
        });
    }
    // Read straight into uninitialised capacity: no need to zero what the socket overwrites.
    let size = size as usize;
    let mut body = BytesMut::with_capacity(size);
    let mut limited = (&mut *reader).take(size as u64);
    while body.len() < size {
        if limited.read_buf(&mut body).await? == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(body.freeze()))
}

/// Writes one frame (size prefix plus body).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let len = i32::try_from(body.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        let frame = read_frame(&mut data, 10).await.unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert!(read_frame(&mut data, 10).await.unwrap().is_none());

        let mut big: &[u8] = &[0, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut big, 10).await,
            Err(FrameError::BadSize { size: 256, .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 10).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Truncated)
        ));
        let mut half_len: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_len, 10).await,
            Err(FrameError::Truncated)
        ));
    }
}
