//! Stream compression, shared by snapshot archives and input files.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use serde::{Deserialize, Serialize};

/// The most memory one decoder may use, whatever its input declares: the
/// xz memory limit, and (as `2^27`) the largest zstd window. An xz
/// dictionary or a zstd window is filled as the output is
/// produced, so without a bound a few hundred bytes declaring a 1.5 GiB
/// dictionary would make a decoder of zeros hold that much. 128 MiB covers
/// `xz -9` (64 MiB), `zstd --ultra -22` and `zstd --long`; gzip (32 KiB)
/// and bzip2 (under 4 MiB) need no bound.
pub const DECODER_MEMORY_LIMIT: u64 = 1 << ZSTD_WINDOW_LOG_MAX;

/// The largest zstd window a decoder accepts, as a power of two: zstd's own
/// default limit, made explicit.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A compression format for archives and files.
///
/// Specs spell these `gz`, `bz2`, `xz`, `zstd` and `none` (the snapshot
/// block's names); `gzip`, `bzip2` and `zst` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (DEFLATE).
    #[default]
    #[serde(rename = "gz", alias = "gzip")]
    Gzip,
    /// bzip2.
    #[serde(rename = "bz2", alias = "bzip2")]
    Bzip2,
    /// xz (LZMA2).
    Xz,
    /// Zstandard.
    #[serde(alias = "zst")]
    Zstd,
}

impl Compression {
    /// Every format, in a stable order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::Zstd,
    ];

    /// The name used in specs (`gz`, `bz2`, `xz`, `zstd`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gz",
            Compression::Bzip2 => "bz2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The file-name suffix a file in this format carries (`""`, `.gz`,
    /// `.bz2`, `.xz`, `.zst`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }

    /// The format a lower-case suffix (without the dot) names, if any.
    pub fn from_suffix(suffix: &str) -> Option<Compression> {
        match suffix {
            "gz" | "gzip" => Some(Compression::Gzip),
            "bz2" | "bzip2" => Some(Compression::Bzip2),
            "xz" => Some(Compression::Xz),
            "zst" | "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Wraps `inner` in an encoder. Call [`CompressWriter::finish`] to flush
    /// the trailer and get `inner` back; dropping the writer loses the error.
    pub fn writer<W: Write>(self, inner: W) -> io::Result<CompressWriter<W>> {
        Ok(match self {
            Compression::None => CompressWriter::None(inner),
            #[cfg(not(feature = "compression"))]
            other => return Err(unbuilt(other)),
            #[cfg(feature = "compression")]
            Compression::Gzip => CompressWriter::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::new(6),
            )),
            #[cfg(feature = "compression")]
            Compression::Bzip2 => CompressWriter::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::new(6),
            )),
            #[cfg(feature = "compression")]
            Compression::Xz => CompressWriter::Xz(liblzma::write::XzEncoder::new(inner, 6)),
            #[cfg(feature = "compression")]
            Compression::Zstd => CompressWriter::Zstd(zstd::stream::write::Encoder::new(inner, 3)?),
        })
    }

    /// Wraps `inner` in a decoder. Concatenated members (as `pigz` or
    /// `cat a.gz b.gz` produce) are read as one stream.
    ///
    /// A decoder's memory is bounded whatever its input declares (see
    /// [`DECODER_MEMORY_LIMIT`]); input that needs more fails to decode.
    pub fn reader<'a, R: Read + 'a>(self, inner: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(inner),
            #[cfg(not(feature = "compression"))]
            other => return Err(unbuilt(other)),
            #[cfg(feature = "compression")]
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            #[cfg(feature = "compression")]
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(inner)),
            #[cfg(feature = "compression")]
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_stream(
                inner,
                liblzma::stream::Stream::new_auto_decoder(
                    DECODER_MEMORY_LIMIT,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(io::Error::other)?,
            )),
            #[cfg(feature = "compression")]
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(inner)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(decoder)
            }
        })
    }

    /// Wraps `inner` in a decoder of one member (gzip), frame (zstd) or
    /// stream (bzip2, xz) only: it reports the end of input where that
    /// member ends, whatever follows it in `inner`. A berth snapshot archive
    /// is a sequence of such members, and this is how one of them is read on
    /// its own.
    pub fn member_reader<'a, R: BufRead + 'a>(self, inner: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(inner),
            #[cfg(not(feature = "compression"))]
            other => return Err(unbuilt(other)),
            #[cfg(feature = "compression")]
            Compression::Gzip => Box::new(flate2::bufread::GzDecoder::new(inner)),
            #[cfg(feature = "compression")]
            Compression::Bzip2 => Box::new(bzip2::bufread::BzDecoder::new(inner)),
            #[cfg(feature = "compression")]
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_stream(
                inner,
                liblzma::stream::Stream::new_stream_decoder(DECODER_MEMORY_LIMIT, 0)
                    .map_err(io::Error::other)?,
            )),
            #[cfg(feature = "compression")]
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(inner)?.single_frame();
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(decoder)
            }
        })
    }

    /// Compresses a whole buffer.
    pub fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut writer = self.writer(Vec::with_capacity(data.len() / 2 + 64))?;
        writer.write_all(data)?;
        writer.finish()
    }

    /// Decompresses a whole buffer.
    pub fn decompress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 2);
        self.reader(data)?.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// The error for a format this build left out (session-core without its
/// `compression` feature).
#[cfg(not(feature = "compression"))]
fn unbuilt(compression: Compression) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{compression} is not built in (session-core's `compression` feature is off)"),
    )
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An encoder returned by [`Compression::writer`].
#[allow(missing_debug_implementations)]
pub enum CompressWriter<W: Write> {
    /// Pass-through.
    None(W),
    /// gzip encoder.
    #[cfg(feature = "compression")]
    Gzip(flate2::write::GzEncoder<W>),
    /// bzip2 encoder.
    #[cfg(feature = "compression")]
    Bzip2(bzip2::write::BzEncoder<W>),
    /// xz encoder.
    #[cfg(feature = "compression")]
    Xz(liblzma::write::XzEncoder<W>),
    /// zstd encoder.
    #[cfg(feature = "compression")]
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> CompressWriter<W> {
    /// Writes the format's trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            CompressWriter::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
            #[cfg(feature = "compression")]
            CompressWriter::Gzip(w) => w.finish(),
            #[cfg(feature = "compression")]
            CompressWriter::Bzip2(w) => w.finish(),
            #[cfg(feature = "compression")]
            CompressWriter::Xz(w) => w.finish(),
            #[cfg(feature = "compression")]
            CompressWriter::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CompressWriter::None(w) => w.write(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Gzip(w) => w.write(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Bzip2(w) => w.write(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Xz(w) => w.write(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            CompressWriter::None(w) => w.write_all(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Gzip(w) => w.write_all(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Bzip2(w) => w.write_all(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Xz(w) => w.write_all(buf),
            #[cfg(feature = "compression")]
            CompressWriter::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            CompressWriter::None(w) => w.flush(),
            #[cfg(feature = "compression")]
            CompressWriter::Gzip(w) => w.flush(),
            #[cfg(feature = "compression")]
            CompressWriter::Bzip2(w) => w.flush(),
            #[cfg(feature = "compression")]
            CompressWriter::Xz(w) => w.flush(),
            #[cfg(feature = "compression")]
            CompressWriter::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_and_reads_concatenated_members() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in Compression::ALL {
            let packed = c.compress(&data).unwrap();
            assert_eq!(c.decompress(&packed).unwrap(), data, "{c}");
            let mut twice = packed.clone();
            twice.extend_from_slice(&packed);
            let mut both = data.clone();
            both.extend_from_slice(&data);
            assert_eq!(c.decompress(&twice).unwrap(), both, "{c} concatenated");
        }
    }

    #[test]
    fn member_reader_stops_at_the_end_of_the_first_member() {
        let first: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let second = b"the second member".to_vec();
        for c in Compression::ALL {
            let mut packed = c.compress(&first).unwrap();
            packed.extend(c.compress(&second).unwrap());
            let mut one = Vec::new();
            c.member_reader(&packed[..])
                .unwrap()
                .read_to_end(&mut one)
                .unwrap();
            if c == Compression::None {
                assert_eq!(one.len(), first.len() + second.len());
            } else {
                assert!(one == first, "{c}");
            }
        }
    }

    /// CRC-32 (IEEE), as xz headers carry it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The start of an xz stream whose one block declares an LZMA2
    /// dictionary of 1 GiB: headers only, which is all a decoder needs to
    /// see before it would allocate.
    fn xz_with_a_gigabyte_dictionary() -> Vec<u8> {
        let mut out = b"\xfd7zXZ\0".to_vec();
        let flags = [0x00, 0x01]; // CRC32 check
        out.extend(flags);
        out.extend(crc32(&flags).to_le_bytes());
        // Block header: 12 bytes, one filter (LZMA2, one property byte:
        // 36 is a dictionary of 2 << 29 bytes), padding, CRC32.
        let header = [0x02, 0x00, 0x21, 0x01, 36, 0, 0, 0];
        out.extend(header);
        out.extend(crc32(&header).to_le_bytes());
        out.extend([0u8; 64]);
        out
    }

    /// A zstd frame whose window is 2^28 bytes, with one raw byte.
    fn zstd_with_a_large_window() -> Vec<u8> {
        let mut out = 0xfd2f_b528_u32.to_le_bytes().to_vec();
        // No content size, no checksum; window descriptor: exponent 18.
        out.extend([0x00, 18 << 3]);
        // The last block, raw, one byte.
        out.extend([0x09, 0x00, 0x00, b'x']);
        out
    }

    /// Input that declares more memory than [`DECODER_MEMORY_LIMIT`] fails
    /// to decode, through both kinds of reader, before anything is
    /// allocated for it.
    #[test]
    fn decoders_refuse_to_need_more_than_the_limit() {
        for (compression, bytes) in [
            (Compression::Xz, xz_with_a_gigabyte_dictionary()),
            (Compression::Zstd, zstd_with_a_large_window()),
        ] {
            let mut out = Vec::new();
            let err = compression
                .reader(&bytes[..])
                .and_then(|mut r| r.read_to_end(&mut out))
                .unwrap_err();
            assert!(out.is_empty(), "{compression}: {err}");
            assert!(err.to_string().contains("memory"), "{compression}: {err}");
            let err = compression
                .member_reader(&bytes[..])
                .and_then(|mut r| r.read_to_end(&mut out))
                .unwrap_err();
            assert!(out.is_empty(), "{compression}: {err}");
            assert!(err.to_string().contains("memory"), "{compression}: {err}");
        }
        // Within the limit, the same shapes decode.
        let mut small_window = zstd_with_a_large_window();
        small_window[5] = 10 << 3;
        assert_eq!(Compression::Zstd.decompress(&small_window).unwrap(), b"x");
    }

    #[test]
    fn spec_names_and_aliases_parse() {
        for (text, want) in [
            ("gz", Compression::Gzip),
            ("gzip", Compression::Gzip),
            ("bz2", Compression::Bzip2),
            ("bzip2", Compression::Bzip2),
            ("xz", Compression::Xz),
            ("zstd", Compression::Zstd),
            ("none", Compression::None),
        ] {
            let got: Compression = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(got, want);
            assert_eq!(serde_json::to_value(want).unwrap(), want.name());
        }
    }
}
