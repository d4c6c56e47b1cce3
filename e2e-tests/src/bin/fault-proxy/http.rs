//! Just enough HTTP/1.1 to forward one request at a time: a head, then its body by
//! length, by chunks or to the end.

use anyhow::bail;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request or response head: its first line and headers, as received.
pub(crate) struct Head {
    pub(crate) raw: Vec<u8>,
    pub(crate) first: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub(crate) fn length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn wants_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
            || self.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
    }
}

/// Reads one head; `None` at a clean end of stream before it.
pub(crate) async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> anyhow::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = r.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            bail!("stream ended inside a head");
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // A stray blank line between messages.
                raw.clear();
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok(Some(Head { raw, first, headers }))
}

/// Copies a message body framed by `head` from `r` to `w` (`w` may be a sink).
pub(crate) async fn copy_body<R, W>(head: &Head, r: &mut R, w: &mut W, to_eof: bool) -> anyhow::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    if head.chunked() {
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                bail!("stream ended inside a chunked body");
            }
            w.write_all(&line).await?;
            let size_text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(size_text.trim().split(';').next().unwrap_or("0").trim(), 16)?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        break;
                    }
                    w.write_all(&t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                w.flush().await?;
                return Ok(());
            }
            copy_exact(r, w, size + 2).await?;
            w.flush().await?;
        }
    } else if let Some(n) = head.length() {
        copy_exact(r, w, n).await?;
    } else if to_eof {
        tokio::io::copy(r, w).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Copies only the start of a body: half of a sized one, the first chunk of a chunked one,
/// one read of one that runs to the end of the stream.
pub(crate) async fn copy_body_start<R, W>(head: &Head, r: &mut R, w: &mut W) -> anyhow::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin,
{
    if head.chunked() {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await?;
        w.write_all(&line).await?;
        let size = u64::from_str_radix(String::from_utf8_lossy(&line).trim().split(';').next().unwrap_or("0"), 16)?;
        copy_exact(r, w, size + 2).await?;
    } else if let Some(n) = head.length() {
        copy_exact(r, w, n / 2).await?;
    } else {
        let got = r.fill_buf().await?.to_vec();
        w.write_all(&got).await?;
        r.consume(got.len());
    }
    w.flush().await?;
    Ok(())
}

pub(crate) async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    n: u64,
) -> anyhow::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), w).await?;
    if copied < n {
        bail!("stream ended after {copied} of {n} body bytes");
    }
    Ok(())
}

pub(crate) fn method_and_path(first: &str) -> (String, String) {
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    (method, path)
}
