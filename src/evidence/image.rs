//! What storeops reads of a photo: its signature (are these the bytes of the type it was
//! granted as?), its dimensions from the header alone (refusing decompression bombs
//! before anything is decoded), the camera's capture time, and a small thumbnail.
//! Pure Rust (`image`, `kamadak-exif`); decoding is bounded by pixel count and memory.

use std::io::Cursor;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::ContentType;

/// What the bytes of a photo say they are, by their first bytes.
pub fn sniff(bytes: &[u8]) -> Option<ContentType> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some(ContentType::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ContentType::Png),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(ContentType::Webp),
        _ => None,
    }
}

fn format(content_type: ContentType) -> ImageFormat {
    match content_type {
        ContentType::Jpeg => ImageFormat::Jpeg,
        ContentType::Png => ImageFormat::Png,
        ContentType::Webp => ImageFormat::WebP,
    }
}

/// Width and height from the header: reads no pixel data, so a prefix of the file will
/// do when it holds the header (a JPEG's may follow up to 64 KiB of metadata).
pub fn dimensions(bytes: &[u8], content_type: ContentType) -> Option<(u32, u32)> {
    ImageReader::with_format(Cursor::new(bytes), format(content_type))
        .into_dimensions()
        .ok()
}

/// Why a photo could not be made into a thumbnail; none of these can succeed later.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the photo has {pixels} pixels, more than the {limit} allowed")]
    TooManyPixels { pixels: u64, limit: u64 },
    #[error("the photo cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
}

/// A thumbnail and what the photo told on the way.
#[derive(Debug)]
pub struct Processed {
    /// JPEG, no metadata (the re-encoding drops EXIF, location included).
    pub thumbnail: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// When the camera says the photo was taken: `DateTimeOriginal`, in its recorded
    /// offset, else read in `local` (the store's zone).
    pub captured_at: Option<DateTime<Utc>>,
}

/// Decodes within `max_pixels` (checked from the header before decoding, and by the
/// decoder's own limits), turns it upright, and encodes a JPEG whose long side is
/// `long_side` pixels.
pub fn process(
    bytes: &[u8],
    content_type: ContentType,
    max_pixels: u64,
    long_side: u32,
    local: chrono_tz::Tz,
) -> Result<Processed, ImageError> {
    let (width, height) = dimensions(bytes, content_type).ok_or_else(|| {
        ImageError::Decode(image::ImageError::Unsupported(
            image::error::UnsupportedError::from(image::error::ImageFormatHint::Exact(format(
                content_type,
            ))),
        ))
    })?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageError::TooManyPixels {
            pixels,
            limit: max_pixels,
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(content_type));
    let mut limits = Limits::default();
    // Four bytes a pixel (RGBA8) plus the decoder's working room.
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(64 << 20));
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut photo = DynamicImage::from_decoder(decoder)?;
    photo.apply_orientation(orientation);
    let small = photo.thumbnail(long_side, long_side).into_rgb8();
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, 80).encode_image(&small)?;
    Ok(Processed {
        thumbnail,
        width: photo.width(),
        height: photo.height(),
        captured_at: captured_at(bytes, local),
    })
}

/// The camera's `DateTimeOriginal` (with `OffsetTimeOriginal` when recorded).
fn captured_at(bytes: &[u8], local: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()?;
    let text = |tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .map(|f| f.display_value().to_string())
    };
    let taken = text(exif::Tag::DateTimeOriginal)?;
    // Displayed as "2026-12-07 08:15:00".
    let naive = NaiveDateTime::parse_from_str(taken.trim_matches('"'), "%Y-%m-%d %H:%M:%S").ok()?;
    match text(exif::Tag::OffsetTimeOriginal)
        .and_then(|o| {
            DateTime::parse_from_str(
                &format!("2000-01-01T00:00:00{}", o.trim_matches('"')),
                "%Y-%m-%dT%H:%M:%S%:z",
            )
            .ok()
        })
        .map(|d| *d.offset())
    {
        Some(offset) => offset
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc)),
        None => local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// For tests: the offset type is part of the signature above.
#[allow(dead_code)]
type Offset = FixedOffset;

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let photo = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        photo.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn signatures_name_the_format() {
        assert_eq!(
            sniff(&encoded(4, 3, ImageFormat::Png)),
            Some(ContentType::Png)
        );
        assert_eq!(
            sniff(&encoded(4, 3, ImageFormat::Jpeg)),
            Some(ContentType::Jpeg)
        );
        assert_eq!(
            sniff(&encoded(4, 3, ImageFormat::WebP)),
            Some(ContentType::Webp)
        );
        assert_eq!(sniff(b"GIF89a......"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn dimensions_come_from_the_header_alone() {
        let png = encoded(640, 480, ImageFormat::Png);
        assert_eq!(dimensions(&png[..64], ContentType::Png), Some((640, 480)));
        assert_eq!(dimensions(&png, ContentType::Jpeg), None);
    }

    #[test]
    fn a_thumbnail_keeps_the_aspect_and_a_bomb_is_refused() {
        let png = encoded(1200, 600, ImageFormat::Png);
        let processed =
            process(&png, ContentType::Png, 10_000_000, 320, chrono_tz::UTC).expect("thumbnail");
        assert_eq!((processed.width, processed.height), (1200, 600));
        assert_eq!(sniff(&processed.thumbnail), Some(ContentType::Jpeg));
        let thumb = image::load_from_memory(&processed.thumbnail).expect("decodes");
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        assert!(matches!(
            process(&png, ContentType::Png, 1_000, 320, chrono_tz::UTC),
            Err(ImageError::TooManyPixels {
                pixels: 720_000,
                limit: 1_000
            })
        ));
    }
}
