//! Packet buffers with head- and tailroom.
//!
//! Encapsulation grows a packet at both ends (outer IP, UDP, ESP header and IV in front;
//! padding, trailer and ICV behind) and decapsulation shrinks it again. Doing that in place
//! in one allocation that is reused from packet to packet is what keeps the hot path free
//! of copies and allocations.

/// Room reserved in front of the data for headers added by encapsulation:
/// IPv6 (40) + UDP (8) + ESP (8) + IV (16), rounded up generously for AH and
/// IPv6 extension headers.
pub const DEFAULT_HEADROOM: usize = 192;

/// Capacity of a default buffer: an IPv6 jumbo-less maximum datagram plus headroom and
/// room for the trailer (up to 255 bytes of padding, 2 trailer bytes, 32-byte ICV).
pub const DEFAULT_CAPACITY: usize = DEFAULT_HEADROOM + 65_535 + 512;

/// Errors from growing a buffer beyond its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// Not enough headroom left to prepend the requested bytes.
    #[error("not enough headroom: need {need}, have {have}")]
    NoHeadroom { need: usize, have: usize },
    /// Not enough tailroom left to append the requested bytes.
    #[error("not enough tailroom: need {need}, have {have}")]
    NoTailroom { need: usize, have: usize },
    /// Tried to remove more bytes than the buffer holds.
    #[error("buffer holds {len} bytes, cannot trim {need}")]
    TooShort { need: usize, len: usize },
}

/// A packet held at `storage[head..tail]`.
pub struct PacketBuf {
    storage: Box<[u8]>,
    head: usize,
    tail: usize,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("head", &self.head)
            .field("len", &self.len())
            .field("capacity", &self.storage.len())
            .finish()
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_HEADROOM)
    }
}

impl PacketBuf {
    /// An empty buffer of `capacity` bytes whose data starts `headroom` bytes in.
    pub fn new(capacity: usize, headroom: usize) -> Self {
        let headroom = headroom.min(capacity);
        Self {
            storage: vec![0; capacity].into_boxed_slice(),
            head: headroom,
            tail: headroom,
        }
    }

    /// A default-sized buffer holding a copy of `data` (tests, slow paths).
    pub fn from_slice(data: &[u8]) -> Self {
        let mut b = Self::new(DEFAULT_HEADROOM + data.len() + 512, DEFAULT_HEADROOM);
        b.storage[b.head..b.head + data.len()].copy_from_slice(data);
        b.tail = b.head + data.len();
        b
    }

    /// Empties the buffer and restores `headroom` in front, keeping the allocation.
    pub fn reset(&mut self, headroom: usize) {
        self.head = headroom.min(self.storage.len());
        self.tail = self.head;
    }

    /// The packet bytes.
    pub fn data(&self) -> &[u8] {
        &self.storage[self.head..self.tail]
    }

    /// The packet bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.head..self.tail]
    }

    /// Number of packet bytes.
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// True when the buffer holds no packet bytes.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Bytes free in front of the data.
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Bytes free behind the data.
    pub fn tailroom(&self) -> usize {
        self.storage.len() - self.tail
    }

    /// Free space a receive call may fill: everything behind the headroom. Pair with
    /// [`PacketBuf::set_len`] once the length is known.
    pub fn recv_space(&mut self) -> &mut [u8] {
        &mut self.storage[self.head..]
    }

    /// Sets the data length after a receive into [`PacketBuf::recv_space`]; clamped to the
    /// capacity.
    pub fn set_len(&mut self, len: usize) {
        self.tail = (self.head + len).min(self.storage.len());
    }

    /// Grows the packet by `n` bytes in front and returns them (contents unspecified).
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.head {
            return Err(BufError::NoHeadroom {
                need: n,
                have: self.head,
            });
        }
        self.head -= n;
        Ok(&mut self.storage[self.head..self.head + n])
    }

    /// Grows the packet by `n` bytes at the end and returns them (contents unspecified).
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let have = self.tailroom();
        if n > have {
            return Err(BufError::NoTailroom { need: n, have });
        }
        let start = self.tail;
        self.tail += n;
        Ok(&mut self.storage[start..self.tail])
    }

    /// Removes `n` bytes from the front.
    pub fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort {
                need: n,
                len: self.len(),
            });
        }
        self.head += n;
        Ok(())
    }

    /// Removes `n` bytes from the end.
    pub fn trim_back(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort {
                need: n,
                len: self.len(),
            });
        }
        self.tail -= n;
        Ok(())
    }

    /// Keeps only the first `len` bytes (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.tail = self.head + len;
        }
    }

    /// Replaces the contents with `data`, keeping `headroom` in front.
    pub fn set_contents(&mut self, headroom: usize, data: &[u8]) -> Result<(), BufError> {
        self.reset(headroom);
        self.append(data.len())?.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_at_both_ends() {
        let mut b = PacketBuf::new(64, 16);
        b.append(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        b.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(b.data(), &[9, 9, 1, 2, 3, 4]);
        b.trim_front(3).unwrap();
        b.trim_back(1).unwrap();
        assert_eq!(b.data(), &[2, 3]);
        assert_eq!(
            b.prepend(100),
            Err(BufError::NoHeadroom {
                need: 100,
                have: 17
            })
        );
        assert_eq!(b.trim_back(3), Err(BufError::TooShort { need: 3, len: 2 }));
        assert!(b.append(1000).is_err());
    }
}
