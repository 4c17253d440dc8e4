//! pprof profiles: the gzipped `profile.proto` messages that `go tool
//! pprof` (and every pprof viewer) reads, built from symbolized stacks.
//!
//! The format, from google/pprof's `profile.proto`: a `Profile` holds a
//! string table (entry 0 is ""), functions (name and file, as string
//! indexes), locations (an address and its lines, innermost inlined call
//! first, each naming a function), and samples (location ids, leaf first,
//! and one value per sample type). Every location here comes with its
//! functions already resolved, and the one mapping says so
//! (`has_functions` and friends), so pprof never tries to symbolize the
//! addresses again against a binary it may not have.
//!
//! Why our own encoder: the messages are five small records, written once,
//! never read; a protobuf writer is a varint and a length prefix, ~60
//! lines, against `prost` and its derive macros. Compression is raw deflate
//! from `miniz_oxide` (already in the build through `backtrace`) in a gzip
//! frame (RFC 1952: a 10-byte header, CRC-32 and length trailer), which is
//! what pprof expects of a profile served over HTTP.

use std::collections::HashMap;

/// One frame of a location: function, source file, line (0: unknown).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Line {
    pub(crate) function: String,
    pub(crate) file: String,
    pub(crate) line: i64,
}

/// What one of a sample's values measures, e.g. ("cpu", "nanoseconds").
pub(crate) type ValueType = (&'static str, &'static str);

/// A profile being built. Strings, functions and locations are interned.
#[derive(Default)]
pub(crate) struct Profile {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    /// (name, file) string indexes; id = index + 1.
    functions: Vec<(i64, i64)>,
    function_ids: HashMap<(i64, i64), u64>,
    /// (address, lines as (function id, line)); id = index + 1.
    locations: Vec<(u64, Vec<(u64, i64)>)>,
    location_ids: HashMap<(u64, Vec<(u64, i64)>), u64>,
    samples: Vec<Sample>,
}

/// A sample: location ids (leaf first), values, and labels as (key,
/// value) string indexes.
type Sample = (Vec<u64>, Vec<i64>, Vec<(i64, i64)>);

impl Profile {
    pub(crate) fn new() -> Profile {
        let mut p = Profile::default();
        p.string("");
        p
    }

    /// The string table index of `s`.
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (self.string(name), self.string(file));
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        self.functions.push(key);
        let id = self.functions.len() as u64;
        self.function_ids.insert(key, id);
        id
    }

    /// The id of the location at `address` (0 if none is known) whose
    /// frames are `lines`, innermost first.
    pub(crate) fn location(&mut self, address: u64, lines: &[Line]) -> u64 {
        let lines: Vec<(u64, i64)> = lines
            .iter()
            .map(|l| (self.function(&l.function, &l.file), l.line))
            .collect();
        let key = (address, lines);
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        self.locations.push(key.clone());
        let id = self.locations.len() as u64;
        self.location_ids.insert(key, id);
        id
    }

    /// Add a sample: its stack as location ids, leaf first, one value per
    /// sample type, and string labels.
    pub(crate) fn sample(&mut self, locations: Vec<u64>, values: Vec<i64>, labels: &[(&str, &str)]) {
        let labels = labels.iter().map(|(k, v)| (self.string(k), self.string(v))).collect();
        self.samples.push((locations, values, labels));
    }

    /// The gzipped `profile.proto` encoding.
    pub(crate) fn encode(mut self, header: &Header) -> Vec<u8> {
        let mut out = Vec::new();
        for &(kind, unit) in header.sample_types {
            let vt = self.value_type(kind, unit);
            message(&mut out, 1, &vt);
        }
        for (locations, values, labels) in &self.samples {
            let mut s = Vec::new();
            packed(&mut s, 1, locations.iter().copied());
            packed(&mut s, 2, values.iter().map(|&v| v as u64));
            for &(key, value) in labels {
                let mut l = Vec::new();
                int(&mut l, 1, key as u64);
                int(&mut l, 2, value as u64);
                message(&mut s, 3, &l);
            }
            message(&mut out, 2, &s);
        }
        // One mapping covering every address, symbolized already.
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let exe = self.string(&exe);
        let mut m = Vec::new();
        int(&mut m, 1, 1);
        int(&mut m, 3, u64::MAX);
        int(&mut m, 5, exe as u64);
        for field in 7..=10 {
            int(&mut m, field, 1);
        }
        message(&mut out, 3, &m);
        for (i, (address, lines)) in self.locations.iter().enumerate() {
            let mut l = Vec::new();
            int(&mut l, 1, i as u64 + 1);
            int(&mut l, 2, 1);
            int(&mut l, 3, *address);
            for &(function, line) in lines {
                let mut ln = Vec::new();
                int(&mut ln, 1, function);
                int(&mut ln, 2, line as u64);
                message(&mut l, 4, &ln);
            }
            message(&mut out, 4, &l);
        }
        for (i, &(name, file)) in self.functions.iter().enumerate() {
            let mut f = Vec::new();
            int(&mut f, 1, i as u64 + 1);
            int(&mut f, 2, name as u64);
            int(&mut f, 3, name as u64);
            int(&mut f, 4, file as u64);
            message(&mut out, 5, &f);
        }
        let comments: Vec<i64> = header.comments.iter().map(|c| self.string(c)).collect();
        let period_type = self.value_type(header.period_type.0, header.period_type.1);
        for s in &self.strings {
            message(&mut out, 6, s.as_bytes());
        }
        int(&mut out, 9, header.time_nanos as u64);
        int(&mut out, 10, header.duration_nanos as u64);
        message(&mut out, 11, &period_type);
        int(&mut out, 12, header.period as u64);
        for c in comments {
            int(&mut out, 13, c as u64);
        }
        gzip(&out)
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> Vec<u8> {
        let mut vt = Vec::new();
        int(&mut vt, 1, self.string(kind) as u64);
        int(&mut vt, 2, self.string(unit) as u64);
        vt
    }
}

/// A profile's description and timing.
pub(crate) struct Header {
    pub(crate) sample_types: &'static [ValueType],
    pub(crate) period_type: ValueType,
    pub(crate) period: i64,
    /// When the profile was taken, ns since the Unix epoch.
    pub(crate) time_nanos: i64,
    pub(crate) duration_nanos: i64,
    pub(crate) comments: Vec<String>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (wire type 0); zero values are left out, as proto3 does.
fn int(out: &mut Vec<u8>, field: u64, v: u64) {
    if v != 0 {
        varint(out, field << 3);
        varint(out, v);
    }
}

/// A length-delimited field (wire type 2): a nested message or a string.
fn message(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A packed repeated varint field.
fn packed(out: &mut Vec<u8>, field: u64, values: impl Iterator<Item = u64>) {
    let mut body = Vec::new();
    for v in values {
        varint(&mut body, v);
    }
    if !body.is_empty() {
        message(out, field, &body);
    }
}

/// `data` in a gzip member (RFC 1952).
fn gzip(data: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM = deflate, no flags, no mtime, XFL 0, OS = Unix.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE, reflected), the gzip trailer's checksum. Bitwise: a
/// profile is at most a few MB, encoded once per request.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Nanoseconds since the Unix epoch, for `Header::time_nanos`.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_basics() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let z = gzip(b"hello hello hello");
        assert_eq!(&z[..3], &[0x1f, 0x8b, 8]);
        let inflated = miniz_oxide::inflate::decompress_to_vec(&z[10..z.len() - 8]).unwrap();
        assert_eq!(inflated, b"hello hello hello");
    }

    #[test]
    fn locations_and_functions_are_interned() {
        let mut p = Profile::new();
        let line = |f: &str| Line {
            function: f.to_string(),
            file: "a.rs".to_string(),
            line: 3,
        };
        let a = p.location(0, &[line("f"), line("g")]);
        assert_eq!(p.location(0, &[line("f"), line("g")]), a);
        assert_ne!(p.location(0, &[line("g")]), a);
        assert_eq!(p.functions.len(), 2);
        assert_eq!(p.strings[0], "");
    }
}
