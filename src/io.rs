//! Copying between streams (Go's `io.Copy`).
//!
//! `copy` is `std::io::copy`'s contract — read until end of file, write
//! everything read, return the byte count, retry `Interrupted` — and works
//! with any `Read` and `Write`. What gort adds is where the waiting
//! happens: with gort's sockets a `read` with no data, or a `write` into a
//! full buffer, parks the goroutine and its thread runs others. So a proxy
//! that copies both directions of a connection pair spends two goroutines,
//! not two OS threads, and ten thousand proxied connections are ten
//! thousand cheap goroutines (`copy_bidirectional` does exactly that).
//!
//! The buffer is `BUF_SIZE` bytes on the heap, as Go's is: fewer system
//! calls per megabyte than std's 8 KiB, without touching that much of a
//! goroutine's lazily committed stack.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::panic::resume_unwind;

use crate::net::TcpStream;

/// Bytes read per system call (Go's `io.Copy` uses 32 KiB too).
const BUF_SIZE: usize = 32 * 1024;

/// Copy everything `reader` yields, until end of file, into `writer`;
/// returns the number of bytes copied (std's `io::copy`, Go's `io.Copy`).
/// A gort socket on either side parks the goroutine while it waits.
///
/// ```
/// use std::io::{Read, Write};
/// gort::run(|| {
///     let listener = gort::net::TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     // An echo server: copy the connection into itself.
///     let server = gort::go(move || -> std::io::Result<u64> {
///         let (conn, _) = listener.accept()?;
///         let n = gort::io::copy(&mut &conn, &mut &conn)?;
///         conn.shutdown(std::net::Shutdown::Write)?;
///         Ok(n)
///     });
///     let mut client = gort::net::TcpStream::connect(addr)?;
///     client.write_all(b"copied by a goroutine")?;
///     client.shutdown(std::net::Shutdown::Write)?;
///     let mut echo = String::new();
///     client.read_to_string(&mut echo)?;
///     assert_eq!(echo, "copied by a goroutine");
///     assert_eq!(server.join().unwrap()?, 21);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn copy<R, W>(reader: &mut R, writer: &mut W) -> io::Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let mut buf = vec![0; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Proxy between two connections until both directions are done: bytes
/// read from `a` are written to `b` and bytes read from `b` to `a`, each
/// direction in its own goroutine (one spawned, one the caller). When a
/// direction reaches end of file, the write half of its destination is
/// shut down, passing the end on; the other direction keeps going.
///
/// Returns the bytes copied `(a to b, b to a)`. If either direction fails,
/// both connections are shut down, so that the other direction ends too
/// instead of waiting on a peer that may never speak, and the first
/// direction's error is returned (`a` to `b` first, if both failed).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let listener = gort::net::TcpListener::bind("127.0.0.1:8080")?;
/// for client in listener.incoming() {
///     let client = client?;
///     gort::go(move || -> std::io::Result<(u64, u64)> {
///         let upstream = gort::net::TcpStream::connect("127.0.0.1:9090")?;
///         gort::io::copy_bidirectional(&client, &upstream)
///     });
/// }
/// # Ok(())
/// # }
/// ```
pub fn copy_bidirectional(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    crate::scope(|s| {
        let a_to_b = s.go(|| copy_half(a, b));
        let b_to_a = copy_half(b, a);
        let a_to_b = a_to_b.join().unwrap_or_else(|panic| resume_unwind(panic));
        Ok((a_to_b?, b_to_a?))
    })
}

/// One direction of `copy_bidirectional`.
fn copy_half(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let result = copy(&mut &*from, &mut &*to).and_then(|n| {
        match to.shutdown(Shutdown::Write) {
            // The peer is already gone: there is nobody left to tell.
            Err(e) if e.kind() != ErrorKind::NotConnected => Err(e),
            _ => Ok(n),
        }
    });
    if result.is_err() {
        // The other direction may be parked reading a peer that will never
        // write again; shutting the read halves down hands it an end of file.
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
    result
}
