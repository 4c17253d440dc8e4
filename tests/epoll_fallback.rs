//! The poller on a kernel without `epoll_pwait2` (Linux before 5.11, or
//! valgrind up to 3.21): a seccomp filter makes that system call fail with
//! `ENOSYS` for the threads of this test, and the runtime must fall back to
//! `epoll_wait` — sockets still work, sleeps shorter than a millisecond still
//! end, and an idle runtime still sleeps in the poll instead of spinning.
//!
//! This file holds a single test on purpose: the filter is inherited by every
//! thread created after it, and no other test should run under it.

#![cfg(target_arch = "x86_64")]

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use gort::Runtime;
use gort::net::{TcpListener, TcpStream};

mod common;
use common::guarded;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// Make `epoll_pwait2` fail with `ENOSYS` on this thread and on every thread
/// it creates from now on.
fn refuse_epoll_pwait2() {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_if = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filter = [
        // seccomp_data: nr at offset 0, arch at offset 4.
        stmt(load, 4),
        jump_if(AUDIT_ARCH_X86_64, 0, 2),
        stmt(load, 0),
        jump_if(libc::SYS_epoll_pwait2 as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers; it is required to
    // install a filter without privileges and only restricts this thread.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, 0);
    // SAFETY: `prog` points to `filter`, both alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp: {}", io::Error::last_os_error());
}

/// Whether `epoll_pwait2` answers `ENOSYS` on this thread.
fn epoll_pwait2_missing() -> bool {
    // SAFETY: epoll_create1 takes no pointers.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one writable event slot, a valid timespec, a null sigmask.
    let rc = unsafe { libc::epoll_pwait2(ep, &mut ev, 1, &zero, std::ptr::null()) };
    let err = io::Error::last_os_error();
    // SAFETY: `ep` is ours and closed once.
    unsafe { libc::close(ep) };
    rc < 0 && err.raw_os_error() == Some(libc::ENOSYS)
}

#[test]
fn the_poller_falls_back_to_epoll_wait_without_epoll_pwait2() {
    // The filter holds for `guarded`'s thread and the runtime's, which it
    // creates.
    guarded(|| {
        refuse_epoll_pwait2();
        assert!(
            epoll_pwait2_missing(),
            "the filter must take effect, or this test checks nothing"
        );
        let rt = Runtime::builder().procs(2).build().unwrap();
        rt.block_on(exercise_poller);
    });
}

/// Round trips through the poller, deadlines, and short sleeps with an idle
/// runtime; panics on any failure.
fn exercise_poller() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = gort::go(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        loop {
            match conn.read(&mut buf).unwrap() {
                0 => return,
                n => conn.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let mut client = TcpStream::connect(addr).unwrap();
    for i in 0..200u32 {
        client.write_all(&i.to_le_bytes()).unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).unwrap();
        assert_eq!(u32::from_le_bytes(back), i);
    }

    // A read deadline is a timer the sleeping poller must wake for.
    client.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(client.read(&mut byte).unwrap_err().kind(), ErrorKind::TimedOut);
    client.set_read_timeout(None).unwrap();

    // Sleeps shorter than epoll_wait's millisecond, with a socket registered
    // so that the idle M waits in the poll. Rounding such a timeout down to
    // zero would spin through hundreds of polls per sleep; rounded up, the
    // sleeper polls once or twice, and busy Ms now and then.
    const SLEEPS: u64 = 50;
    let polls_before = gort::runtime::metrics().netpoll_polls;
    for _ in 0..SLEEPS {
        gort::time::sleep(Duration::from_micros(200));
    }
    let polls = gort::runtime::metrics().netpoll_polls - polls_before;
    assert!(
        polls < 8 * SLEEPS,
        "{polls} polls for {SLEEPS} sub-millisecond sleeps: the poller spins"
    );

    drop(client);
    server.join().unwrap();
}
