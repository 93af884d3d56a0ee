//! The guest's secret and the scan for it in host-visible memory.

use crate::error::{Error, Result};
use crate::mem::{self, Memory};

/// 16 random bytes the guest keeps in private memory.  The guest program
/// only carries them masked (`word ^ mask` and `mask`), so the plain secret
/// exists in guest registers and private memory only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    pub words: [u64; 2],
    pub masks: [u64; 2],
}

impl Secret {
    pub fn random() -> Result<Self> {
        let mut raw = [0u8; 32];
        let mut got = 0;
        while got < raw.len() {
            // SAFETY: writes at most raw.len() - got bytes into raw[got..].
            let n = unsafe { libc::getrandom(raw[got..].as_mut_ptr().cast(), raw.len() - got, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(Error::new(format!("getrandom: {e}")));
                }
            } else {
                got += n as usize;
            }
        }
        Ok(Self::from_bytes(raw))
    }

    /// Builds a secret from 32 random bytes; zero bytes become 0xa5 so that
    /// no half of the secret or mask has a zero byte (the scan relies on it).
    pub fn from_bytes(mut raw: [u8; 32]) -> Self {
        for b in raw.iter_mut().filter(|b| **b == 0) {
            *b = 0xa5;
        }
        let w =
            |i: usize| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().unwrap_or([0xa5; 8]));
        Secret {
            words: [w(0), w(1)],
            masks: [w(2), w(3)],
        }
    }

    pub fn masked(&self) -> [u64; 2] {
        [self.words[0] ^ self.masks[0], self.words[1] ^ self.masks[1]]
    }

    /// Offset of the first occurrence of either 8-byte half of the secret
    /// at any byte alignment (so the whole 16 bytes are found too).
    pub fn find_in(&self, hay: &[u8]) -> Option<usize> {
        let needles = self.words.map(u64::to_le_bytes);
        for (c, chunk) in hay.chunks(8).enumerate() {
            // Fast path: a match starts with a non-zero byte.
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            for k in 0..chunk.len() {
                let pos = 8 * c + k;
                if needles.iter().any(|n| hay[pos..].starts_with(n)) {
                    return Some(pos);
                }
            }
        }
        None
    }

    /// Like find_in() over [gpa, gpa+len) of guest memory (copied out a
    /// chunk at a time): the offset of the first match from gpa.
    pub fn find_in_memory(&self, m: &Memory, gpa: u64, len: u64) -> Result<Option<u64>> {
        mem::scan(m, gpa, len, 8, |hay| self.find_in(hay))
    }
}

#[cfg(test)]
impl Secret {
    /// A fixed secret for tests: byte `i` of the raw material is
    /// `i * mul + add`.
    pub(crate) fn pattern(mul: u8, add: u8) -> Self {
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(mul).wrapping_add(add);
        }
        Secret::from_bytes(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::pattern(37, 0)
    }

    #[test]
    fn no_zero_bytes_and_masking() {
        let s = secret();
        for w in s.words.iter().chain(&s.masks) {
            assert!(w.to_le_bytes().iter().all(|&b| b != 0));
        }
        let m = s.masked();
        assert_eq!(m[0] ^ s.masks[0], s.words[0]);
        assert_ne!(m[0], s.words[0]);
    }

    #[test]
    fn scan_finds_any_alignment() {
        let s = secret();
        let mut hay = vec![0u8; 4096];
        assert_eq!(s.find_in(&hay), None);
        for off in [0, 3, 4088, 4089] {
            let mut h = hay.clone();
            let half = if off % 2 == 0 { 0 } else { 1 };
            let end = (off + 8).min(h.len());
            h[off..end].copy_from_slice(&s.words[half].to_le_bytes()[..end - off]);
            let want = if end - off == 8 { Some(off) } else { None };
            assert_eq!(s.find_in(&h), want, "offset {off}");
        }
        // The masked form and noise are not the secret.
        hay[100..108].copy_from_slice(&s.masked()[0].to_le_bytes());
        hay[200..216].fill(0xff);
        assert_eq!(s.find_in(&hay), None);
    }

    #[test]
    fn scan_guest_memory() {
        let s = secret();
        let m = mem::memory(vec![mem::anon_region(0x20_0000, 4 << 20).unwrap()]).unwrap();
        assert_eq!(s.find_in_memory(&m, 0x20_0000, 4 << 20), Ok(None));
        // Straddling the first 1 MiB chunk boundary.
        let at = 0x30_0000 - 3;
        mem::write_u64(&m, at, s.words[1]).unwrap();
        assert_eq!(
            s.find_in_memory(&m, 0x20_0000, 4 << 20),
            Ok(Some(at - 0x20_0000))
        );
        assert_eq!(s.find_in_memory(&m, at + 1, 0x100), Ok(None));
    }
}
