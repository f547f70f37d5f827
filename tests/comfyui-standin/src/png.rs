//! Minimal PNG writer (solid-colour RGB images with tEXt chunks) and header reader.

use std::io::Write;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A `width`×`height` image filled with `rgb`, like ComfyUI's SaveImage output
/// (8-bit RGB, `tEXt` chunks such as `prompt`).
pub fn solid(width: u32, height: u32, rgb: [u8; 3], text: &[(&str, &str)]) -> Vec<u8> {
    let (w, h) = (width.max(1), height.max(1));
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (k, v) in text {
        let mut d = k.as_bytes().to_vec();
        d.push(0);
        d.extend(
            v.chars()
                .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' }),
        );
        chunk(&mut out, b"tEXt", &d);
    }
    // First row: filter None with the pixels; other rows: filter Up, i.e. all zeros.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut row = Vec::with_capacity(1 + 3 * w as usize);
    row.push(0u8);
    for _ in 0..w {
        row.extend_from_slice(&rgb);
    }
    let _ = z.write_all(&row);
    let mut up = vec![0u8; row.len()];
    up[0] = 2;
    for _ in 1..h {
        let _ = z.write_all(&up);
    }
    let idat = z.finish().unwrap_or_default();
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `data` (a PNG) with one more `tEXt` chunk, before its IEND; `None` if
/// `data` is not a PNG.
pub fn with_text(data: &[u8], key: &str, value: &str) -> Option<Vec<u8>> {
    dimensions(data)?;
    let iend = data.len().checked_sub(12)?;
    if &data[iend + 4..iend + 8] != b"IEND" {
        return None;
    }
    let mut out = data[..iend].to_vec();
    let mut d = key.as_bytes().to_vec();
    d.push(0);
    d.extend_from_slice(value.as_bytes());
    chunk(&mut out, b"tEXt", &d);
    out.extend_from_slice(&data[iend..]);
    Some(out)
}

/// Width and height from a PNG's IHDR, if `data` is a PNG.
pub fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 24 || &data[..8] != b"\x89PNG\r\n\x1a\n" || &data[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(data[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(data[20..24].try_into().ok()?);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_valid_png() {
        let p = super::solid(512, 512, [255, 0, 0], &[("prompt", "{}")]);
        assert_eq!(super::dimensions(&p), Some((512, 512)));
        assert!(p.len() < 8000, "{}", p.len());
        assert_eq!(super::crc32(b"IEND"), 0xAE42_6082);
    }
}
