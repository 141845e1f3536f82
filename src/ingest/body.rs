//! Integration request bodies, streamed: a price batch can be hundreds of megabytes, so
//! the api never holds one whole. As frames arrive they are decoded (`Content-Encoding:
//! gzip`), bounded by the decoded size (a gzip bomb is 413, not an OOM), hashed,
//! validated by a streaming parser and kept compressed for storage. Workers read the
//! stored body back through [`decoded`], again as a stream.

use std::io::{self, BufReader, Read, Write};

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::header,
};
use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, FieldError};

/// How a body is stored in `ingests.raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Identity,
    Gzip,
}

crate::string_enum!(Encoding {
    Identity => "identity",
    Gzip => "gzip",
});

/// Bodies up to this size are stored as sent; larger ones are compressed as they stream.
const STORE_PLAIN_UP_TO: usize = 256 * 1024;
/// Frames in flight between the connection and the parser (backpressure beyond it).
const FRAMES_IN_FLIGHT: usize = 16;

/// A stored body whose `raw_encoding` this code does not know: reading it fails, so the
/// ingest fails as unreadable like any body that does not parse.
pub struct UnknownEncoding;

impl Read for UnknownEncoding {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("the stored body has an unknown encoding"))
    }
}

/// A stored body, read back as the JSON it was (decompressed as it is read).
pub fn decoded(raw: &[u8], encoding: Encoding) -> Box<dyn Read + Send + '_> {
    match encoding {
        Encoding::Identity => Box::new(raw),
        Encoding::Gzip => Box::new(BufReader::new(MultiGzDecoder::new(raw))),
    }
}

/// An integration request's body, not yet read: JSON, identity or gzip.
pub struct IngestBody {
    body: Body,
    gzip: bool,
    /// The declared length, to refuse an oversized body before reading it.
    content_length: Option<usize>,
}

impl<S: Send + Sync> FromRequest<S> for IngestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        crate::http::extract::require_json(headers)?;
        let gzip = match headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().map(|v| v.trim().to_ascii_lowercase()))
        {
            None => false,
            Some(Ok(v)) if v == "identity" => false,
            Some(Ok(v)) if v == "gzip" || v == "x-gzip" => true,
            Some(_) => {
                return Err(ApiError::UnsupportedMediaType(
                    "Content-Encoding must be gzip or identity".to_owned(),
                ));
            }
        };
        let content_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(Self {
            body,
            gzip,
            content_length,
        })
    }
}

/// What a streaming check of a body can fail with.
#[derive(Debug)]
pub enum CheckError {
    /// The JSON did not parse or did not fit the request type (or reading failed).
    Json(serde_json::Error),
    /// It parsed; these fields are wrong.
    Invalid(Vec<FieldError>),
}

impl From<serde_json::Error> for CheckError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error)
    }
}

/// How one kind of request is checked while it streams in.
pub struct Checker<T> {
    /// Parses and validates the whole body (reading it to its end).
    pub check: fn(&mut dyn Read) -> Result<T, CheckError>,
    /// Parses again with path tracking, only after `check` failed on the data: the path
    /// of the offending field (the fast path stays fast for a million lines).
    pub failing_path: fn(&mut dyn Read) -> Option<String>,
}

/// A body that passed its check, as it is to be stored.
pub struct Received<T> {
    pub checked: T,
    pub stored: Vec<u8>,
    pub encoding: Encoding,
    /// SHA-256 of the decoded JSON (a gzip re-post of the same batch is the same body).
    pub sha256: String,
}

/// Reads, decodes, bounds, hashes, checks and compresses the body. `limit` applies to
/// the bytes on the wire and to the decoded JSON.
pub async fn receive<T: Send + 'static>(
    body: IngestBody,
    limit: usize,
    checker: Checker<T>,
) -> Result<Received<T>, ApiError> {
    if body.content_length.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let (frames, incoming) = tokio::sync::mpsc::channel::<Bytes>(FRAMES_IN_FLIGHT);
    let gzip = body.gzip;
    let reading =
        tokio::task::spawn_blocking(move || read_and_check(incoming, gzip, limit, checker));
    let mut stream = body.body.into_data_stream();
    let mut on_wire = 0usize;
    let mut failure = None;
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(bytes) => {
                on_wire += bytes.len();
                if on_wire > limit {
                    failure = Some(too_large());
                    break;
                }
                // The parser stopped early (the body is wrong): its answer says why.
                if frames.send(bytes).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                failure = Some(ApiError::BadRequest(format!(
                    "the body could not be read: {error}"
                )));
                break;
            }
        }
    }
    drop(frames);
    let outcome = reading.await.map_err(|e| {
        ApiError::Internal(anyhow::Error::new(e).context("checking an ingest body"))
    })?;
    match failure {
        Some(failure) => Err(failure),
        None => outcome,
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge("the body is larger than the ingest body limit".to_owned())
}

fn read_and_check<T>(
    incoming: tokio::sync::mpsc::Receiver<Bytes>,
    gzip: bool,
    limit: usize,
    checker: Checker<T>,
) -> Result<Received<T>, ApiError> {
    let wire = Wire {
        incoming,
        current: Bytes::new(),
        // A sender's gzip is stored as sent: nothing to compress again.
        kept: gzip.then(Vec::new),
    };
    let mut source = if gzip {
        Source::Gzip(Box::new(MultiGzDecoder::new(wire)))
    } else {
        Source::Plain(wire)
    };
    let mut decoded = Decoded {
        limit,
        read: 0,
        over_limit: false,
        source_failed: None,
        hasher: Sha256::new(),
        store: (!gzip).then(|| Store::Plain(Vec::new())),
    };
    let result = {
        let mut reader = BufReader::with_capacity(
            64 * 1024,
            Tee {
                source: &mut source,
                decoded: &mut decoded,
            },
        );
        (checker.check)(&mut reader)
    };
    if decoded.over_limit {
        return Err(too_large());
    }
    if let Some(error) = decoded.source_failed.take() {
        return Err(ApiError::BadRequest(format!(
            "the gzip body could not be decoded: {error}"
        )));
    }
    let (stored, encoding) = match (source, decoded.store.take()) {
        (Source::Gzip(decoder), _) => (
            (*decoder).into_inner().kept.unwrap_or_default(),
            Encoding::Gzip,
        ),
        (Source::Plain(_), Some(store)) => store.finish().map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context("compressing an ingest body"))
        })?,
        (Source::Plain(_), None) => (Vec::new(), Encoding::Identity),
    };
    match result {
        Ok(checked) => Ok(Received {
            checked,
            stored,
            encoding,
            sha256: format!("{:x}", decoded.hasher.finalize()),
        }),
        Err(CheckError::Invalid(errors)) => Err(ApiError::Validation(errors)),
        Err(CheckError::Json(error)) if error.is_data() => {
            // What was read so far is stored: parse it again, tracking the path.
            let field =
                (checker.failing_path)(&mut BufReader::new(decoded_prefix(&stored, encoding)))
                    .unwrap_or_else(|| "body".to_owned());
            Err(ApiError::Validation(vec![FieldError::new(
                field,
                error.to_string(),
            )]))
        }
        Err(CheckError::Json(error)) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {error}"
        ))),
    }
}

/// The stored prefix of a body that failed its check, decoded as far as it goes (a
/// gzip stream cut short ends the read instead of failing it).
fn decoded_prefix(stored: &[u8], encoding: Encoding) -> impl Read + '_ {
    struct UntilBroken<R>(R);
    impl<R: Read> Read for UntilBroken<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            Ok(self.0.read(buf).unwrap_or(0))
        }
    }
    UntilBroken(decoded(stored, encoding))
}

/// The body's frames as a byte stream, on a blocking thread.
struct Wire {
    incoming: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
    kept: Option<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.incoming.blocking_recv() {
                Some(frame) => self.current = frame,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf[..n].copy_from_slice(&chunk);
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(&chunk);
        }
        Ok(n)
    }
}

enum Source {
    Plain(Wire),
    Gzip(Box<MultiGzDecoder<Wire>>),
}

/// The decoded side: counted against the limit, hashed, and kept for storage.
struct Decoded {
    limit: usize,
    read: usize,
    over_limit: bool,
    source_failed: Option<io::Error>,
    hasher: Sha256,
    store: Option<Store>,
}

/// The body kept for storage: as sent while small, compressed once it is not.
enum Store {
    Plain(Vec<u8>),
    Gzip(Box<GzEncoder<Vec<u8>>>),
}

impl Store {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(plain) if plain.len() + bytes.len() > STORE_PLAIN_UP_TO => {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
                encoder.write_all(plain)?;
                encoder.write_all(bytes)?;
                *self = Self::Gzip(Box::new(encoder));
                Ok(())
            }
            Self::Plain(plain) => {
                plain.extend_from_slice(bytes);
                Ok(())
            }
            Self::Gzip(encoder) => encoder.write_all(bytes),
        }
    }

    fn finish(self) -> io::Result<(Vec<u8>, Encoding)> {
        match self {
            Self::Plain(plain) => Ok((plain, Encoding::Identity)),
            Self::Gzip(encoder) => Ok((encoder.finish()?, Encoding::Gzip)),
        }
    }
}

struct Tee<'a> {
    source: &'a mut Source,
    decoded: &'a mut Decoded,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.source {
            Source::Plain(wire) => wire.read(buf)?,
            Source::Gzip(decoder) => match decoder.read(buf) {
                Ok(n) => n,
                Err(error) => {
                    let message = error.to_string();
                    self.decoded.source_failed = Some(error);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message));
                }
            },
        };
        let decoded = &mut *self.decoded;
        decoded.read += n;
        if decoded.read > decoded.limit {
            decoded.over_limit = true;
            return Err(io::Error::other("the decoded body is over the limit"));
        }
        decoded.hasher.update(&buf[..n]);
        if let Some(store) = &mut decoded.store {
            store.write(&buf[..n])?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_plain_and_large_ones_are_compressed() {
        let mut store = Store::Plain(Vec::new());
        store.write(b"{\"a\": 1}").expect("write");
        let (stored, encoding) = store.finish().expect("finish");
        assert_eq!(encoding, Encoding::Identity);
        assert_eq!(stored, b"{\"a\": 1}");

        let body = "[".to_owned() + &"1,".repeat(STORE_PLAIN_UP_TO) + "1]";
        let mut store = Store::Plain(Vec::new());
        for chunk in body.as_bytes().chunks(1000) {
            store.write(chunk).expect("write");
        }
        let (stored, encoding) = store.finish().expect("finish");
        assert_eq!(encoding, Encoding::Gzip);
        assert!(stored.len() < body.len() / 10);
        let mut back = String::new();
        decoded(&stored, encoding)
            .read_to_string(&mut back)
            .expect("decode");
        assert_eq!(back, body);
    }
}
