//! The kernel's view of TCP sockets, through netlink sock_diag (what `ss`
//! uses). The tests use it to see, without any help from the module, whether
//! nginx has read a request (the server side of its connection holds no unread
//! bytes) and which socket listens on a port.
//!
//! /proc/net/tcp would do too, but it lists every TIME_WAIT socket the suite
//! leaves behind and gets slow; sock_diag filters by state in the kernel.

use std::collections::HashMap;
use std::io;
use std::mem::size_of;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
struct DumpRequest {
    header: libc::nlmsghdr,
    body: InetDiagReqV2,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    state: u8,
    /// Unread bytes (established), or connections waiting for accept (listening).
    rqueue: u32,
    inode: u32,
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

fn check(result: isize) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

/// IPv4 TCP sockets in the given states.
fn tcp_sockets(states: &[u8]) -> io::Result<Vec<TcpSocket>> {
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    let fd = Fd(check(fd as isize)? as libc::c_int);
    let request = DumpRequest {
        header: libc::nlmsghdr {
            nlmsg_len: size_of::<DumpRequest>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        body: InetDiagReqV2 {
            family: libc::AF_INET as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: states.iter().fold(0, |mask, state| mask | 1 << state),
            id: InetDiagSockId::default(),
        },
    };
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    check(unsafe {
        libc::sendto(
            fd.0,
            &request as *const DumpRequest as *const libc::c_void,
            size_of::<DumpRequest>(),
            0,
            &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
            size_of::<libc::sockaddr_nl>() as u32,
        )
    })?;

    let mut sockets = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let len = check(unsafe {
            libc::recv(
                fd.0,
                buffer.as_mut_ptr() as *mut libc::c_void,
                buffer.len(),
                0,
            )
        })?;
        let mut at = 0;
        while at + size_of::<libc::nlmsghdr>() <= len {
            let header: libc::nlmsghdr =
                unsafe { std::ptr::read_unaligned(buffer[at..].as_ptr() as *const _) };
            match header.nlmsg_type as libc::c_int {
                libc::NLMSG_DONE => return Ok(sockets),
                libc::NLMSG_ERROR => {
                    return Err(io::Error::other("sock_diag answered NLMSG_ERROR"))
                }
                _ => {}
            }
            let body = at + size_of::<libc::nlmsghdr>();
            if body + size_of::<InetDiagMsg>() <= len {
                let msg: InetDiagMsg =
                    unsafe { std::ptr::read_unaligned(buffer[body..].as_ptr() as *const _) };
                sockets.push(TcpSocket {
                    local_port: u16::from_be_bytes(msg.id.sport),
                    remote_port: u16::from_be_bytes(msg.id.dport),
                    state: msg.state,
                    rqueue: msg.rqueue,
                    inode: msg.inode,
                });
            }
            at += (header.nlmsg_len as usize + 3) & !3;
        }
    }
}

fn sockets(states: &[u8]) -> Vec<TcpSocket> {
    tcp_sockets(states).expect("netlink sock_diag dump")
}

/// The inode of the socket listening on `port`, if any.
pub fn listening_inode(port: u16) -> Option<u64> {
    sockets(&[TCP_LISTEN])
        .into_iter()
        .find(|s| s.local_port == port)
        .map(|s| u64::from(s.inode))
}

/// Unread bytes on the server side of each established connection to
/// `server_port`, by client port.
pub fn unread_by_client(server_port: u16) -> HashMap<u16, u32> {
    sockets(&[TCP_ESTABLISHED])
        .into_iter()
        .filter(|s| s.local_port == server_port && s.state == TCP_ESTABLISHED)
        .map(|s| (s.remote_port, s.rqueue))
        .collect()
}

/// The inode of nginx's side of the connection from `client_port` to
/// `server_port`, to tell which worker holds it (`procfs::holds_socket`).
pub fn server_side_inode(server_port: u16, client_port: u16) -> Option<u64> {
    sockets(&[TCP_ESTABLISHED])
        .into_iter()
        .find(|s| s.local_port == server_port && s.remote_port == client_port)
        .map(|s| u64::from(s.inode))
}
