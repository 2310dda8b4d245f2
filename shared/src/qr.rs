//! QR codes as PNG data URIs, for native (scan-to-pay) orders.

use base64::{engine::general_purpose::STANDARD, Engine};
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module: large enough to scan from a phone screen, small enough to stay light.
const MODULE_PX: usize = 6;
/// The quiet zone around the code, in modules (the QR standard asks for 4).
const QUIET_ZONE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("text does not fit in a QR code: {0}")]
    TooLong(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// Renders `text` as a QR code PNG (1-bit greyscale) and returns `data:image/png;base64,...`.
pub fn png_data_uri(text: &str) -> Result<String, QrError> {
    let png = png_bytes(text)?;
    let mut uri = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    uri.push_str("data:image/png;base64,");
    STANDARD.encode_string(&png, &mut uri);
    Ok(uri)
}

/// The QR code of `text` as PNG bytes.
pub fn png_bytes(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError::TooLong(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_ZONE;
    let side_px = side_modules * MODULE_PX;
    let row_bytes = side_px.div_ceil(8);

    // One packed 1-bit row per module row, repeated MODULE_PX times (0 = black, 1 = white).
    let mut image = Vec::with_capacity(row_bytes * side_px);
    let mut row = vec![0u8; row_bytes];
    for y in 0..side_modules {
        row.fill(0xff);
        for x in 0..side_modules {
            let dark = y >= QUIET_ZONE
                && x >= QUIET_ZONE
                && y < QUIET_ZONE + modules
                && x < QUIET_ZONE + modules
                && colors.get((y - QUIET_ZONE) * modules + (x - QUIET_ZONE)) == Some(&Color::Dark);
            if dark {
                for px in x * MODULE_PX..(x + 1) * MODULE_PX {
                    if let Some(byte) = row.get_mut(px / 8) {
                        *byte &= !(0x80 >> (px % 8));
                    }
                }
            }
        }
        for _ in 0..MODULE_PX {
            image.extend_from_slice(&row);
        }
    }

    let side = u32::try_from(side_px).map_err(|e| QrError::Png(e.to_string()))?;
    let mut out = Vec::with_capacity(image.len() / 4);
    {
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder
            .write_header()
            .map_err(|e| QrError::Png(e.to_string()))?;
        writer
            .write_image_data(&image)
            .map_err(|e| QrError::Png(e.to_string()))?;
        writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG data URI back to the QR code's text with an independent decoder.
    pub(crate) fn decode_data_uri(uri: &str) -> String {
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        let png = STANDARD.decode(b64).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let (w, h) = {
            let info = reader.info();
            (info.width as usize, info.height as usize)
        };
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        let stride = frame.line_size;
        let grid = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            let byte = buf[y * stride + x / 8];
            if byte & (0x80 >> (x % 8)) != 0 {
                255
            } else {
                0
            }
        });
        let mut img = grid;
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn png_decodes_back_to_the_code_url() {
        let url = "weixin://wxpay/bizpayurl?pr=AbCdEf123";
        let uri = png_data_uri(url).unwrap();
        assert!(uri.starts_with("data:image/png;base64,iVBORw0KGgo"));
        assert_eq!(decode_data_uri(&uri), url);
    }

    #[test]
    fn long_text_still_round_trips() {
        let url = format!("https://example.com/pay?x={}", "a".repeat(300));
        assert_eq!(decode_data_uri(&png_data_uri(&url).unwrap()), url);
    }

    #[test]
    fn text_too_long_for_any_qr_is_an_error() {
        assert!(matches!(
            png_data_uri(&"x".repeat(5000)),
            Err(QrError::TooLong(_))
        ));
    }
}
