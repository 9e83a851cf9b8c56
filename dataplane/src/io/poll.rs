//! Readiness: a level-triggered epoll set and an eventfd to wake a worker from other threads.
//!
//! Level-triggered on purpose: a worker reads at most one bounded batch per source and
//! wakeup so that no source starves the others; whatever is left makes the next
//! `epoll_wait` return immediately instead of being forgotten, as it would be with
//! edge-triggered mode.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cvt;

/// An epoll instance with a reusable event array.
pub struct Poller {
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: usize,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epfd", &self.epfd.as_raw_fd())
            .field("capacity", &self.events.len())
            .finish()
    }
}

impl Poller {
    /// A new epoll set that reports up to `capacity` ready descriptors per wait.
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the returned descriptor is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            ready: 0,
        })
    }

    /// Watches `fd` for readability; `token` comes back from [`Poller::wait`] when it is.
    ///
    /// The caller keeps `fd` open for as long as it is registered.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call, and both
        // descriptors are open.
        cvt(unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_fd().as_raw_fd(),
                &mut ev,
            )
        })?;
        Ok(())
    }

    /// Waits until at least one descriptor is readable or `timeout` passes (`None`: forever),
    /// and returns the tokens of the ready descriptors. An interrupted wait returns no tokens.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
    ) -> io::Result<impl Iterator<Item = u64> + '_> {
        let ms = match timeout {
            None => -1,
            Some(d) => libc::c_int::try_from(d.as_millis()).unwrap_or(libc::c_int::MAX),
        };
        let cap = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the pointer and length describe `self.events`, which the kernel fills.
        let n =
            unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), self.events.as_mut_ptr(), cap, ms) };
        self.ready = match cvt(n) {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        Ok(self.events[..self.ready].iter().map(|ev| ev.u64))
    }
}

/// A non-blocking eventfd: other threads [`EventFd::wake`] a worker blocked in epoll.
pub struct EventFd(OwnedFd);

impl std::fmt::Debug for EventFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EventFd").field(&self.0.as_raw_fd()).finish()
    }
}

impl EventFd {
    /// A new eventfd with counter 0.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the returned descriptor is checked.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the eventfd readable. Never blocks; a counter already at its maximum is
    /// readable anyway, so a failed write loses nothing.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an open descriptor.
        let _ = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter so the eventfd stops being readable until the next wake.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from an open descriptor. EAGAIN
        // (nothing to drain) is the expected non-error outcome.
        let _ = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&raw mut v).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_poller_and_drains() {
        let mut p = Poller::new(4).unwrap();
        let ev = EventFd::new().unwrap();
        p.add(&ev, 7).unwrap();
        assert_eq!(p.wait(Some(Duration::ZERO)).unwrap().count(), 0);
        ev.wake();
        ev.wake();
        assert_eq!(
            p.wait(Some(Duration::ZERO)).unwrap().collect::<Vec<_>>(),
            vec![7]
        );
        ev.drain();
        assert_eq!(p.wait(Some(Duration::ZERO)).unwrap().count(), 0);
    }
}
