//! The wake-up channel between workers.
//!
//! Every worker process binds a Unix datagram socket in Linux's abstract
//! namespace, named after its zone's id and its slot number, and nginx's
//! event loop watches it like any connection. A worker that changes what
//! another must act on (a resume, a stop, its place in an app's order, a
//! slot it reclaimed) sends that worker one byte; the receiver reads
//! whatever has arrived and runs a release pass. The byte says nothing: the
//! state is in the zone. A flag in the receiver's slot (`wake_pending`)
//! makes senders send one datagram per pass of the receiver, not one per
//! change.
//!
//! Abstract names need no file and vanish with the socket, so a worker that
//! dies leaves nothing behind; a reload keeps the zone and so the names;
//! two nginx instances on a host have different zone ids. Any local process
//! could send to the socket, which at worst makes a worker look at the zone
//! once more.

use std::io;
use std::os::fd::IntoRawFd;
#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nginx_sys::ngx_event_t;

use crate::nginx::WatchedSocket;
use intermission_core::worker_slots::SlotId;

/// What became of a wake-up sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The receiver has datagrams it has not read yet: it will pass anyway.
    AlreadyPending,
    /// No socket has the name: its owner is gone (or not listening yet).
    NoListener,
}

pub struct WakeChannel {
    zone_id: u64,
    /// `None` for a worker without a slot of its own: it can wake others,
    /// but no one can address it.
    receiver: Option<WatchedSocket>,
    sender: UnixDatagram,
}

#[cfg(target_os = "linux")]
fn address(zone_id: u64, slot: SlotId) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("nginx-intermission/{zone_id:016x}/{}", slot.0))
}

/// Abstract socket names are Linux's: elsewhere the channel does not open,
/// and a worker that holds requests looks at the zone every
/// `UNWAKEABLE_CHECK_MS` instead (see `release`).
#[cfg(not(target_os = "linux"))]
fn address(_zone_id: u64, _slot: SlotId) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "wake-up sockets need Linux's abstract socket names",
    ))
}

impl WakeChannel {
    /// Opens the socket the worker sends wake-ups from, and, for slot `me`,
    /// binds the slot's socket and has nginx watch it with `handler`.
    pub fn open(
        zone_id: u64,
        me: Option<SlotId>,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
    ) -> io::Result<Self> {
        let sender = UnixDatagram::unbound()?;
        sender.set_nonblocking(true)?;
        let receiver = match me {
            Some(me) => {
                let receiver = UnixDatagram::bind_addr(&address(zone_id, me)?)?;
                receiver.set_nonblocking(true)?;
                let watched =
                    WatchedSocket::watch(receiver.into_raw_fd(), handler).ok_or_else(|| {
                        io::Error::other(
                            "no free connection in worker_connections for the wake-up socket",
                        )
                    })?;
                Some(watched)
            }
            None => None,
        };
        Ok(WakeChannel {
            zone_id,
            receiver,
            sender,
        })
    }

    /// Whether other workers can wake this one.
    pub fn listens(&self) -> bool {
        self.receiver.is_some()
    }

    /// Wakes the worker of slot `to`.
    pub fn send(&self, to: SlotId) -> Sent {
        let Ok(address) = address(self.zone_id, to) else {
            return Sent::NoListener;
        };
        match self.sender.send_to_addr(&[1], &address) {
            Ok(_) => Sent::Delivered,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::AlreadyPending,
            Err(_) => Sent::NoListener,
        }
    }

    /// Reads every wake-up that has arrived.
    pub fn drain(&self) {
        let Some(receiver) = &self.receiver else {
            return;
        };
        let fd = receiver.fd();
        let mut buffer = [0u8; 64];
        loop {
            // SAFETY: reading into a buffer of this length from a socket this
            // process owns.
            let read = unsafe {
                libc::recv(
                    fd,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if read < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Would block: all read.
                return;
            }
        }
    }

    /// Closes the worker's socket, as it exits.
    pub fn close(self) {
        if let Some(receiver) = self.receiver {
            receiver.close();
        }
    }
}
