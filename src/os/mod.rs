//! Operating-system layer. Only this module makes raw system calls (the
//! stack module's mmap/madvise calls are the one documented exception: they
//! are the allocator itself). Linux is the only target today; a port adds a
//! sibling of `linux.rs`.

mod epoll;
mod linux;
mod signal;
mod socket;
mod thread;

pub(crate) use epoll::{Epoll, Event, EventFd, INTEREST, READABLE, SHORT_READS_UNRELIABLE, WRITABLE, empty_event};

pub(crate) use linux::{Note, SavedErrno, futex_wait, futex_wake, write_stderr, write_stderr_fmt};
pub(crate) use signal::{call_previous, install_handler};
pub(crate) use socket::{recv, send, send_vectored};
pub(crate) use thread::{
    ThreadStat, code_segment_containing, current_tid, gettid, process_threads, read_own_memory_many, tgkill,
};
pub(crate) use thread::{process_barrier, register_process_barrier};
