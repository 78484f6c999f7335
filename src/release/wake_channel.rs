//! The wake-up channel between workers.
//!
//! Every worker process binds a Unix datagram socket to a name the kernel
//! picks in Linux's abstract namespace (autobind: a name no other socket
//! has, so no process can take it first), publishes that name in its slot,
//! and has nginx's event loop watch the socket like a connection. A worker
//! that changes what another must act on sends one byte to the address in
//! that worker's slot; the receiver reads whatever has arrived and looks at
//! its queue. The byte says nothing: the state is in the zone.
//!
//! Only datagrams sent by processes of the receiver's own user count: the
//! kernel attaches every sender's credentials (`SO_PASSCRED`), and others
//! are read and dropped, so another local user can neither wake a worker
//! nor keep it busy. Abstract names need no file and vanish with the
//! socket, so a worker that dies leaves nothing behind.

use std::io;
use std::mem;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nginx_sys::ngx_event_t;

use crate::nginx::WatchedSocket;

/// What became of a wake-up sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The receiver has so many datagrams it has not read yet that its
    /// queue is full: it will look anyway.
    Busy,
    /// Nothing listens at the address (its owner is gone or leaving), or the
    /// kernel refused: the wake-up is lost, and the sender must not count
    /// on it.
    Failed,
}

pub struct WakeChannel {
    /// `None` for a worker whose socket could not be opened: no one can
    /// wake it, and it looks at the zone on a timer instead.
    receiver: Option<WatchedSocket>,
    /// The receiver's name, packed (`pack`); 0 without one.
    address: u64,
    sender: Option<UnixDatagram>,
}

impl WakeChannel {
    /// Opens the socket the worker sends wake-ups from and the one it is
    /// woken on, which nginx watches with `handler`. What could not be
    /// opened is missing (and said in the error); the rest works.
    pub fn open(handler: unsafe extern "C" fn(*mut ngx_event_t)) -> (Self, Option<io::Error>) {
        let sender = UnixDatagram::unbound().and_then(|sender| {
            sender.set_nonblocking(true)?;
            Ok(sender)
        });
        let receiver = listen().and_then(|(fd, address)| {
            let watched = WatchedSocket::watch(fd.into_raw_fd(), handler).ok_or_else(|| {
                io::Error::other("no free connection in worker_connections for the wake-up socket")
            })?;
            Ok((watched, address))
        });
        let error = match (&sender, &receiver) {
            (Err(e), _) | (_, Err(e)) => Some(io::Error::new(e.kind(), e.to_string())),
            _ => None,
        };
        let (receiver, address) = match receiver {
            Ok((receiver, address)) => (Some(receiver), address),
            Err(_) => (None, 0),
        };
        let channel = WakeChannel {
            receiver,
            address,
            sender: sender.ok(),
        };
        (channel, error)
    }

    /// Where other workers reach this one, to publish in its slot.
    pub fn address(&self) -> Option<u64> {
        Some(self.address).filter(|&a| a != 0)
    }

    /// Whether other workers can wake this one.
    pub fn listens(&self) -> bool {
        self.receiver.is_some()
    }

    /// Whether this worker can wake others.
    pub fn sends(&self) -> bool {
        self.sender.is_some()
    }

    /// Wakes the worker listening at `to` (an address from its slot).
    pub fn send(&self, to: u64) -> Sent {
        let (Some(sender), Some(address)) = (&self.sender, unpack(to)) else {
            return Sent::Failed;
        };
        match sender.send_to_addr(&[1], &address) {
            Ok(_) => Sent::Delivered,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Busy,
            Err(_) => Sent::Failed,
        }
    }

    /// Reads every datagram that has arrived; true if one came from a
    /// process of this worker's own user.
    pub fn drain(&self) -> bool {
        self.receiver
            .as_ref()
            .is_some_and(|receiver| drain_own_user(receiver.fd()))
    }

    /// Closes the worker's socket, as it exits.
    pub fn close(self) {
        if let Some(receiver) = self.receiver {
            receiver.close();
        }
    }
}

/// A non-blocking datagram socket bound to a name the kernel chose, that
/// receives its senders' credentials; and the name, packed.
#[cfg(target_os = "linux")]
fn listen() -> io::Result<(OwnedFd, u64)> {
    // SAFETY: plain system calls on a descriptor this function owns from
    // `socket` on; the address is a zeroed `sockaddr_un` of which only the
    // family is given, which asks the kernel to pick the name (autobind).
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let on: libc::c_int = 1;
        if libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            std::ptr::from_ref(&on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut address: libc::sockaddr_un = mem::zeroed();
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            std::ptr::from_ref(&address).cast(),
            mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        fd
    };
    let socket = UnixDatagram::from(fd);
    let name = socket.local_addr()?;
    let packed = name
        .as_abstract_name()
        .and_then(pack)
        .ok_or_else(|| io::Error::other("the kernel gave the wake-up socket no abstract name"))?;
    Ok((socket.into(), packed))
}

/// Abstract socket names are Linux's: elsewhere no worker can be woken, and
/// a worker that holds requests looks at the zone on a timer instead (see
/// `release`).
#[cfg(not(target_os = "linux"))]
fn listen() -> io::Result<(OwnedFd, u64)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "wake-up sockets need Linux's abstract socket names",
    ))
}

/// An abstract name of up to 7 bytes (autobind gives 5) in a word: the
/// bytes, then their count in the last byte. Never 0.
fn pack(name: &[u8]) -> Option<u64> {
    if name.is_empty() || name.len() > 7 {
        return None;
    }
    let mut bytes = [0u8; 8];
    bytes[..name.len()].copy_from_slice(name);
    bytes[7] = name.len() as u8;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(target_os = "linux")]
fn unpack(packed: u64) -> Option<SocketAddr> {
    let bytes = packed.to_le_bytes();
    let len = usize::from(bytes[7]);
    if len == 0 || len > 7 {
        return None;
    }
    SocketAddr::from_abstract_name(&bytes[..len]).ok()
}

#[cfg(not(target_os = "linux"))]
fn unpack(_packed: u64) -> Option<SocketAddr> {
    None
}

/// Reads every datagram waiting on `fd`; true if one was sent by a process
/// of this process's effective user.
fn drain_own_user(fd: i32) -> bool {
    // SAFETY: `geteuid` cannot fail.
    let own_user = unsafe { libc::geteuid() };
    let mut from_own_user = false;
    let mut data = [0u8; 16];
    // Room for one SCM_CREDENTIALS message, aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: a zeroed `msghdr` is empty; the buffers it points to live
        // on this stack frame for the call.
        let mut message: libc::msghdr = unsafe { mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: receiving into the buffers above, from a socket this
        // process owns, without blocking.
        let read = unsafe { libc::recvmsg(fd, &mut message, libc::MSG_DONTWAIT) };
        if read < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Would block: all read.
            return from_own_user;
        }
        // SAFETY: walking the control messages the kernel wrote into
        // `control`, with the libc macros that bound them by
        // `msg_controllen`; a credentials message holds a `ucred`.
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&message);
            while let Some(h) = header.as_ref() {
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
                    let credentials: libc::ucred =
                        std::ptr::read_unaligned(libc::CMSG_DATA(h).cast());
                    from_own_user |= credentials.uid == own_user;
                }
                header = libc::CMSG_NXTHDR(&message, h);
            }
        }
    }
}
