//! Length-prefixed frames: `len: u32 BE || body[len]`, `1 <= len <= max`.
//! The length is checked before any allocation, so an oversized or
//! truncated frame is a typed error and never a large buffer.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::NetError;

/// Decode one frame at the start of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((body, consumed)))` gives the body and the bytes used.
///
/// # Errors
/// [`NetError::FrameTooLarge`] if the announced length exceeds `max`;
/// [`NetError::InvalidField`] for a zero length.
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, NetError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    check_len(len, max)?;
    Ok(buf.get(4..4 + len).map(|body| (body, 4 + len)))
}

fn check_len(len: usize, max: usize) -> Result<(), NetError> {
    if len == 0 {
        return Err(NetError::InvalidField {
            field: "frame length",
        });
    }
    if len > max {
        return Err(NetError::FrameTooLarge { len, max });
    }
    Ok(())
}

/// Encode one frame.
///
/// # Errors
/// [`NetError::FrameTooLarge`] if `body` is longer than `max` (or u32).
pub fn encode_frame(body: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), NetError> {
    check_len(body.len(), max)?;
    let len = u32::try_from(body.len()).map_err(|_| NetError::FrameTooLarge {
        len: body.len(),
        max,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Read one frame body from a stream.
///
/// # Errors
/// [`NetError::Closed`] on a clean end of stream before a frame starts;
/// [`NetError::Truncated`] if the stream ends inside a frame; length errors
/// as in [`decode_frame`]; [`NetError::Io`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, NetError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                NetError::Closed
            } else {
                NetError::Truncated {
                    what: "frame header",
                    need: 4,
                    have: got,
                }
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    check_len(len, max)?;
    let mut body = vec![0u8; len];
    let mut have = 0;
    while have < len {
        let n = r.read(&mut body[have..]).await?;
        if n == 0 {
            return Err(NetError::Truncated {
                what: "frame body",
                need: len,
                have,
            });
        }
        have += n;
    }
    Ok(body)
}

/// Write one frame.
///
/// # Errors
/// As [`encode_frame`], plus [`NetError::Io`].
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
    max: usize,
) -> Result<(), NetError> {
    let mut out = Vec::with_capacity(body.len() + 4);
    encode_frame(body, max, &mut out)?;
    w.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_bounds() {
        assert!(decode_frame(&[0, 0], 10).unwrap().is_none());
        assert!(decode_frame(&[0, 0, 0, 3, 1, 2], 10).unwrap().is_none());
        let (b, n) = decode_frame(&[0, 0, 0, 2, 7, 8, 9], 10).unwrap().unwrap();
        assert_eq!((b, n), (&[7u8, 8][..], 6));
        assert!(matches!(
            decode_frame(&[0, 0, 0, 11], 10),
            Err(NetError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(matches!(
            decode_frame(&[0xff, 0xff, 0xff, 0xff], 10),
            Err(NetError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode_frame(&[0, 0, 0, 0], 10),
            Err(NetError::InvalidField { .. })
        ));
    }

    #[tokio::test]
    async fn stream_read_reports_truncation_and_size() {
        let mut data: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut data, 10).await,
            Err(NetError::Truncated {
                what: "frame body",
                need: 5,
                have: 2
            })
        ));
        let mut data: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut data, 10).await,
            Err(NetError::Truncated { .. })
        ));
        let mut data: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut data, 10).await,
            Err(NetError::Closed)
        ));
        let mut data: &[u8] = &[0, 1, 0, 0];
        assert!(matches!(
            read_frame(&mut data, 10).await,
            Err(NetError::FrameTooLarge { .. })
        ));
        let mut out = Vec::new();
        encode_frame(b"abc", 10, &mut out).unwrap();
        let mut r: &[u8] = &out;
        assert_eq!(read_frame(&mut r, 10).await.unwrap(), b"abc");
    }
}
