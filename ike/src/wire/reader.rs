//! A bounds-checked cursor: every read returns a typed error instead of panicking.

use super::error::ParseError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(ParseError::Truncated {
                what: self.what,
                need: n,
                have: self.buf.len(),
            }),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails when bytes are left over where the structure should have ended.
    pub(crate) fn finish(self) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::BadLength {
                what: self.what,
                len: self.buf.len(),
            })
        }
    }
}

/// Writes a 16-bit length placeholder and later patches it, so writers never compute
/// sizes twice.
pub(crate) struct LenPatch {
    at: usize,
    start: usize,
}

impl LenPatch {
    /// Reserves two length bytes at the end of `out`; the measured length starts at `start`.
    pub(crate) fn reserve(out: &mut Vec<u8>, start: usize) -> Self {
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        LenPatch { at, start }
    }

    pub(crate) fn fill(
        self,
        out: &mut [u8],
        what: &'static str,
    ) -> Result<(), super::error::EncodeError> {
        let len = out.len().saturating_sub(self.start);
        let len = u16::try_from(len).map_err(|_| super::error::EncodeError::TooLong { what })?;
        if let Some(slot) = out.get_mut(self.at..self.at + 2) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }
}

pub(crate) fn len_u8(n: usize, what: &'static str) -> Result<u8, super::error::EncodeError> {
    u8::try_from(n).map_err(|_| super::error::EncodeError::TooLong { what })
}

pub(crate) fn len_u16(n: usize, what: &'static str) -> Result<u16, super::error::EncodeError> {
    u16::try_from(n).map_err(|_| super::error::EncodeError::TooLong { what })
}
