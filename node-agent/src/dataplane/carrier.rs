//! Whether an interface is up with a carrier, asked of the kernel
//! (SIOCGIFFLAGS) in the calling thread's network namespace: cheap enough
//! to poll every second.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// IFF_UP and IFF_RUNNING (the carrier) both set.
pub fn is_up(ifname: &str) -> io::Result<bool> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in ifname.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    // SAFETY: ioctl on our socket with a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_up_and_a_missing_interface_is_an_error() {
        assert!(super::is_up("lo").unwrap());
        assert!(super::is_up("no-such-if0").is_err());
    }
}
