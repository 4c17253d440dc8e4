//! Channel operations as futures, for async code: [`RecvFut`] and
//! [`SendFut`], from [`Receiver::recv_async`] and [`Sender::send_async`].
//!
//! A task awaiting one never blocks its executor's thread: the future tries
//! the operation under the channel lock and, if it would block, registers
//! the task's waker under that same lock acquisition, so whatever changes
//! the channel afterwards sees the registration — no wake-up is lost
//! between the look and the registration. How the channel keeps and wakes
//! these tasks, and why a receive future never takes part in the sudog
//! hand-off while a send future does, is in `tasks.rs`.
//!
//! # Cancel safety
//!
//! Dropping a pending future loses no message: a `RecvFut` holds no value
//! until the poll that returns it (and a wake it did not use passes to the
//! next receive future), and a `SendFut` either still has its value —
//! dropped with it — or a receiver took it, in which case the send happened.
//! Both can sit in a `select!` loop or under a timeout.
//!
//! With the cargo feature `stream`, [`Receiver::into_stream`] turns a
//! receiver into a `futures_core::Stream` (`RecvStream`) on the same
//! machinery.
//!
//! Either future may be polled from any thread, by any executor, and the
//! two ends of one channel may be any mix of goroutines, plain threads and
//! tasks. One limit: a [`Select`](super::Select) *builder* send case (its
//! value given after the selection) pairs on an unbuffered channel only with
//! receivers that park, not with a receive future (as with `try_recv`);
//! `select!` send arms have no such limit. Parked goroutine senders and
//! send futures take turns at freed slots and receivers, so neither kind
//! starves the other.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::error::{RecvError, SendError};
use super::{Receiver, Sender};

/// The future of [`Receiver::recv_async`]: resolves to the next value, or to
/// `Err(RecvError)` once the channel is empty and closed (every sender gone
/// or [`close`](Sender::close)d). Dropping it unfinished loses no value.
///
/// ```
/// let (tx, rx) = gort::chan::bounded(0);
/// gort::go(move || tx.send(7).unwrap());
/// let v = futures::executor::block_on(rx.recv_async());
/// assert_eq!(v, Ok(7));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct RecvFut<'a, T> {
    rx: &'a Receiver<T>,
    /// Its entry among the channel's receive futures, once registered.
    key: Option<u64>,
}

impl<'a, T> RecvFut<'a, T> {
    pub(super) fn new(rx: &'a Receiver<T>) -> RecvFut<'a, T> {
        RecvFut { rx, key: None }
    }
}

impl<T> Future for RecvFut<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let this = self.get_mut();
        this.rx.chan.poll_recv(&mut this.key, cx.waker())
    }
}

impl<T> Drop for RecvFut<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.rx.chan.cancel_recv(key);
        }
    }
}

impl<T> fmt::Debug for RecvFut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("RecvFut { .. }")
    }
}

/// The future of [`Sender::send_async`]: resolves once a receiver has the
/// value or it is buffered, or to `Err` with the value if the channel closed
/// or lost its receivers first. Dropped before that, it drops its value,
/// which no receiver then sees; a value a receiver took before the drop
/// stays sent.
///
/// ```
/// let (tx, rx) = gort::chan::bounded(0);
/// let h = gort::go(move || rx.recv().unwrap());
/// futures::executor::block_on(tx.send_async("hi")).unwrap();
/// assert_eq!(h.join().unwrap(), "hi");
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct SendFut<'a, T> {
    tx: &'a Sender<T>,
    state: SendState<T>,
}

enum SendState<T> {
    /// Not polled yet.
    Start(T),
    /// The value is offered, under this key (`tasks.rs`).
    Offered(u64),
    /// Resolved.
    Done,
}

impl<'a, T> SendFut<'a, T> {
    pub(super) fn new(tx: &'a Sender<T>, v: T) -> SendFut<'a, T> {
        SendFut {
            tx,
            state: SendState::Start(v),
        }
    }
}

// The value is never pinned: it moves into the channel, or back out.
impl<T> Unpin for SendFut<'_, T> {}

impl<T> Future for SendFut<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self.get_mut();
        let r = match std::mem::replace(&mut this.state, SendState::Done) {
            SendState::Start(v) => match this.tx.chan.start_send(v, cx.waker()) {
                Ok(r) => r,
                Err(key) => {
                    this.state = SendState::Offered(key);
                    return Poll::Pending;
                }
            },
            SendState::Offered(key) => match this.tx.chan.poll_offer(key, cx.waker()) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    this.state = SendState::Offered(key);
                    return Poll::Pending;
                }
            },
            SendState::Done => panic!("`SendFut` polled after completion"),
        };
        Poll::Ready(r)
    }
}

impl<T> Drop for SendFut<'_, T> {
    fn drop(&mut self) {
        if let SendState::Offered(key) = self.state {
            self.tx.chan.cancel_offer(key);
        }
    }
}

impl<T> fmt::Debug for SendFut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SendFut { .. }")
    }
}

/// A [`Receiver`] as a `futures_core::Stream` (cargo feature `stream`), from
/// [`Receiver::into_stream`]: yields each value, and ends once the channel
/// is empty and closed. Like [`RecvFut`], dropping it while it waits loses
/// no value.
///
/// ```
/// use futures::StreamExt;
/// let (tx, rx) = gort::chan::unbounded();
/// gort::go(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
/// let all: Vec<i32> = futures::executor::block_on(rx.into_stream().collect());
/// assert_eq!(all, [1, 2, 3]);
/// ```
#[cfg(feature = "stream")]
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<T> {
    rx: Receiver<T>,
    /// As `RecvFut::key`, for the receive under way.
    key: Option<u64>,
    ended: bool,
}

#[cfg(feature = "stream")]
impl<T> RecvStream<T> {
    pub(super) fn new(rx: Receiver<T>) -> RecvStream<T> {
        RecvStream {
            rx,
            key: None,
            ended: false,
        }
    }
}

#[cfg(feature = "stream")]
impl<T> futures_core::Stream for RecvStream<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        this.rx.chan.poll_recv(&mut this.key, cx.waker()).map(|r| {
            this.ended = r.is_err();
            r.ok()
        })
    }
}

#[cfg(feature = "stream")]
impl<T> futures_core::FusedStream for RecvStream<T> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

#[cfg(feature = "stream")]
impl<T> Drop for RecvStream<T> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.rx.chan.cancel_recv(key);
        }
    }
}

#[cfg(feature = "stream")]
impl<T> fmt::Debug for RecvStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
