//! Free TCP ports for servers a test starts later.

use std::sync::atomic::{AtomicU32, Ordering};

/// A free TCP port on 127.0.0.1 (bound then released), for a server a
/// test starts later.
///
/// It is taken below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be handed to any outgoing connection,
/// such as a store client's, in the moment between release and the
/// server's bind, which then fails with "address in use". Ports are handed
/// out in turn from a start that differs per process, so tests of one
/// binary never get the same one.
///
/// ```
/// let port = dspans_test_support::free_port();
/// assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
/// ```
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_range_start().max(10_001));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(low + offset).expect("ports fit in u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {high}")
}

/// The first port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
